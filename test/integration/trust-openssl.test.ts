import { readFile, writeFile } from "node:fs/promises";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { RootCa, importPrivateKeyPem, parseCsr, type IntermediateCa, type KeyAlgorithm } from "../../trust/index.ts";
import { forgeLeaf } from "../support/tls-fixtures.ts";
import { openssl, tempFiles } from "../support/tls-harness.ts";

/**
 * Independent checks of what fedgate issues, by the OpenSSL command line tool
 * (/usr/bin/openssl, 3.x): chains verify, extensions read back as intended,
 * the trust-domain name constraint is enforced by OpenSSL itself, and the
 * cluster-path limitation of X.509 URI constraints is pinned down.
 */

const TD = "example.org";

interface Ctx {
  root: RootCa;
  a: IntermediateCa;
}

const verify = suite("openssl verify", {} as Ctx);

verify.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: TD });
  ctx.a = await ctx.root.issueIntermediate({ cluster: "a" });
});

async function opensslVerify(files: { root: string; inter: string; leaf: string }, extra: string[] = []): Promise<{ code: number; out: string }> {
  const t = await tempFiles({ "root.pem": files.root, "inter.pem": files.inter, "leaf.pem": files.leaf });
  try {
    const r = await openssl(["verify", ...extra, "-CAfile", t.path("root.pem"), "-untrusted", t.path("inter.pem"), t.path("leaf.pem")]);
    return { code: r.code, out: r.stdout + r.stderr };
  } finally {
    await t.remove();
  }
}

for (const [rootAlg, leafAlg] of [
  ["ecdsa-p256", "ecdsa-p256"],
  ["ecdsa-p384", "ecdsa-p256"],
  ["rsa-3072", "rsa-3072"],
] as [KeyAlgorithm, KeyAlgorithm][]) {
  verify(`accepts a ${rootAlg} root -> intermediate -> ${leafAlg} leaf chain`, async () => {
    const root = await RootCa.create({ trustDomain: TD, algorithm: rootAlg });
    const inter = await root.issueIntermediate({ cluster: "a", algorithm: rootAlg });
    const leaf = await inter.issueLeaf({ algorithm: leafAlg });
    const r = await opensslVerify({ root: root.certPem, inter: inter.certPem, leaf: leaf.certPem }, ["-purpose", "sslserver"]);
    assert.is(r.code, 0, r.out);
    assert.match(r.out, /leaf\.pem: OK/);
    const c = await opensslVerify({ root: root.certPem, inter: inter.certPem, leaf: leaf.certPem }, ["-purpose", "sslclient"]);
    assert.is(c.code, 0, c.out);
  });
}

verify("accepts a leaf issued from a CSR made by openssl itself", async (ctx) => {
  const t = await tempFiles({
    "req.cnf": "[req]\ndistinguished_name=dn\nprompt=no\nreq_extensions=ext\n[dn]\nCN=ignored\n[ext]\nsubjectAltName=critical,URI:spiffe://example.org/cluster/a/ns/shop/sa/cart\n",
  });
  try {
    const gen = await openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", t.path("key.pem"), "-out", t.path("req.pem"), "-config", t.path("req.cnf")]);
    assert.is(gen.code, 0, gen.stderr);
    const csrPem = await readFile(t.path("req.pem"), "utf8");
    assert.equal(parseCsr(csrPem).requestedUris, ["spiffe://example.org/cluster/a/ns/shop/sa/cart"]);
    const keyPem = await readFile(t.path("key.pem"), "utf8");
    assert.is((await importPrivateKeyPem(keyPem)).type, "ecdsa-p256", "openssl's PKCS#8 key imports");
    const leaf = await ctx.a.issueLeaf({ spiffeId: "spiffe://example.org/cluster/a/ns/shop/sa/cart", csr: csrPem });
    await writeFile(t.path("leaf.pem"), leaf.certPem);
    const r = await opensslVerify({ root: ctx.root.certPem, inter: ctx.a.certPem, leaf: leaf.certPem });
    assert.is(r.code, 0, r.out);
    const pub1 = await openssl(["x509", "-in", t.path("leaf.pem"), "-noout", "-pubkey"]);
    const pub2 = await openssl(["pkey", "-in", t.path("key.pem"), "-pubout"]);
    assert.is(pub1.stdout, pub2.stdout, "the leaf certifies the CSR's key");
  } finally {
    await t.remove();
  }
});

verify("with -partial_chain, accepts a leaf against its cluster intermediate alone as the trust anchor", async (ctx) => {
  const leaf = await ctx.a.issueLeaf();
  const t = await tempFiles({ "inter.pem": ctx.a.certPem, "leaf.pem": leaf.certPem });
  try {
    const without = await openssl(["verify", "-CAfile", t.path("inter.pem"), t.path("leaf.pem")]);
    assert.is.not(without.code, 0, "an intermediate is not a trust anchor by default");
    const partial = await openssl(["verify", "-partial_chain", "-CAfile", t.path("inter.pem"), t.path("leaf.pem")]);
    assert.is(partial.code, 0, partial.stdout + partial.stderr);
  } finally {
    await t.remove();
  }
});

verify("rejects a leaf claiming another trust domain: OpenSSL enforces the intermediate's URI name constraint", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://evil.org/cluster/a/gateway" });
  const r = await opensslVerify({ root: ctx.root.certPem, inter: ctx.a.certPem, leaf: forged.certificate.pem });
  assert.is.not(r.code, 0);
  assert.match(r.out, /permitted subtree violation/);
});

verify("KNOWN LIMITATION: openssl verify accepts a cluster-A leaf claiming cluster B's path, because X.509 URI constraints match only the host (fedgate's verifyPeer rejects it)", async (ctx) => {
  const forged = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/cluster/b/gateway" });
  const r = await opensslVerify({ root: ctx.root.certPem, inter: ctx.a.certPem, leaf: forged.certificate.pem });
  assert.is(r.code, 0, "OpenSSL cannot see the path scope; if this starts failing, OpenSSL changed and trust/README.md must be updated");
  assert.match(r.out, /OK/);
});

verify("rejects an expired leaf and a chain to another root", async (ctx) => {
  const past = await forgeLeaf({ intermediate: ctx.a, spiffeId: "spiffe://example.org/cluster/a/gateway", notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  const expired = await opensslVerify({ root: ctx.root.certPem, inter: ctx.a.certPem, leaf: past.certificate.pem });
  assert.is.not(expired.code, 0);
  assert.match(expired.out, /certificate has expired/);
  const other = await RootCa.create({ trustDomain: TD });
  const leaf = await ctx.a.issueLeaf();
  const wrong = await opensslVerify({ root: other.certPem, inter: ctx.a.certPem, leaf: leaf.certPem });
  assert.is.not(wrong.code, 0);
});

// ---------------------------------------------------------------------------
const text = suite("openssl x509 -text", {} as Ctx);

text.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: TD });
  ctx.a = await ctx.root.issueIntermediate({ cluster: "a" });
});

async function x509Text(pem: string): Promise<string> {
  const t = await tempFiles({ "c.pem": pem });
  try {
    const r = await openssl(["x509", "-in", t.path("c.pem"), "-text", "-noout"]);
    assert.is(r.code, 0, r.stderr);
    return r.stdout;
  } finally {
    await t.remove();
  }
}

text("shows the intermediate as a critical CA:TRUE, pathlen:0 with keyCertSign and critical URI name constraints", async (ctx) => {
  const out = await x509Text(ctx.a.certPem);
  assert.match(out, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
  assert.match(out, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
  assert.match(out, /X509v3 Name Constraints: critical\s+Permitted:\s+URI:example\.org/);
  assert.match(out, /Subject: O = example\.org, OU = fedgate-cluster, CN = a/);
  assert.match(out, /X509v3 Authority Key Identifier/);
});

text("shows the leaf as CA:FALSE with the SPIFFE URI SAN, digitalSignature and server+client auth", async (ctx) => {
  const leaf = await ctx.a.issueLeaf({ spiffeId: "spiffe://example.org/cluster/a/ns/shop/sa/cart" });
  const out = await x509Text(leaf.certPem);
  assert.match(out, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  assert.match(out, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/example\.org\/cluster\/a\/ns\/shop\/sa\/cart/);
  assert.match(out, /X509v3 Key Usage: critical\s+Digital Signature\n/);
  assert.match(out, /TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(out, /Signature Algorithm: ecdsa-with-SHA256/);
  const rsaLeaf = await ctx.a.issueLeaf({ algorithm: "rsa-3072" });
  assert.match(await x509Text(rsaLeaf.certPem), /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
});

text("shows the root as a self-signed CA of the trust domain", async (ctx) => {
  const out = await x509Text(ctx.root.certPem);
  assert.match(out, /CA:TRUE, pathlen:1/);
  assert.match(out, /Issuer: O = example\.org, CN = fedgate root/);
  assert.match(out, /Subject: O = example\.org, CN = fedgate root/);
});

verify.run();
text.run();
