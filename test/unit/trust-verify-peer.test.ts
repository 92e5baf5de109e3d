import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FedgateError } from "../../common/index.ts";
import {
  CertificateExpiredError,
  CertificateNotYetValidError,
  ClusterRevokedError,
  InvalidChainError,
  LeafEncoder,
  MalformedInputError,
  NameConstraintError,
  PeerVerificationError,
  RootCa,
  TrustBundle,
  UnknownRootError,
  WrongTrustDomainError,
  generateLeafKey,
  importPrivateKeyPem,
  verifyPeer,
  type IntermediateCa,
  type IssuedLeaf,
} from "../../trust/internal.ts";
import { forgeLeaf } from "../support/tls-fixtures.ts";

const TD = "example.org";
const HOUR = 3_600_000;

interface Ctx {
  root: RootCa;
  a: IntermediateCa;
  b: IntermediateCa;
  leafA: IssuedLeaf;
  bundle: TrustBundle;
  now: Date;
}

const verify = suite("verifyPeer", {} as Ctx);

verify.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: TD });
  ctx.a = await ctx.root.issueIntermediate({ cluster: "a" });
  ctx.b = await ctx.root.issueIntermediate({ cluster: "b" });
  ctx.leafA = await ctx.a.issueLeaf();
  ctx.bundle = TrustBundle.create({ trustDomain: TD, certificates: [ctx.root.certificate], sequence: 1 });
  ctx.now = new Date();
});

/** Asserts `fn` throws exactly `cls` (a FedgateError) and returns it. */
function expectError<E extends Error>(fn: () => unknown, cls: abstract new (...args: never[]) => E): E {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, { cause: err });
    assert.instance(err, FedgateError);
    return err;
  }
  throw new Error(`expected ${cls.name}, nothing thrown`);
}

verify("returns the SPIFFE ID, cluster and workload path of a valid chain", (ctx) => {
  const id = verifyPeer([ctx.leafA.chainPem], ctx.bundle, { now: ctx.now });
  assert.is(id.spiffeId, "spiffe://example.org/cluster/a/gateway");
  assert.is(id.cluster, "a");
  assert.is(id.trustDomain, TD);
  assert.is(id.workloadPath, "/gateway");
  assert.is(id.intermediate.fingerprint, ctx.a.fingerprint);
  assert.is(id.root.fingerprint, ctx.root.fingerprint);
  assert.is(id.notAfter.getTime(), ctx.leafA.certificate.notAfter.getTime());
});

verify("accepts the chain as DER buffers, as separate PEMs, and with the root appended", (ctx) => {
  for (const chain of [
    [ctx.leafA.certificate.der, ctx.a.certificate.der],
    [ctx.leafA.certPem, ctx.a.certPem],
    [ctx.leafA.certificate.der, ctx.a.certificate.der, ctx.root.certificate.der],
    [ctx.leafA.chainPem + ctx.root.certPem],
  ]) {
    assert.is(verifyPeer(chain, ctx.bundle, { now: ctx.now }).cluster, "a");
  }
});

verify("accepts workload identities deeper under the cluster path", async (ctx) => {
  const l = await ctx.b.issueLeaf({ spiffeId: "spiffe://example.org/cluster/b/ns/shop/sa/cart" });
  const id = verifyPeer([l.chainPem], ctx.bundle, { now: ctx.now });
  assert.is(id.cluster, "b");
  assert.is(id.workloadPath, "/ns/shop/sa/cart");
});

verify("rejects a leaf forged under cluster A's intermediate claiming cluster B's path (name-constraint violation)", async (ctx) => {
  verifyPeer([ctx.leafA.chainPem], ctx.bundle, { now: ctx.now }); // warms the verified-intermediate cache for A
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/cluster/b/gateway" });
  const err = expectError(() => verifyPeer([forged.chainPem], ctx.bundle, { now: ctx.now }), NameConstraintError);
  assert.is(err.code, "FEDGATE_TRUST_NAME_CONSTRAINT");
  assert.match(err.message, /cluster b/);
});

verify("rejects a forged leaf outside any /cluster/<name>/ path as a name-constraint violation", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/ns/kube-system/sa/admin" });
  expectError(() => verifyPeer([forged.chainPem], ctx.bundle, { now: ctx.now }), NameConstraintError);
});

verify("rejects a leaf of another trust domain, forged or legitimately issued elsewhere", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://evil.org/cluster/a/gateway" });
  const err = expectError(() => verifyPeer([forged.chainPem], ctx.bundle, { now: ctx.now }), WrongTrustDomainError);
  assert.is(err.actual, "evil.org");
  const other = await RootCa.create({ trustDomain: "other.org" });
  const otherLeaf = await (await other.issueIntermediate({ cluster: "a" })).issueLeaf();
  expectError(() => verifyPeer([otherLeaf.chainPem], ctx.bundle, { now: ctx.now }), WrongTrustDomainError);
  expectError(() => verifyPeer([ctx.leafA.chainPem], ctx.bundle, { now: ctx.now, trustDomain: "other.org" }), WrongTrustDomainError);
});

verify("rejects a chain to a root outside the bundle (same trust domain, same subject shape)", async (ctx) => {
  const impostor = await RootCa.create({ trustDomain: TD });
  const leaf = await (await impostor.issueIntermediate({ cluster: "a" })).issueLeaf();
  const err = expectError(() => verifyPeer([leaf.chainPem], ctx.bundle, { now: ctx.now }), UnknownRootError);
  assert.is(err.code, "FEDGATE_TRUST_UNKNOWN_ROOT");
  expectError(() => verifyPeer([leaf.certPem, ctx.a.certPem], ctx.bundle, { now: ctx.now }), InvalidChainError);
});

verify("rejects a chain whose intermediate was not presented", (ctx) => {
  expectError(() => verifyPeer([ctx.leafA.certPem], ctx.bundle, { now: ctx.now }), UnknownRootError);
});

verify("rejects an expired leaf and a leaf that is not yet valid", (ctx) => {
  const after = new Date(ctx.leafA.certificate.notAfter.getTime() + 1000);
  const e = expectError(() => verifyPeer([ctx.leafA.chainPem], ctx.bundle, { now: after }), CertificateExpiredError);
  assert.is(e.role, "leaf");
  assert.is(e.code, "FEDGATE_TRUST_EXPIRED");
  const before = new Date(ctx.leafA.certificate.notBefore.getTime() - 1000);
  const n = expectError(() => verifyPeer([ctx.leafA.chainPem], ctx.bundle, { now: before }), CertificateNotYetValidError);
  assert.is(n.code, "FEDGATE_TRUST_NOT_YET_VALID");
});

verify("rejects a leaf that outlives its expired intermediate", async (ctx) => {
  const shortLived = await ctx.root.issueIntermediate({ cluster: "c", validityMs: HOUR });
  const forged = await forgeLeaf({ intermediate: shortLived, spiffeId: "spiffe://example.org/cluster/c/gateway", notAfter: new Date(Date.now() + 10 * HOUR) });
  const at = new Date(shortLived.certificate.notAfter.getTime() + 60_000);
  const e = expectError(() => verifyPeer([forged.chainPem], ctx.bundle, { now: at }), CertificateExpiredError);
  assert.is(e.role, "intermediate");
});

verify("rejects identities of a revoked cluster and accepts the others", async (ctx) => {
  const leafB = await ctx.b.issueLeaf();
  const e = expectError(() => verifyPeer([ctx.leafA.chainPem], ctx.bundle, { now: ctx.now, revokedClusters: ["a"] }), ClusterRevokedError);
  assert.is(e.cluster, "a");
  assert.is(e.code, "FEDGATE_TRUST_CLUSTER_REVOKED");
  assert.is(verifyPeer([leafB.chainPem], ctx.bundle, { now: ctx.now, revokedClusters: new Set(["a"]) }).cluster, "b");
});

verify("rejects a leaf whose signature was altered", (ctx) => {
  const der = new Uint8Array(ctx.leafA.certificate.der);
  der[der.length - 1]! ^= 0x01;
  expectError(() => verifyPeer([der, ctx.a.certificate.der], ctx.bundle, { now: ctx.now }), InvalidChainError);
});

verify("rejects a CA certificate presented as the leaf, and a leaf signed directly by the root", async (ctx) => {
  expectError(() => verifyPeer([ctx.a.certPem, ctx.root.certPem], ctx.bundle, { now: ctx.now }), InvalidChainError);
  const { key, type } = await importPrivateKeyPem(ctx.root.keyPem);
  const enc = new LeafEncoder({ issuer: ctx.root.certificate, signingKey: key, keyType: type });
  const leafKey = await generateLeafKey("ecdsa-p256");
  const direct = await enc.encode({
    publicKeyInfo: leafKey.publicKeyInfo,
    spiffeId: "spiffe://example.org/cluster/a/gateway",
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + HOUR),
  });
  expectError(() => verifyPeer([direct.pem], ctx.bundle, { now: ctx.now }), InvalidChainError);
});

verify("turns junk into MalformedInputError and an empty chain into InvalidChainError", (ctx) => {
  expectError(() => verifyPeer([new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00])], ctx.bundle), MalformedInputError);
  expectError(() => verifyPeer(["not a pem"], ctx.bundle), MalformedInputError);
  expectError(() => verifyPeer([ctx.leafA.certPem, new Uint8Array(3)], ctx.bundle, { now: ctx.now }), MalformedInputError);
  expectError(() => verifyPeer([], ctx.bundle), InvalidChainError);
});

verify("every rejection above is a PeerVerificationError or a MalformedInputError", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/cluster/b/gateway" });
  for (const fn of [() => verifyPeer([forged.chainPem], ctx.bundle), () => verifyPeer([ctx.leafA.certPem], ctx.bundle), () => verifyPeer(["x"], ctx.bundle)]) {
    assert.throws(fn, (err: unknown) => err instanceof PeerVerificationError || err instanceof MalformedInputError);
  }
});

verify.run();
