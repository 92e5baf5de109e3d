import { X509Certificate as NodeX509, createPrivateKey, createPublicKey } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FedgateError } from "../../common/index.ts";
import {
  CLUSTER_CA_UNIT,
  DEFAULT_LEAF_TTL_MS,
  IntermediateCa,
  InvalidCsrError,
  IssuanceRefusedError,
  KEY_USAGE,
  KeyMismatchError,
  MalformedInputError,
  OID,
  RootCa,
  TrustOptionsError,
  createCsr,
  isSignedBy,
  parseCertificate,
  x509,
  type Certificate,
} from "../../trust/internal.ts";
import { fixedClock } from "../support/tls-fixtures.ts";

const T0 = new Date("2030-01-01T00:00:00Z");
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// ---------------------------------------------------------------------------
const root = suite("RootCa");

root("creates an ECDSA P-256 self-signed root by default, with the trust domain in its subject", async () => {
  const ca = await RootCa.create({ trustDomain: "example.org", clock: fixedClock(T0) });
  const c = ca.certificate;
  assert.is(c.publicKeyInfo.type, "ecdsa-p256");
  assert.is(c.signatureAlgorithm, OID.ecdsaWithSha256);
  assert.ok(c.isSelfIssued && isSignedBy(c, c.publicKey));
  assert.equal(c.basicConstraints, { ca: true, pathLen: 1 });
  assert.ok(c.hasKeyUsage(KEY_USAGE.keyCertSign) && c.hasKeyUsage(KEY_USAGE.cRLSign));
  assert.equal(c.subjectField(OID.organizationName), ["example.org"]);
  assert.is(ca.trustDomain, "example.org");
  assert.is(c.notAfter.getTime() - T0.getTime(), 10 * 365 * DAY);
  assert.ok(c.notBefore < T0, "backdated for clock skew");
});

root("honours the selected algorithm and validity (P-384, RSA-3072)", async () => {
  const p384 = await RootCa.create({ trustDomain: "example.org", algorithm: "ecdsa-p384", validityMs: 2 * 365 * DAY, clock: fixedClock(T0) });
  assert.is(p384.certificate.publicKeyInfo.type, "ecdsa-p384");
  assert.is(p384.certificate.signatureAlgorithm, OID.ecdsaWithSha384);
  assert.is(p384.certificate.notAfter.getTime(), T0.getTime() + 2 * 365 * DAY);
  const rsa = await RootCa.create({ trustDomain: "example.org", algorithm: "rsa-3072", clock: fixedClock(T0) });
  assert.is(rsa.certificate.publicKeyInfo.type, "rsa");
  assert.is(rsa.certificate.publicKeyInfo.rsaBits, 3072);
  assert.is(rsa.certificate.signatureAlgorithm, OID.sha256WithRsa);
  const inter = await rsa.issueIntermediate({ cluster: "a" });
  assert.ok(isSignedBy(inter.certificate, rsa.certificate.publicKey));
});

root("emits PKCS#8 PEM keys that Node can import", async () => {
  const ca = await RootCa.create({ trustDomain: "example.org" });
  assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const key = createPrivateKey(ca.keyPem);
  assert.is(key.asymmetricKeyType, "ec");
});

root("reports every invalid option at once", () => {
  return RootCa.create({ trustDomain: "Not A Domain", algorithm: "dsa" as "rsa-3072", validityMs: -1 }).then(
    () => assert.unreachable(),
    (err: unknown) => {
      assert.instance(err, TrustOptionsError);
      assert.equal((err as TrustOptionsError).problems.map((p) => p.path).sort(), ["algorithm", "trustDomain", "validityMs"]);
    },
  );
});

root("round-trips through files (key mode 0600) and through a Kubernetes Secret", async () => {
  const ca = await RootCa.create({ trustDomain: "example.org" });
  const dir = await mkdtemp(join(tmpdir(), "fedgate-root-"));
  try {
    await ca.writeFiles(dir);
    assert.is((await stat(join(dir, "tls.key"))).mode & 0o777, 0o600);
    const back = await RootCa.readFiles(dir);
    assert.is(back.fingerprint, ca.fingerprint);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const secret = ca.toSecret({ name: "fedgate-root-ca", namespace: "fedgate-system" });
  assert.is(secret.apiVersion, "v1");
  assert.is(secret.kind, "Secret");
  assert.is(secret.type, "kubernetes.io/tls");
  assert.equal(Object.keys(secret.data).sort(), ["tls.crt", "tls.key"]);
  assert.is(secret.metadata.annotations?.["fedgate.io/trust-domain"], "example.org");
  const fromSecret = await RootCa.fromSecret(JSON.parse(JSON.stringify(secret)));
  assert.is(fromSecret.fingerprint, ca.fingerprint);
  const inter = await fromSecret.issueIntermediate({ cluster: "a" });
  assert.ok(isSignedBy(inter.certificate, ca.certificate.publicKey), "a reloaded root still signs with the same key");
});

root("refuses material whose key is not the certificate's, or a certificate that is not a root", async () => {
  const a = await RootCa.create({ trustDomain: "example.org" });
  const b = await RootCa.create({ trustDomain: "example.org" });
  await RootCa.fromPem({ certPem: a.certPem, keyPem: b.keyPem }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.instance(err, KeyMismatchError),
  );
  const inter = await a.issueIntermediate({ cluster: "a" });
  await RootCa.fromPem({ certPem: inter.certPem, keyPem: inter.keyPem }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.instance(err, MalformedInputError),
  );
  await RootCa.fromSecret({ apiVersion: "v1", kind: "Secret", metadata: { name: "x" }, type: "kubernetes.io/tls", data: { "tls.crt": "!!" } }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.instance(err, MalformedInputError),
  );
});

// ---------------------------------------------------------------------------
const inter = suite("IntermediateCa", {} as { root: RootCa; inter: IntermediateCa });

inter.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: "example.org", clock: fixedClock(T0) });
  ctx.inter = await ctx.root.issueIntermediate({ cluster: "eu-1" });
});

inter("is a CA with critical pathLen 0, critical keyCertSign+cRLSign, and critical URI name constraints on the trust domain", (ctx) => {
  const pec = new x509.X509Certificate(ctx.inter.certificate.der);
  const bc = pec.getExtension(x509.BasicConstraintsExtension)!;
  assert.ok(bc.critical && bc.ca);
  assert.is(bc.pathLength, 0);
  const ku = pec.getExtension(x509.KeyUsagesExtension)!;
  assert.ok(ku.critical);
  assert.is(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  const nc = ctx.inter.certificate.nameConstraints!;
  assert.ok(nc.critical);
  assert.equal(nc.permittedUris, ["example.org"]);
  assert.ok(isSignedBy(ctx.inter.certificate, ctx.root.certificate.publicKey));
});

inter("names its cluster in the subject: O=<trust domain>, OU=fedgate-cluster, CN=<cluster>", (ctx) => {
  const c = ctx.inter.certificate;
  assert.equal(c.subjectField(OID.organizationName), ["example.org"]);
  assert.equal(c.subjectField(OID.organizationalUnitName), [CLUSTER_CA_UNIT]);
  assert.equal(c.subjectField(OID.commonName), ["eu-1"]);
  assert.is(ctx.inter.cluster, "eu-1");
  assert.is(new NodeX509(c.der).subject, "O=example.org\nOU=fedgate-cluster\nCN=eu-1");
});

inter("never outlives its root", async (ctx) => {
  const shortRoot = await RootCa.create({ trustDomain: "example.org", validityMs: 30 * DAY, clock: fixedClock(T0) });
  const i = await shortRoot.issueIntermediate({ cluster: "a", validityMs: 365 * DAY });
  assert.is(i.certificate.notAfter.getTime(), shortRoot.certificate.notAfter.getTime());
  assert.ok(ctx.inter.certificate.notAfter <= ctx.root.certificate.notAfter);
});

inter("can be issued for a key that stays in the cluster (from a CSR) and loaded from PEM there", async (ctx) => {
  const csr = await createCsr({ spiffeId: "spiffe://example.org/cluster/b" });
  const cert = await ctx.root.issueIntermediateFromCsr({ cluster: "b", csr: csr.csrPem });
  const loaded = await IntermediateCa.fromPem({ certPem: cert.pem, keyPem: csr.privateKeyPem, issuerPem: ctx.root.certPem, clock: fixedClock(T0) });
  assert.is(loaded.cluster, "b");
  const leaf = await loaded.issueLeaf();
  assert.is(leaf.spiffeId, "spiffe://example.org/cluster/b/gateway");
});

inter("round-trips through files and a Secret carrying the issuer as ca.crt", async (ctx) => {
  const secret = ctx.inter.toSecret({ name: "fedgate-intermediate-eu-1", namespace: "fedgate-system" });
  assert.equal(Object.keys(secret.data).sort(), ["ca.crt", "tls.crt", "tls.key"]);
  assert.is(secret.metadata.annotations?.["fedgate.io/cluster"], "eu-1");
  const back = await IntermediateCa.fromSecret(secret, { clock: fixedClock(T0) });
  assert.is(back.fingerprint, ctx.inter.fingerprint);
  const dir = await mkdtemp(join(tmpdir(), "fedgate-inter-"));
  try {
    await ctx.inter.writeFiles(dir);
    assert.is((await IntermediateCa.readFiles(dir)).fingerprint, ctx.inter.fingerprint);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

inter("refuses to load a certificate that is not a name-constrained cluster CA of its issuer", async (ctx) => {
  const other = await RootCa.create({ trustDomain: "example.org" });
  const cases = [
    { certPem: ctx.inter.certPem, keyPem: ctx.inter.keyPem, issuerPem: other.certPem }, // wrong issuer
    { certPem: ctx.root.certPem, keyPem: ctx.root.keyPem, issuerPem: ctx.root.certPem }, // a root (pathLen 1, no constraints)
  ];
  for (const c of cases) {
    await IntermediateCa.fromPem(c).then(
      () => assert.unreachable(),
      (err: unknown) => assert.instance(err, MalformedInputError),
    );
  }
  const b = await ctx.root.issueIntermediate({ cluster: "b" });
  await IntermediateCa.fromPem({ certPem: ctx.inter.certPem, keyPem: b.keyPem, issuerPem: ctx.root.certPem }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.instance(err, KeyMismatchError),
  );
});

// ---------------------------------------------------------------------------
const leaf = suite("leaf issuance", {} as { root: RootCa; inter: IntermediateCa });

leaf.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: "example.org", clock: fixedClock(T0) });
  ctx.inter = await ctx.root.issueIntermediate({ cluster: "a" });
});

leaf("issues a 24 h gateway SVID by default: SPIFFE URI SAN, not a CA, digitalSignature, serverAuth+clientAuth", async (ctx) => {
  const l = await ctx.inter.issueLeaf();
  const c = l.certificate;
  assert.is(l.spiffeId, "spiffe://example.org/cluster/a/gateway");
  assert.equal(c.uris, [l.spiffeId]);
  assert.is(c.notAfter.getTime() - T0.getTime(), DEFAULT_LEAF_TTL_MS);
  assert.ok(c.notBefore < T0);
  assert.equal(c.basicConstraints, { ca: false });
  assert.is(c.keyUsage, 1 << KEY_USAGE.digitalSignature);
  assert.equal(c.extKeyUsage, [OID.serverAuth, OID.clientAuth]);
  assert.ok(isSignedBy(c, ctx.inter.certificate.publicKey));
  assert.ok(await new x509.X509Certificate(c.der).verify({ publicKey: new x509.X509Certificate(ctx.inter.certificate.der).publicKey, signatureOnly: true }), "@peculiar/x509 verifies the hand-encoded leaf");
  assert.ok(new NodeX509(c.der).verify(new NodeX509(ctx.inter.certificate.der).publicKey), "Node verifies it too");
  assert.is(l.chain.length, 2);
  assert.is(l.chainPem, c.pem + ctx.inter.certPem);
  assert.ok(l.privateKeyPem?.startsWith("-----BEGIN PRIVATE KEY-----"));
  const pub = createPrivateKey(l.privateKeyPem!);
  assert.is(pub.asymmetricKeyType, "ec");
});

leaf("assembles the returned Certificate from the encoded fields exactly as parsing its DER would (EC and RSA)", async (ctx) => {
  const fields = (c: Certificate) => ({
    der: [...c.der], fingerprint: c.fingerprint, tbs: [...c.tbs], signatureAlgorithm: c.signatureAlgorithm, signature: [...c.signature],
    serialNumber: c.serialNumber, issuerDer: [...c.issuerDer], subjectDer: [...c.subjectDer], issuer: c.issuer, subject: c.subject,
    notBefore: c.notBefore.getTime(), notAfter: c.notAfter.getTime(), keyType: c.publicKeyInfo.type, rsaBits: c.publicKeyInfo.rsaBits,
    spki: [...c.publicKeyInfo.der], jwk: c.publicKeyInfo.jwk, basicConstraints: c.basicConstraints, keyUsage: c.keyUsage,
    extKeyUsage: c.extKeyUsage, uris: c.uris, dnsNames: c.dnsNames, otherSanCount: c.otherSanCount, sanCritical: c.subjectAltNameCritical,
    nameConstraints: c.nameConstraints, ski: c.subjectKeyId, aki: c.authorityKeyId, unknown: c.unknownCriticalExtensions,
  });
  for (const l of [await ctx.inter.issueLeaf(), await ctx.inter.issueLeaf({ algorithm: "ecdsa-p384" }), await ctx.inter.issueLeaf({ algorithm: "rsa-3072" })]) {
    assert.equal(fields(l.certificate), fields(parseCertificate(l.certificate.der)));
    const key = createPrivateKey(l.privateKeyPem!);
    assert.is(createPublicKey(key).export({ type: "spki", format: "der" }).toString("hex"), Buffer.from(l.certificate.publicKeyInfo.der).toString("hex"), "the PKCS#8 key is the certified key");
  }
});

leaf("adds keyEncipherment for RSA leaf keys and honours a custom TTL", async (ctx) => {
  const l = await ctx.inter.issueLeaf({ algorithm: "rsa-3072", ttlMs: 2 * HOUR, spiffeId: "spiffe://example.org/cluster/a/ns/db/sa/pg" });
  assert.is(l.certificate.keyUsage, (1 << KEY_USAGE.digitalSignature) | (1 << KEY_USAGE.keyEncipherment));
  assert.is(l.certificate.notAfter.getTime() - T0.getTime(), 2 * HOUR);
});

leaf("issues from a CSR: certifies the CSR's key and keeps no private key", async (ctx) => {
  const id = "spiffe://example.org/cluster/a/ns/shop/sa/cart";
  const csr = await createCsr({ spiffeId: id, algorithm: "ecdsa-p384" });
  const l = await ctx.inter.issueLeaf({ spiffeId: id, csr: csr.csrPem });
  assert.is(l.privateKeyPem, undefined);
  assert.is(l.certificate.publicKeyInfo.type, "ecdsa-p384");
  const csrPub = new x509.Pkcs10CertificateRequest(csr.csrPem).publicKey.rawData;
  assert.equal([...l.certificate.publicKeyInfo.der], [...new Uint8Array(csrPub)]);
});

leaf("refuses a CSR asking for another identity than the one granted", async (ctx) => {
  const csr = await createCsr({ spiffeId: "spiffe://example.org/cluster/a/ns/x/sa/admin" });
  await ctx.inter.issueLeaf({ spiffeId: "spiffe://example.org/cluster/a/ns/x/sa/web", csr: csr.csrPem }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.instance(err, IssuanceRefusedError),
  );
});

leaf("refuses a CSR whose signature does not verify", async (ctx) => {
  const csr = await createCsr({ spiffeId: "spiffe://example.org/cluster/a/gateway" });
  const der = new Uint8Array(new x509.Pkcs10CertificateRequest(csr.csrPem).rawData);
  der[der.length - 1]! ^= 0x01; // last octet of the signature's s: still valid DER, wrong signature
  await ctx.inter.issueLeaf({ csr: der }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.instance(err, InvalidCsrError),
  );
});

const outOfScope = [
  { name: "another cluster's path", id: "spiffe://example.org/cluster/b/gateway" },
  { name: "another trust domain", id: "spiffe://evil.org/cluster/a/gateway" },
  { name: "a path outside /cluster/<name>/", id: "spiffe://example.org/ns/shop/sa/cart" },
  { name: "a malformed ID", id: "spiffe://example.org/cluster/a/../b" },
];
for (const c of outOfScope) {
  leaf(`refuses to issue for ${c.name}`, async (ctx) => {
    await ctx.inter.issueLeaf({ spiffeId: c.id }).then(
      () => assert.unreachable(),
      (err: unknown) => assert.instance(err, IssuanceRefusedError),
    );
  });
}

leaf("rejects bad TTLs with a typed options error", async (ctx) => {
  for (const ttlMs of [0, -5, 31 * DAY, 1.5]) {
    await ctx.inter.issueLeaf({ ttlMs }).then(
      () => assert.unreachable(),
      (err: unknown) => assert.instance(err, TrustOptionsError),
    );
  }
});

leaf("caps a leaf at its intermediate's expiry, and refuses once the intermediate has expired", async () => {
  let now = T0;
  const clock = { now: () => now };
  const r = await RootCa.create({ trustDomain: "example.org", clock });
  const i = await r.issueIntermediate({ cluster: "a", validityMs: 12 * HOUR });
  const l = await i.issueLeaf();
  assert.is(l.certificate.notAfter.getTime(), i.certificate.notAfter.getTime());
  now = new Date(T0.getTime() + 13 * HOUR);
  await i.issueLeaf().then(
    () => assert.unreachable(),
    (err: unknown) => assert.ok(err instanceof IssuanceRefusedError && err instanceof FedgateError),
  );
});

root.run();
inter.run();
leaf.run();
