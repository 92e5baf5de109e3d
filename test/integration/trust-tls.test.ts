import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  CertificateExpiredError,
  ClusterRevokedError,
  NameConstraintError,
  RootCa,
  TrustBundle,
  UnknownRootError,
  tlsIdentityOf,
  verifyPeer,
  type IntermediateCa,
  type TlsIdentity,
} from "../../trust/index.ts";
import { forgeLeaf, type ForgedLeaf } from "../support/tls-fixtures.ts";
import { mtlsRequest, startMtlsServer, type MtlsOutcome, type MtlsServer } from "../support/tls-harness.ts";

/**
 * Real Node mTLS handshakes (node:tls over loopback) between gateway-style
 * endpoints: OpenSSL verifies chains against the bundle, fedgate's verifier
 * runs in checkServerIdentity (client) and before the first byte (server).
 */

const TD = "example.org";

interface Ctx {
  root: RootCa;
  a: IntermediateCa;
  b: IntermediateCa;
  bundle: TrustBundle;
  idA: TlsIdentity;
  idB: TlsIdentity;
  serverB: MtlsServer;
}

const asIdentity = (f: ForgedLeaf): TlsIdentity => ({ chainPem: f.chainPem, privateKeyPem: f.privateKeyPem });

function accepted(o: MtlsOutcome, client: string, server: string): void {
  assert.is(o.error, undefined, `handshake ${client} -> ${server} failed: ${o.error?.message}`);
  assert.is(o.reply, `hello ${client} from ${server}`);
}

/** The client completed TLS but the server refused it before any application byte. */
function refusedByServer(o: MtlsOutcome): void {
  assert.is(o.reply, "", "the server must not send a single application byte to a refused peer");
}

const tls = suite("mTLS handshakes", {} as Ctx);

tls.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: TD });
  ctx.a = await ctx.root.issueIntermediate({ cluster: "a" });
  ctx.b = await ctx.root.issueIntermediate({ cluster: "b" });
  ctx.bundle = TrustBundle.create({ trustDomain: TD, certificates: [ctx.root.certificate], sequence: 1 });
  ctx.idA = tlsIdentityOf(await ctx.a.issueLeaf());
  ctx.idB = tlsIdentityOf(await ctx.b.issueLeaf());
  ctx.serverB = await startMtlsServer({ name: "b", identity: ctx.idB, bundle: ctx.bundle });
});

tls.after(async (ctx) => {
  await ctx.serverB.close();
});

tls("accepts valid gateway identities in both directions, each side learning the other's SPIFFE ID", async (ctx) => {
  const ab = await mtlsRequest({ port: ctx.serverB.port, identity: ctx.idA, bundle: ctx.bundle });
  accepted(ab, "spiffe://example.org/cluster/a/gateway", "b");
  assert.is(ab.serverIdentity?.spiffeId, "spiffe://example.org/cluster/b/gateway");
  const last = ctx.serverB.admissions[ctx.serverB.admissions.length - 1]!;
  assert.ok(last.ok && last.identity.cluster === "a");
  const serverA = await startMtlsServer({ name: "a", identity: ctx.idA, bundle: ctx.bundle });
  try {
    accepted(await mtlsRequest({ port: serverA.port, identity: ctx.idB, bundle: ctx.bundle }), "spiffe://example.org/cluster/b/gateway", "a");
  } finally {
    await serverA.close();
  }
});

tls("accepts workload, P-384 and RSA-3072 identities", async (ctx) => {
  for (const [spiffeId, algorithm] of [
    ["spiffe://example.org/cluster/a/ns/shop/sa/cart", "ecdsa-p256"],
    ["spiffe://example.org/cluster/a/gateway", "ecdsa-p384"],
    ["spiffe://example.org/cluster/a/gateway", "rsa-3072"],
  ] as const) {
    const id = tlsIdentityOf(await ctx.a.issueLeaf({ spiffeId, algorithm }));
    accepted(await mtlsRequest({ port: ctx.serverB.port, identity: id, bundle: ctx.bundle }), spiffeId, "b");
  }
});

tls("server side: a client leaf forged under cluster A's intermediate claiming cluster B is cut off before any byte", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/cluster/b/gateway" });
  const before = ctx.serverB.admissions.length;
  const o = await mtlsRequest({ port: ctx.serverB.port, identity: asIdentity(forged), bundle: ctx.bundle });
  refusedByServer(o);
  const admission = ctx.serverB.admissions[before]!;
  assert.ok(!admission.ok && admission.error instanceof NameConstraintError, "OpenSSL let it through; fedgate's verifier refused it");
});

tls("client side: a server presenting a forged cluster-B identity from cluster A's intermediate fails tls.connect with NameConstraintError", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/cluster/b/gateway" });
  const evil = await startMtlsServer({ name: "evil", identity: asIdentity(forged), bundle: ctx.bundle });
  try {
    const o = await mtlsRequest({ port: evil.port, identity: ctx.idA, bundle: ctx.bundle });
    assert.instance(o.error, NameConstraintError);
    assert.not.ok(o.secureConnected, "checkServerIdentity fails the connection before secureConnect");
    assert.is(evil.admissions.length, 0, "the client sent nothing the server application could read");
  } finally {
    await evil.close();
  }
});

tls("a leaf claiming another trust domain fails the handshake in OpenSSL itself, in both directions", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://evil.org/cluster/a/gateway" });
  const before = ctx.serverB.admissions.length;
  const o = await mtlsRequest({ port: ctx.serverB.port, identity: asIdentity(forged), bundle: ctx.bundle });
  refusedByServer(o);
  assert.is(ctx.serverB.admissions.length, before, "rejected during the handshake, before fedgate's verifier ran");
  const evil = await startMtlsServer({ name: "evil", identity: asIdentity(forged), bundle: ctx.bundle });
  try {
    const c = await mtlsRequest({ port: evil.port, identity: ctx.idA, bundle: ctx.bundle });
    assert.ok(c.error);
    assert.match(c.error.message, /permitted subtree violation/);
    assert.not.ok(c.secureConnected);
  } finally {
    await evil.close();
  }
});

tls("rejects an expired client leaf and a server chaining to an unknown root", async (ctx) => {
  const expired = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/cluster/a/gateway", notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  const before = ctx.serverB.admissions.length;
  refusedByServer(await mtlsRequest({ port: ctx.serverB.port, identity: asIdentity(expired), bundle: ctx.bundle }));
  assert.is(ctx.serverB.admissions.length, before);

  const impostor = await RootCa.create({ trustDomain: TD });
  const impostorId = tlsIdentityOf(await (await impostor.issueIntermediate({ cluster: "b" })).issueLeaf());
  const impostorBundle = TrustBundle.create({ trustDomain: TD, certificates: [impostor.certificate], sequence: 1 });
  const evil = await startMtlsServer({ name: "evil", identity: impostorId, bundle: impostorBundle });
  try {
    const o = await mtlsRequest({ port: evil.port, identity: ctx.idA, bundle: ctx.bundle });
    assert.ok(o.error && !o.secureConnected, "OpenSSL refuses the unknown root");
    // The same refusal, typed, from fedgate's verifier when OpenSSL's own check is out of the picture:
    assert.throws(() => verifyPeer([impostorId.chainPem], ctx.bundle), (err: unknown) => err instanceof UnknownRootError);
    assert.throws(() => verifyPeer([expired.chainPem], ctx.bundle), (err: unknown) => err instanceof CertificateExpiredError);
  } finally {
    await evil.close();
  }
});

tls("refuses a revoked cluster on the server side and on the client side", async (ctx) => {
  const guarded = await startMtlsServer({ name: "b", identity: ctx.idB, bundle: ctx.bundle, verify: { revokedClusters: ["a"] } });
  try {
    const o = await mtlsRequest({ port: guarded.port, identity: ctx.idA, bundle: ctx.bundle });
    refusedByServer(o);
    const adm = guarded.admissions[0]!;
    assert.ok(!adm.ok && adm.error instanceof ClusterRevokedError);
    const c = await mtlsRequest({ port: ctx.serverB.port, identity: ctx.idA, bundle: ctx.bundle, verify: { revokedClusters: ["b"] } });
    assert.instance(c.error, ClusterRevokedError);
  } finally {
    await guarded.close();
  }
});

tls.run();
