import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FedgateError } from "../../common/index.ts";
import {
  BundleValidationError,
  RootCa,
  RootRotation,
  TrustBundle,
  acceptSignedBundle,
  createCsr,
  decodePem,
  importPrivateKeyPem,
  parseCertificate,
  parseCsr,
  parseSignedBundle,
  signBundle,
  verifyPeer,
  x509,
} from "../../trust/internal.ts";
import { prng } from "../support/prng.ts";

/**
 * Every parser turns garbage into a typed error: truncated, mutated and
 * oversized inputs never escape as a bare Error, TypeError or RangeError.
 */

type Outcome = "ok" | "typed";

/** Runs `fn`; returns whether it succeeded or threw a FedgateError; fails the test on any other throw. */
async function outcome(fn: () => unknown, label: string): Promise<Outcome> {
  try {
    await fn();
    return "ok";
  } catch (err) {
    if (err instanceof FedgateError) return "typed";
    throw new Error(`${label}: untyped ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, { cause: err });
  }
}

async function mustFailTyped(fn: () => unknown, label: string): Promise<void> {
  assert.is(await outcome(fn, label), "typed", `${label} should have been rejected`);
}

function mutateBytes(src: Uint8Array, rnd: () => number): Uint8Array {
  const out = new Uint8Array(src);
  const flips = 1 + Math.floor(rnd() * 3);
  for (let i = 0; i < flips; i++) out[Math.floor(rnd() * out.length)] = Math.floor(rnd() * 256);
  return out;
}

function mutateText(src: string, rnd: () => number): string {
  const pos = Math.floor(rnd() * src.length);
  const chars = '{}[]":,0123456789-eE.abcxyz\\ \n"';
  const ch = chars[Math.floor(rnd() * chars.length)]!;
  switch (Math.floor(rnd() * 5)) {
    case 0:
      return src.slice(0, pos) + ch + src.slice(pos + 1); // replace
    case 1:
      return src.slice(0, pos) + src.slice(pos + 1); // delete
    case 2:
      return src.slice(0, pos) + ch + src.slice(pos); // insert
    case 3: {
      const len = Math.floor(rnd() * 40);
      return src.slice(0, pos) + src.slice(pos, pos + len) + src.slice(pos); // duplicate a run
    }
    default:
      return src.slice(0, pos); // truncate
  }
}

interface Ctx {
  root: RootCa;
  leafChain: string;
  certDer: Uint8Array;
  certPem: string;
  csrPem: string;
  csrDer: Uint8Array;
  keyPem: string;
  jwks: string;
  signed: string;
  bundle: TrustBundle;
  secret: object;
  state: string;
}

const bad = suite("bad input", {} as Ctx);

bad.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: "example.org" });
  const inter = await ctx.root.issueIntermediate({ cluster: "a" });
  const leaf = await inter.issueLeaf();
  ctx.leafChain = leaf.chainPem;
  ctx.certDer = inter.certificate.der;
  ctx.certPem = inter.certPem;
  const csr = await createCsr({ spiffeId: "spiffe://example.org/cluster/a/gateway" });
  ctx.csrPem = csr.csrPem;
  ctx.csrDer = new Uint8Array(new x509.Pkcs10CertificateRequest(csr.csrPem).rawData);
  ctx.keyPem = inter.keyPem;
  ctx.bundle = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.root.certificate], sequence: 4 });
  ctx.jwks = ctx.bundle.toJson();
  ctx.signed = JSON.stringify(await signBundle(ctx.bundle, [ctx.root]));
  ctx.secret = ctx.root.toSecret({ name: "root" });
  ctx.state = JSON.stringify(RootRotation.create({ trustDomain: "example.org", root: ctx.root.certificate, clusters: ["a"] }).toJSON());
});

bad("every parser accepts its valid input (the baseline for the tables below)", async (ctx) => {
  assert.is(decodePem(ctx.certPem).length, 1);
  assert.is(parseCertificate(ctx.certDer).fingerprint, parseCertificate(ctx.certPem).fingerprint);
  assert.equal(parseCsr(ctx.csrPem).requestedUris, ["spiffe://example.org/cluster/a/gateway"]);
  assert.is(TrustBundle.fromJwks(ctx.jwks, { trustDomain: "example.org" }).sequence, 4);
  assert.is(parseSignedBundle(ctx.signed).sequence, 4);
  assert.is((await importPrivateKeyPem(ctx.keyPem)).type, "ecdsa-p256");
  assert.is((await RootCa.fromSecret(ctx.secret)).fingerprint, ctx.root.fingerprint);
  assert.is(RootRotation.fromJSON(ctx.state).phase, "stable");
  assert.is(verifyPeer([ctx.leafChain], ctx.bundle).cluster, "a");
});

/** Each parser, applied to text or bytes. */
const parsers = (ctx: Ctx): { name: string; text?: (s: string) => unknown; bytes?: (b: Uint8Array) => unknown; valid: string | Uint8Array }[] => [
  { name: "PEM", text: (s) => decodePem(s), valid: ctx.certPem },
  { name: "certificate DER", bytes: (b) => parseCertificate(b), valid: ctx.certDer },
  { name: "certificate PEM", text: (s) => parseCertificate(s), valid: ctx.certPem },
  { name: "CSR DER", bytes: (b) => parseCsr(b), valid: ctx.csrDer },
  { name: "CSR PEM", text: (s) => parseCsr(s), valid: ctx.csrPem },
  { name: "PKCS#8 key", text: (s) => importPrivateKeyPem(s), valid: ctx.keyPem },
  { name: "JWKS bundle", text: (s) => TrustBundle.fromJwks(s, { trustDomain: "example.org" }), valid: ctx.jwks },
  { name: "PEM bundle", text: (s) => TrustBundle.fromPem(s, { trustDomain: "example.org", sequence: 1 }), valid: ctx.certPem },
  { name: "signed bundle record", text: (s) => parseSignedBundle(s), valid: ctx.signed },
  { name: "rotation state", text: (s) => RootRotation.fromJSON(s), valid: ctx.state },
  { name: "Secret", text: (s) => RootCa.fromSecret(JSON.parse(s) as unknown), valid: JSON.stringify(ctx.secret) },
  { name: "peer chain", text: (s) => verifyPeer([s], ctx.bundle), valid: ctx.leafChain },
];

bad("truncated inputs are rejected with typed errors", async (ctx) => {
  for (const p of parsers(ctx)) {
    const v = p.valid;
    for (const frac of [0, 0.1, 0.5, 0.9, 0.99]) {
      const cut = Math.floor(v.length * frac);
      if (typeof v === "string") {
        const truncated = v.slice(0, cut);
        const fn = () => (p.name === "Secret" ? RootCa.fromSecret(safeJson(truncated)) : p.text!(truncated));
        await mustFailTyped(fn, `${p.name} cut at ${cut}`);
      } else {
        await mustFailTyped(() => p.bytes!(v.subarray(0, cut)), `${p.name} cut at ${cut}`);
      }
    }
  }
});

bad("oversized inputs are rejected with typed errors before they are parsed", async (ctx) => {
  const hugeText = "A".repeat(2_100_000);
  for (const p of parsers(ctx)) {
    if (p.text) {
      const fn = () => (p.name === "Secret" ? RootCa.fromSecret({ apiVersion: "v1", kind: "Secret", metadata: { name: "x" }, type: "Opaque", data: { "tls.crt": hugeText, "tls.key": "" } }) : p.text!(hugeText));
      await mustFailTyped(fn, `${p.name} oversized`);
    } else {
      await mustFailTyped(() => p.bytes!(new Uint8Array(200_000)), `${p.name} oversized`);
    }
  }
  // A valid-looking DER header claiming an enormous length.
  await mustFailTyped(() => parseCertificate(new Uint8Array([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30])), "huge DER length");
  // A PEM document with more blocks than allowed.
  await mustFailTyped(() => decodePem(ctx.certPem.repeat(300)), "too many PEM blocks");
});

bad("non-string and non-buffer values are typed errors too", async (ctx) => {
  const values: [name: string, value: unknown][] = [
    ["undefined", undefined],
    ["null", null],
    ["42", 42],
    ["{}", {}],
    ["[]", []],
    ["a Date", new Date()],
  ];
  for (const [name, v] of values) {
    await mustFailTyped(() => parseCertificate(v as string), `certificate ${name}`);
    await mustFailTyped(() => parseCsr(v as string), `csr ${name}`);
    await mustFailTyped(() => TrustBundle.fromJwks(v, { trustDomain: "example.org" }), `jwks ${name}`);
    await mustFailTyped(() => parseSignedBundle(v), `signed ${name}`);
    await mustFailTyped(() => RootRotation.fromJSON(v), `state ${name}`);
    await mustFailTyped(() => RootCa.fromSecret(v), `secret ${name}`);
    await mustFailTyped(() => verifyPeer([v as string], ctx.bundle), `chain ${name}`);
  }
});

bad("seeded byte mutations of certificate and CSR DER: each parses or fails typed (500 + 300 cases)", async (ctx) => {
  const rnd = prng(0xfed6a7e);
  const tally = { ok: 0, typed: 0 };
  for (let i = 0; i < 500; i++) tally[await outcome(() => parseCertificate(mutateBytes(ctx.certDer, rnd)), `cert mutation ${i}`)]++;
  for (let i = 0; i < 300; i++) {
    const o = await outcome(() => parseCsr(mutateBytes(ctx.csrDer, rnd)), `csr mutation ${i}`);
    tally[o]++;
  }
  assert.ok(tally.typed > 100, `typed rejections: ${tally.typed}`);
  assert.ok(tally.ok > 0, `some mutations (e.g. in signatures or key bits) still parse: ${tally.ok}`);
});

bad("mutation test: 500 seeded character mutations of a JWKS bundle each yield a valid bundle or a BundleValidationError", async (ctx) => {
  const rnd = prng(20260101);
  const tally = { ok: 0, typed: 0 };
  for (let i = 0; i < 500; i++) {
    const text = mutateText(ctx.jwks, rnd);
    try {
      const b = TrustBundle.fromJwks(text, { trustDomain: "example.org" });
      // Whatever parsed must be a complete, valid bundle: it round-trips and still holds only real CAs.
      const again = TrustBundle.fromJwks(b.toJson(), { trustDomain: "example.org" });
      assert.is(again.fingerprint, b.fingerprint);
      assert.ok(b.certificates.length > 0 && b.certificates.every((c) => c.isCa));
      tally.ok++;
    } catch (err) {
      if (!(err instanceof BundleValidationError)) throw new Error(`mutation ${i}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}\n${text}`, { cause: err });
      assert.ok(err.problems.length > 0);
      tally.typed++;
    }
  }
  assert.ok(tally.typed > 200 && tally.ok > 0, JSON.stringify(tally));
});

bad("mutation test: 300 seeded mutations of a signed bundle record never install a changed root set", async (ctx) => {
  const rnd = prng(77);
  const installed = TrustBundle.create({ trustDomain: "example.org", certificates: [ctx.root.certificate], sequence: 3 });
  let accepted = 0;
  for (let i = 0; i < 300; i++) {
    const text = mutateText(ctx.signed, rnd);
    const o = await outcome(() => {
      const res = acceptSignedBundle(text, { current: installed });
      assert.is(res.bundle.fingerprint, ctx.bundle.fingerprint, "only the genuinely signed root set can be installed");
    }, `signed mutation ${i}`);
    if (o === "ok") accepted++;
  }
  assert.ok(accepted < 300, `accepted ${accepted}`);
});

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    return { unparsable: text, reason: String(err) };
  }
}

bad.run();
