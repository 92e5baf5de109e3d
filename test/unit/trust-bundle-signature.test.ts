import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  BundleTamperedError,
  BundleUnknownSignerError,
  BundleValidationError,
  MalformedInputError,
  RootCa,
  StaleBundleError,
  TrustBundle,
  WrongTrustDomainError,
  acceptSignedBundle,
  parseSignedBundle,
  signBundle,
  type SignedBundle,
} from "../../trust/index.ts";
import { fixedClock } from "../support/tls-fixtures.ts";

const NOW = new Date("2030-06-01T00:00:00Z");
const TD = "example.org";

interface Ctx {
  oldRoot: RootCa;
  newRoot: RootCa;
  attacker: RootCa;
  installed: TrustBundle; // what a cluster has today: { old }
  both: TrustBundle; // { old, new }, sequence 2
  onlyNew: TrustBundle; // { new }, sequence 3
}

const sig = suite("signed trust bundles", {} as Ctx);

sig.before(async (ctx) => {
  const clock = fixedClock(NOW);
  ctx.oldRoot = await RootCa.create({ trustDomain: TD, clock });
  ctx.newRoot = await RootCa.create({ trustDomain: TD, algorithm: "ecdsa-p384", clock });
  ctx.attacker = await RootCa.create({ trustDomain: TD, clock });
  ctx.installed = TrustBundle.create({ trustDomain: TD, certificates: [ctx.oldRoot.certificate], sequence: 1, now: NOW });
  ctx.both = TrustBundle.create({ trustDomain: TD, certificates: [ctx.oldRoot.certificate, ctx.newRoot.certificate], sequence: 2, now: NOW });
  ctx.onlyNew = TrustBundle.create({ trustDomain: TD, certificates: [ctx.newRoot.certificate], sequence: 3, now: NOW });
});

const rejects = (fn: () => unknown, cls: abstract new (...args: never[]) => Error) =>
  assert.throws(fn, (err: unknown) => {
    if (!(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${String(err)}`);
    return true;
  });

sig("accepts a rotation announcement: the bundle adding the new root, signed by the root the receiver already trusts", async (ctx) => {
  const signed = await signBundle(ctx.both, [ctx.oldRoot, ctx.newRoot]);
  assert.is(signed.signatures.length, 2);
  assert.equal(signed.signatures.map((s) => s.alg), ["ES256", "ES384"]);
  const res = acceptSignedBundle(JSON.stringify(signed), { current: ctx.installed, now: NOW });
  assert.ok(res.changed);
  assert.equal(res.signedBy, [ctx.oldRoot.fingerprint]);
  assert.is(res.bundle.fingerprint, ctx.both.fingerprint);
  assert.is(res.bundle.sequence, 2);
});

sig("after the announcement, the bundle retiring the old root is accepted on the new root's signature alone", async (ctx) => {
  const signed = await signBundle(ctx.onlyNew, [ctx.newRoot]);
  const res = acceptSignedBundle(signed, { current: ctx.both, now: NOW });
  assert.equal(res.signedBy, [ctx.newRoot.fingerprint]);
  assert.equal(res.bundle.certificates.map((c) => c.fingerprint), [ctx.newRoot.fingerprint]);
});

sig("a cluster that missed the announcement catches up because the retiring bundle is also signed by the old root", async (ctx) => {
  const signed = await signBundle(ctx.onlyNew, [ctx.newRoot, ctx.oldRoot]);
  const res = acceptSignedBundle(signed, { current: ctx.installed, now: NOW });
  assert.equal(res.signedBy, [ctx.oldRoot.fingerprint]);
  rejects(() => acceptSignedBundle(keepSignatures(signed, [0]), { current: ctx.installed, now: NOW }), BundleUnknownSignerError);
});

sig("rejects a bundle signed by a key the receiver does not trust (a bus writer substituting its own root)", async (ctx) => {
  const evil = TrustBundle.create({ trustDomain: TD, certificates: [ctx.attacker.certificate], sequence: 99, now: NOW });
  const signed = await signBundle(evil, [ctx.attacker]);
  rejects(() => acceptSignedBundle(signed, { current: ctx.installed, now: NOW }), BundleUnknownSignerError);
});

sig("rejects a tampered bundle: a trusted signature over different contents", async (ctx) => {
  const signed = await signBundle(ctx.both, [ctx.oldRoot]);
  const evil = TrustBundle.create({ trustDomain: TD, certificates: [ctx.oldRoot.certificate, ctx.attacker.certificate], sequence: 2, now: NOW });
  rejects(() => acceptSignedBundle({ ...signed, bundle: evil.toJson() }, { current: ctx.installed, now: NOW }), BundleTamperedError);
  rejects(() => acceptSignedBundle({ ...signed, sequence: 5 }, { current: ctx.installed, now: NOW }), BundleTamperedError);
  const flipped = { ...signed, signatures: signed.signatures.map((s) => ({ ...s, sig: flipChar(s.sig) })) };
  rejects(() => acceptSignedBundle(flipped, { current: ctx.installed, now: NOW }), BundleTamperedError);
  // Adding an attacker signature next to a broken trusted one does not help.
  const attackerSig = (await signBundle(evil, [ctx.attacker])).signatures[0]!;
  rejects(() => acceptSignedBundle({ ...signed, bundle: evil.toJson(), signatures: [...signed.signatures, attackerSig] }, { current: ctx.installed, now: NOW }), BundleTamperedError);
});

sig("rejects replays of older bundles and a different bundle under the installed sequence; restating the installed one is a no-op", async (ctx) => {
  const old = await signBundle(ctx.both, [ctx.oldRoot]);
  const current = acceptSignedBundle(old, { current: ctx.installed, now: NOW }).bundle;
  const newer = await signBundle(ctx.onlyNew, [ctx.oldRoot, ctx.newRoot]);
  const afterRetire = acceptSignedBundle(newer, { current, now: NOW }).bundle;
  // The old root is no longer trusted after retirement, so its announcement is no longer authoritative at all.
  rejects(() => acceptSignedBundle(old, { current: afterRetire, now: NOW }), BundleUnknownSignerError);
  // Re-delivery of the installed bundle changes nothing.
  const same = acceptSignedBundle(newer, { current: afterRetire, now: NOW });
  assert.not.ok(same.changed);
  assert.is(same.bundle, afterRetire);
  const sameSeqOtherCerts = await signBundle(TrustBundle.create({ trustDomain: TD, certificates: [ctx.oldRoot.certificate], sequence: 2, now: NOW }), [ctx.oldRoot]);
  rejects(() => acceptSignedBundle(sameSeqOtherCerts, { current, now: NOW }), StaleBundleError);
  const stale = await signBundle(TrustBundle.create({ trustDomain: TD, certificates: [ctx.oldRoot.certificate], sequence: 1, now: NOW }), [ctx.oldRoot]);
  rejects(() => acceptSignedBundle(stale, { current, now: NOW }), StaleBundleError);
});

sig("rejects a bundle for another trust domain, and a signer root that has expired", async (ctx) => {
  const other = await RootCa.create({ trustDomain: "other.org", clock: fixedClock(NOW) });
  const signed = await signBundle(TrustBundle.create({ trustDomain: "other.org", certificates: [other.certificate], sequence: 5, now: NOW }), [other]);
  rejects(() => acceptSignedBundle(signed, { current: ctx.installed, now: NOW }), WrongTrustDomainError);
  const ok = await signBundle(ctx.both, [ctx.oldRoot]);
  const afterExpiry = new Date(ctx.oldRoot.certificate.notAfter.getTime() + 1000);
  rejects(() => acceptSignedBundle(ok, { current: ctx.installed, now: afterExpiry }), BundleUnknownSignerError);
});

sig("rejects a correctly signed record whose inner sequence disagrees with the signed one", async (ctx) => {
  const inner = TrustBundle.create({ trustDomain: TD, certificates: [ctx.oldRoot.certificate, ctx.newRoot.certificate], sequence: 4, now: NOW });
  const sigs = await ctx.oldRoot.signBundleDocument({ trustDomain: TD, sequence: 5, bundleJson: inner.toJson() });
  const record: SignedBundle = { v: 1, kind: "fedgate.trust-bundle", trustDomain: TD, sequence: 5, bundle: inner.toJson(), signatures: [sigs] };
  rejects(() => acceptSignedBundle(record, { current: ctx.installed, now: NOW }), BundleValidationError);
});

sig("turns malformed records into typed errors", () => {
  for (const input of ["", "{", "[]", "null", JSON.stringify({ v: 2 }), JSON.stringify({ v: 1, kind: "fedgate.trust-bundle", trustDomain: TD, sequence: 1, bundle: "{}", signatures: [] })]) {
    assert.throws(() => parseSignedBundle(input), (err: unknown) => err instanceof MalformedInputError);
  }
});

sig("refuses to sign with a root of another trust domain", async (ctx) => {
  const other = await RootCa.create({ trustDomain: "other.org" });
  await signBundle(ctx.both, [other]).then(
    () => assert.unreachable(),
    (err: unknown) => assert.is((err as { code?: string }).code, "FEDGATE_TRUST_INVALID_OPTIONS"),
  );
});

function flipChar(s: string): string {
  const i = Math.floor(s.length / 2);
  return s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
}

/** Keeps only the signatures at `keep` (e.g. to model a record that lost the old root's signature). */
function keepSignatures(signed: SignedBundle, keep: number[]): SignedBundle {
  return { ...signed, signatures: signed.signatures.filter((_, i) => keep.includes(i)) };
}

sig.run();
