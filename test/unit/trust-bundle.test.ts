import { createHash } from "node:crypto";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { BundleValidationError, DEFAULT_REFRESH_HINT_SECONDS, RootCa, TrustBundle, type IssuedLeaf } from "../../trust/index.ts";
import { fixedClock } from "../support/tls-fixtures.ts";

const NOW = new Date("2030-06-01T00:00:00Z");
const DAY = 86_400_000;

interface Ctx {
  p256: RootCa;
  p384: RootCa;
  rsa: RootCa;
  expired: RootCa;
  leaf: IssuedLeaf;
}

const setup = async (ctx: Ctx) => {
  ctx.p256 = await RootCa.create({ trustDomain: "example.org", clock: fixedClock(NOW) });
  ctx.p384 = await RootCa.create({ trustDomain: "example.org", algorithm: "ecdsa-p384", clock: fixedClock(NOW) });
  ctx.rsa = await RootCa.create({ trustDomain: "example.org", algorithm: "rsa-3072", clock: fixedClock(NOW) });
  ctx.expired = await RootCa.create({ trustDomain: "example.org", validityMs: 2 * 3_600_000, clock: fixedClock(new Date(NOW.getTime() - 10 * DAY)) });
  ctx.leaf = await (await ctx.p256.issueIntermediate({ cluster: "a" })).issueLeaf();
};

// ---------------------------------------------------------------------------
const jwks = suite("SPIFFE bundle (JWKS) format", {} as Ctx);
jwks.before(setup);

jwks("writes one x509-svid key per authority with kty, curve point or modulus, x5c, sequence and refresh hint", (ctx) => {
  const b = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate, ctx.p384.certificate, ctx.rsa.certificate], sequence: 7, refreshHintSeconds: 60, now: NOW });
  const doc = b.toJwks();
  assert.is(doc.spiffe_sequence, 7);
  assert.is(doc.spiffe_refresh_hint, 60);
  const [k256, k384, krsa] = doc.keys;
  assert.equal({ use: k256!.use, kty: k256!.kty, crv: k256!.crv }, { use: "x509-svid", kty: "EC", crv: "P-256" });
  assert.is(Buffer.from(k256!.x!, "base64url").length, 32);
  assert.is(Buffer.from(k256!.y!, "base64url").length, 32);
  assert.is(k384!.crv, "P-384");
  assert.is(krsa!.kty, "RSA");
  assert.is(krsa!.e, "AQAB");
  assert.is(Buffer.from(krsa!.n!, "base64url").length, 384);
  assert.is(k256!.x5c.length, 1);
  assert.equal([...Buffer.from(k256!.x5c[0]!, "base64")], [...ctx.p256.certificate.der]);
});

jwks("round-trips JWKS -> bundle -> JWKS and PEM -> bundle -> PEM", (ctx) => {
  const b = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate, ctx.rsa.certificate], sequence: 3, now: NOW });
  const back = TrustBundle.fromJwks(b.toJson(), { trustDomain: "example.org", now: NOW });
  assert.is(back.toJson(), b.toJson());
  assert.is(back.sequence, 3);
  assert.is(back.fingerprint, b.fingerprint);
  const fromPem = TrustBundle.fromPem(b.toPem(), { trustDomain: "example.org", sequence: 3, now: NOW });
  assert.is(fromPem.toPem(), b.toPem());
  assert.equal(fromPem.caPems(), [ctx.p256.certPem, ctx.rsa.certPem]);
});

jwks("skips jwt-svid and unknown-use keys, and defaults a missing sequence and refresh hint", (ctx) => {
  const x509Key = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate], sequence: 0, now: NOW }).toJwks().keys[0];
  const doc = { keys: [{ use: "jwt-svid", kty: "EC", kid: "k1", crv: "P-256", x: "AA", y: "AA" }, { use: "something-else", kty: "oct" }, x509Key] };
  const b = TrustBundle.fromJwks(JSON.stringify(doc), { trustDomain: "example.org", now: NOW });
  assert.is(b.certificates.length, 1);
  assert.is(b.sequence, 0);
  assert.is(b.refreshHintSeconds, DEFAULT_REFRESH_HINT_SECONDS);
});

// ---------------------------------------------------------------------------
const ops = suite("bundle operations", {} as Ctx);
ops.before(setup);

ops("fingerprint is SHA-256 over the sorted certificate fingerprints, independent of order and sequence", (ctx) => {
  const a = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate, ctx.p384.certificate], sequence: 1, now: NOW });
  const b = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p384.certificate, ctx.p256.certificate], sequence: 9, now: NOW });
  assert.is(a.fingerprint, b.fingerprint);
  const sorted = [ctx.p256.fingerprint, ctx.p384.fingerprint].sort();
  const expect = createHash("sha256").update(Buffer.concat(sorted.map((f) => Buffer.from(f, "hex")))).digest("hex");
  assert.is(a.fingerprint, expect);
  const c = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate], sequence: 1, now: NOW });
  assert.is.not(c.fingerprint, a.fingerprint);
});

ops("merge unions by fingerprint and moves the sequence past both inputs", (ctx) => {
  const a = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate, ctx.p384.certificate], sequence: 4, refreshHintSeconds: 300, now: NOW });
  const b = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p384.certificate, ctx.rsa.certificate], sequence: 6, refreshHintSeconds: 60, now: NOW });
  const m = a.merge(b, { now: NOW });
  assert.equal(m.certificates.map((c) => c.fingerprint), [ctx.p256.fingerprint, ctx.p384.fingerprint, ctx.rsa.fingerprint]);
  assert.is(m.sequence, 7);
  assert.is(m.refreshHintSeconds, 60);
  const other = TrustBundle.create({ trustDomain: "other.org", certificates: [ctx.rsa.certificate], sequence: 1, now: NOW });
  assert.throws(() => a.merge(other), (err: unknown) => err instanceof BundleValidationError);
});

ops("diff lists added and removed authorities by fingerprint", (ctx) => {
  const before = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate, ctx.p384.certificate], sequence: 1, now: NOW });
  const after = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p384.certificate, ctx.rsa.certificate], sequence: 2, now: NOW });
  const d = before.diff(after);
  assert.equal(d.added.map((c) => c.fingerprint), [ctx.rsa.fingerprint]);
  assert.equal(d.removed.map((c) => c.fingerprint), [ctx.p256.fingerprint]);
  assert.equal(before.diff(before), { added: [], removed: [] });
});

// ---------------------------------------------------------------------------
const validation = suite("bundle validation", {} as Ctx);
validation.before(setup);

validation("reports expired, not-CA, duplicated and malformed certificates together", (ctx) => {
  const good = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate], sequence: 1, now: NOW }).toJwks().keys[0]!;
  const expired = { ...good, x5c: [Buffer.from(ctx.expired.certificate.der).toString("base64")] };
  const notCa = { ...good, x5c: [Buffer.from(ctx.leaf.certificate.der).toString("base64")] };
  const malformed = { ...good, x5c: [Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]).toString("base64")] };
  const doc = { keys: [good, expired, notCa, good, malformed], spiffe_sequence: 2 };
  try {
    TrustBundle.fromJwks(JSON.stringify(doc), { trustDomain: "example.org", now: NOW });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, BundleValidationError);
    const problems = (err as BundleValidationError).problems;
    const byPath = (p: string) => problems.filter((x) => x.path.startsWith(p)).map((x) => x.message).join(" | ");
    assert.match(byPath("keys[1]"), /expired/);
    assert.match(byPath("keys[2]"), /not a CA/);
    assert.match(byPath("keys[3]"), /duplicates keys\[0\]/);
    assert.match(byPath("keys[4]"), /malformed/);
    assert.is(byPath("keys[0]"), "");
    assert.ok(problems.length >= 4);
    assert.is((err as BundleValidationError).code, "FEDGATE_TRUST_INVALID_BUNDLE");
  }
});

validation("rejects JWK parameters that do not match the certificate, and x5c holding more or less than one certificate", (ctx) => {
  const [k] = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p256.certificate], sequence: 1, now: NOW }).toJwks().keys;
  const other = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.p384.certificate], sequence: 1, now: NOW }).toJwks().keys[0]!;
  const cases = [
    { keys: [{ ...k, x: other.x }] },
    { keys: [{ ...k, kty: "RSA" }] },
    { keys: [{ ...k, x5c: [] }] },
    { keys: [{ ...k, x5c: [k!.x5c[0], k!.x5c[0]] }] },
    { keys: [] },
    { keys: "nope" },
    { keys: [k], spiffe_sequence: -1 },
  ];
  for (const doc of cases) {
    assert.throws(() => TrustBundle.fromJwks(JSON.stringify(doc), { trustDomain: "example.org", now: NOW }), (err: unknown) => err instanceof BundleValidationError, JSON.stringify(doc).slice(0, 80));
  }
});

validation("create() validates too: an empty set, a bad trust domain and junk PEM are all reported", (ctx) => {
  try {
    TrustBundle.create({ trustDomain: "Bad Domain", certificates: ["-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n", ctx.leaf.certificate], sequence: -2, now: NOW });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, BundleValidationError);
    assert.equal((err as BundleValidationError).problems.map((p) => p.path).sort(), ["certificates[0]", "certificates[1]", "sequence", "trustDomain"]);
  }
  assert.throws(() => TrustBundle.create({ trustDomain: "example.org", certificates: [], sequence: 1 }), (err: unknown) => err instanceof BundleValidationError);
});

jwks.run();
ops.run();
validation.run();
