import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  ClusterRevokedError,
  IssuanceRefusedError,
  MalformedInputError,
  RevocationList,
  RevocationUnknownSignerError,
  Revocations,
  RootCa,
  StaleRevocationError,
  TrustBundle,
  WrongTrustDomainError,
  acceptRevocations,
  acceptRevocationsRecord,
  revocationsRecord,
  verifyPeer,
  type IntermediateCa,
} from "../../trust/internal.ts";
import { prng } from "../support/prng.ts";

const TD = "example.org";
const DAY_MS = 86_400_000;

interface Ctx {
  root: RootCa;
  rogue: RootCa;
  a: IntermediateCa;
  b: IntermediateCa;
  bundle: TrustBundle;
}

const rev = suite("cluster revocation (root-signed CRLs)", {} as Ctx);

rev.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: TD });
  ctx.rogue = await RootCa.create({ trustDomain: TD });
  ctx.a = await ctx.root.issueIntermediate({ cluster: "a" });
  ctx.b = await ctx.root.issueIntermediate({ cluster: "b" });
  ctx.bundle = TrustBundle.create({ trustDomain: TD, certificates: [ctx.root.certificate], sequence: 1 });
});

rev("a CRL listing A's intermediate revokes A's identities and no one else's", async (ctx) => {
  const crl = await ctx.root.issueRevocationList({ intermediates: [ctx.a.certificate], crlNumber: 1 });
  assert.is(crl.crlNumber, 1n);
  assert.equal([...crl.revokedSerials], [ctx.a.certificate.serialNumber]);
  const { revocations, changed } = acceptRevocations(crl.pem, { bundle: ctx.bundle });
  assert.ok(changed);
  const leafA = await ctx.a.issueLeaf();
  const leafB = await ctx.b.issueLeaf();
  try {
    verifyPeer([leafA.chainPem], ctx.bundle, { revocations });
    assert.unreachable("A must be refused");
  } catch (err) {
    assert.instance(err, ClusterRevokedError);
    assert.is((err as ClusterRevokedError).cluster, "a");
  }
  assert.is(verifyPeer([leafB.chainPem], ctx.bundle, { revocations }).cluster, "b");
});

rev("OpenSSL reads the CRL fedgate issues and revokes A's intermediate with it", async (ctx) => {
  const crl = await ctx.root.issueRevocationList({ intermediates: [ctx.a.certificate], crlNumber: 3 });
  const dir = mkdtempSync(join(tmpdir(), "fedgate-crl-"));
  try {
    writeFileSync(join(dir, "crl.pem"), crl.pem);
    writeFileSync(join(dir, "root.pem"), ctx.root.certPem);
    writeFileSync(join(dir, "a.pem"), ctx.a.certificate.pem);
    const text = execFileSync("openssl", ["crl", "-in", join(dir, "crl.pem"), "-CAfile", join(dir, "root.pem"), "-noout", "-text"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    assert.match(text, /X509v3 CRL Number:\s*\n\s*3/);
    assert.match(text.toLowerCase(), ctx.a.certificate.serialNumber.replace(/^00/, ""));
    let refused = "";
    try {
      execFileSync("openssl", ["verify", "-crl_check", "-CAfile", join(dir, "root.pem"), "-CRLfile", join(dir, "crl.pem"), join(dir, "a.pem")], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      refused = String((err as { stdout?: unknown }).stdout) + String((err as { stderr?: unknown }).stderr);
    }
    assert.match(refused, /certificate revoked/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

rev("a forged list (another root), a replayed or older list, and an expired list are refused and change nothing", async (ctx) => {
  const first = await ctx.root.issueRevocationList({ intermediates: [ctx.a.certificate], crlNumber: 5 });
  const { revocations: installed } = acceptRevocations(first.pem, { bundle: ctx.bundle });
  const forged = await ctx.rogue.issueRevocationList({ intermediates: [], crlNumber: 99 });
  assert.throws(() => acceptRevocations(forged.pem, { bundle: ctx.bundle, current: installed }), (e: unknown) => e instanceof RevocationUnknownSignerError);
  const older = await ctx.root.issueRevocationList({ intermediates: [], crlNumber: 4 });
  assert.throws(() => acceptRevocations(older.pem, { bundle: ctx.bundle, current: installed }), (e: unknown) => e instanceof StaleRevocationError);
  const sameNumber = await ctx.root.issueRevocationList({ intermediates: [], crlNumber: 5 });
  assert.throws(() => acceptRevocations(sameNumber.pem, { bundle: ctx.bundle, current: installed }), (e: unknown) => e instanceof StaleRevocationError);
  const again = acceptRevocations(first.pem, { bundle: ctx.bundle, current: installed });
  assert.is(again.changed, false);
  assert.is(again.revocations, installed);
  const expiring = await ctx.root.issueRevocationList({ intermediates: [], crlNumber: 6, validityMs: DAY_MS });
  assert.throws(() => acceptRevocations(expiring.pem, { bundle: ctx.bundle, current: installed, now: new Date(Date.now() + 2 * DAY_MS) }), (e: unknown) => e instanceof StaleRevocationError);
  // What was installed still holds: A stays revoked.
  assert.ok(installed.isRevoked(ctx.a.certificate, ctx.root.certificate));
  // A newer list un-revokes A (the admin re-admitted it).
  const next = acceptRevocations(expiring.pem, { bundle: ctx.bundle, current: installed });
  assert.ok(next.changed);
  assert.not.ok(next.revocations.isRevoked(ctx.a.certificate, ctx.root.certificate));
});

rev("a root revokes only what it issued", async (ctx) => {
  const other = await ctx.rogue.issueIntermediate({ cluster: "x" });
  try {
    await ctx.root.issueRevocationList({ intermediates: [other.certificate], crlNumber: 1 });
    assert.unreachable("must refuse");
  } catch (err) {
    assert.instance(err, IssuanceRefusedError);
  }
});

rev("the bus record is zod-validated and bound to the trust domain", async (ctx) => {
  const crl = await ctx.root.issueRevocationList({ intermediates: [ctx.b.certificate], crlNumber: 1 });
  const accepted = acceptRevocationsRecord(revocationsRecord(TD, [crl]), { bundle: ctx.bundle });
  assert.ok(accepted.revocations.isRevoked(ctx.b.certificate, ctx.root.certificate));
  assert.is(accepted.revocations.pem, crl.pem);
  assert.throws(() => acceptRevocationsRecord(revocationsRecord("other.org", [crl]), { bundle: ctx.bundle }), (e: unknown) => e instanceof WrongTrustDomainError);
  for (const bad of ["{", "[]", JSON.stringify({ v: 2, kind: "fedgate.revocations", trustDomain: TD, crls: [] }), JSON.stringify({ v: 1, kind: "fedgate.revocations", trustDomain: TD, crls: [crl.pem], extra: 1 })]) {
    assert.throws(() => acceptRevocationsRecord(bad, { bundle: ctx.bundle }), (e: unknown) => e instanceof MalformedInputError, bad.slice(0, 40));
  }
});

rev("mutated CRL bytes are a MalformedInputError or a refused signature, never an install", async (ctx) => {
  const crl = await ctx.root.issueRevocationList({ intermediates: [ctx.a.certificate, ctx.b.certificate], crlNumber: 9 });
  const random = prng(11);
  let malformed = 0;
  let unsigned = 0;
  for (let i = 0; i < 300; i++) {
    const bytes = new Uint8Array(crl.der);
    const flips = 1 + Math.floor(random() * 4);
    for (let k = 0; k < flips; k++) {
      const at = Math.floor(random() * bytes.length);
      bytes[at] = bytes[at]! ^ (1 << Math.floor(random() * 8));
    }
    const input = i % 5 === 0 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
    try {
      const parsed = RevocationList.parse(input);
      acceptRevocations(parsed.pem, { bundle: ctx.bundle });
      // Only a mutation that lands in nothing covered by the signature could get here; DER has no such bytes.
      assert.unreachable(`mutation ${i} was installed`);
    } catch (err) {
      if (err instanceof MalformedInputError) malformed++;
      else if (err instanceof RevocationUnknownSignerError) unsigned++;
      else throw err;
    }
  }
  assert.is(malformed + unsigned, 300);
  assert.ok(malformed > 0 && unsigned > 0, `${malformed} malformed, ${unsigned} unsigned`);
  assert.is(Revocations.NONE.lists.length, 0);
});

rev.run();
