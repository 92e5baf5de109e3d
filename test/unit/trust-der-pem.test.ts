import { X509Certificate as NodeX509 } from "node:crypto";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  DerReader,
  MalformedInputError,
  OID,
  RootCa,
  TAG,
  decodePem,
  encodePem,
  parseCertificate,
  parseCertificatesPem,
  parseChain,
  seq,
  time,
  tlv,
  x509,
  type IntermediateCa,
  type IssuedLeaf,
} from "../../trust/internal.ts";

const isMalformed = (kind?: string) => (err: unknown) => err instanceof MalformedInputError && err.code === "FEDGATE_TRUST_MALFORMED" && (kind === undefined || err.kind === kind);

// ---------------------------------------------------------------------------
const pem = suite("PEM codec");

pem("round-trips DER through PEM with 64-character lines", () => {
  const der = new Uint8Array(200).map((_, i) => i);
  const text = encodePem("CERTIFICATE", der);
  assert.ok(text.split("\n").slice(1, -2).every((line) => line.length <= 64));
  const [block] = decodePem(text);
  assert.is(block!.label, "CERTIFICATE");
  assert.equal([...block!.der], [...der]);
});

pem("reads several blocks and ignores explanatory text between them", () => {
  const a = encodePem("CERTIFICATE", new Uint8Array([1, 2, 3]));
  const b = encodePem("CERTIFICATE", new Uint8Array([4, 5, 6]));
  const blocks = decodePem(`subject=CN=x\n${a}\nissuer=CN=y\r\n${b.replace(/\n/g, "\r\n")}`);
  assert.equal(blocks.map((x) => [...x.der]), [[1, 2, 3], [4, 5, 6]]);
});

const badPem: { name: string; input: string; label?: string }[] = [
  { name: "empty text", input: "" },
  { name: "no block", input: "hello" },
  { name: "missing END line", input: "-----BEGIN CERTIFICATE-----\nAQID\n" },
  { name: "mismatched END label", input: "-----BEGIN CERTIFICATE-----\nAQID\n-----END PRIVATE KEY-----\n" },
  { name: "invalid base64 characters", input: "-----BEGIN CERTIFICATE-----\nAQ!D\n-----END CERTIFICATE-----\n" },
  { name: "base64 of wrong length", input: "-----BEGIN CERTIFICATE-----\nAQI\n-----END CERTIFICATE-----\n" },
  { name: "non-canonical base64 padding bits", input: "-----BEGIN CERTIFICATE-----\nAQJ=\n-----END CERTIFICATE-----\n" },
  { name: "empty body", input: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n" },
  { name: "encapsulated headers", input: "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\nAQID\n-----END CERTIFICATE-----\n" },
  { name: "wrong label for the caller", input: encodePem("PRIVATE KEY", new Uint8Array([1])), label: "CERTIFICATE" },
  { name: "oversized text", input: "x".repeat(1_048_577) },
  { name: "oversized object", input: encodePem("CERTIFICATE", new Uint8Array(70_000)) },
];
for (const c of badPem) {
  pem(`rejects ${c.name}`, () => {
    assert.throws(() => decodePem(c.input, c.label === undefined ? {} : { label: c.label }), isMalformed());
  });
}

// ---------------------------------------------------------------------------
const der = suite("DER reader");

const badDer: { name: string; bytes: number[] }[] = [
  { name: "truncated header", bytes: [0x30] },
  { name: "truncated value", bytes: [0x30, 0x05, 0x02, 0x01] },
  { name: "indefinite length", bytes: [0x30, 0x80, 0x00, 0x00] },
  { name: "non-minimal long length", bytes: [0x04, 0x81, 0x01, 0x00] },
  { name: "length with a leading zero octet", bytes: [0x04, 0x82, 0x00, 0x81, ...new Array<number>(0x81).fill(0)] },
  { name: "five-octet length", bytes: [0x04, 0x85, 1, 0, 0, 0, 0] },
  { name: "multi-byte tag", bytes: [0x1f, 0x81, 0x01, 0x00] },
];
for (const c of badDer) {
  der(`rejects ${c.name}`, () => {
    assert.throws(() => new DerReader("der").read(new Uint8Array(c.bytes)), isMalformed("der"));
  });
}

der("rejects non-minimal INTEGERs and non-DER BOOLEANs", () => {
  const r = new DerReader("der");
  assert.throws(() => r.integer(r.read(new Uint8Array([0x02, 0x02, 0x00, 0x01])), "n"), isMalformed());
  assert.throws(() => r.integer(r.read(new Uint8Array([0x02, 0x00])), "n"), isMalformed());
  assert.throws(() => r.boolean(r.read(new Uint8Array([0x01, 0x01, 0x01])), "b"), isMalformed());
  assert.is(r.smallInt(r.read(new Uint8Array([0x02, 0x02, 0x00, 0x80])), "n"), 128);
});

der("decodes OIDs and rejects truncated ones", () => {
  const r = new DerReader("der");
  assert.is(r.oid(r.read(new Uint8Array([0x06, 0x03, 0x55, 0x1d, 0x1e])), "oid"), OID.nameConstraints);
  assert.throws(() => r.oid(r.read(new Uint8Array([0x06, 0x02, 0x55, 0x9d])), "oid"), isMalformed());
});

der("encodes times as UTCTime before 2050 and GeneralizedTime from 2050, and reads both back", () => {
  const r = new DerReader("der");
  for (const iso of ["1999-12-31T23:59:59.000Z", "2049-12-31T23:59:59.000Z", "2050-01-01T00:00:00.000Z", "2126-02-03T04:05:06.000Z"]) {
    const d = new Date(iso);
    const enc = time(d);
    assert.is(enc[0], d.getUTCFullYear() < 2050 ? TAG.UTC_TIME : TAG.GENERALIZED_TIME, iso);
    assert.is(r.time(r.read(enc), "t").toISOString(), iso);
  }
  assert.throws(() => r.time(r.read(tlv(TAG.UTC_TIME, new TextEncoder().encode("991231235959+0100"))), "t"), isMalformed());
  assert.throws(() => r.time(r.read(tlv(TAG.UTC_TIME, new TextEncoder().encode("990231235959Z"))), "t"), isMalformed());
});

// ---------------------------------------------------------------------------
const cert = suite("certificate parser", {} as { root: RootCa; inter: IntermediateCa; leaf: IssuedLeaf });

cert.before(async (ctx) => {
  ctx.root = await RootCa.create({ trustDomain: "example.org" });
  ctx.inter = await ctx.root.issueIntermediate({ cluster: "a" });
  ctx.leaf = await ctx.inter.issueLeaf();
});

cert("agrees with Node's X509Certificate and @peculiar/x509 on every field it reads", (ctx) => {
  for (const c of [ctx.root.certificate, ctx.inter.certificate, ctx.leaf.certificate]) {
    const node = new NodeX509(c.der);
    const pec = new x509.X509Certificate(c.der);
    assert.is(c.fingerprint, node.fingerprint256.replace(/:/g, "").toLowerCase());
    assert.is(c.serialNumber, node.serialNumber.toLowerCase());
    assert.is(c.notBefore.getTime(), new Date(node.validFrom).getTime());
    assert.is(c.notAfter.getTime(), new Date(node.validTo).getTime());
    assert.is(c.isCa, node.ca);
    assert.is(c.notAfter.getTime(), pec.notAfter.getTime());
    assert.is(c.pem.trim(), node.toString().trim());
  }
  assert.is(new NodeX509(ctx.leaf.certificate.der).subjectAltName, "URI:spiffe://example.org/cluster/a/gateway");
});

cert("reads the extensions fedgate relies on", (ctx) => {
  const i = ctx.inter.certificate;
  assert.equal(i.basicConstraints, { ca: true, pathLen: 0 });
  assert.equal(i.nameConstraints, { critical: true, permittedUris: ["example.org"], excludedUris: [], otherTypes: false });
  assert.equal(i.subjectField(OID.organizationalUnitName), ["fedgate-cluster"]);
  assert.is(i.authorityKeyId, ctx.root.certificate.subjectKeyId);
  const l = ctx.leaf.certificate;
  assert.equal(l.basicConstraints, { ca: false });
  assert.equal(l.uris, ["spiffe://example.org/cluster/a/gateway"]);
  assert.ok(l.subjectAltNameCritical);
  assert.equal(l.extKeyUsage, [OID.serverAuth, OID.clientAuth]);
  assert.equal(l.subject, []);
  assert.is(l.authorityKeyId, i.subjectKeyId);
  assert.equal(l.unknownCriticalExtensions, []);
});

cert("parses chains given as PEM bundles, DER buffers or a mix", (ctx) => {
  const fromPem = parseCertificatesPem(ctx.leaf.chainPem);
  assert.equal(fromPem.map((c) => c.fingerprint), [ctx.leaf.certificate.fingerprint, ctx.inter.fingerprint]);
  const mixed = parseChain([ctx.leaf.certificate.der, ctx.inter.certPem + ctx.root.certPem]);
  assert.is(mixed.length, 3);
});

cert("copies its input, so later changes to the caller's buffer cannot alter a parsed certificate", (ctx) => {
  const buf = new Uint8Array(ctx.leaf.certificate.der);
  const parsed = parseCertificate(buf);
  buf.fill(0);
  assert.is(parseCertificate(parsed.der).fingerprint, ctx.leaf.certificate.fingerprint);
});

cert("rejects trailing bytes, a mismatched inner signature algorithm, and duplicate extensions", (ctx) => {
  const d = ctx.leaf.certificate.der;
  assert.throws(() => parseCertificate(new Uint8Array([...d, 0])), isMalformed("certificate"));
  const r = new DerReader("certificate");
  const [tbs, alg, sig] = r.children(r.read(d), "c");
  const tbsParts = r.children(tbs!, "tbs");
  const otherAlg = seq(tlv(TAG.OID, new Uint8Array([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03])));
  const swapped = seq(seq(...tbsParts.map((p, i) => (i === 2 ? otherAlg : p.raw))), alg!.raw, sig!.raw);
  assert.throws(() => parseCertificate(swapped), isMalformed("certificate"));
  const extWrapper = tbsParts[tbsParts.length - 1]!;
  const [extList] = r.children(extWrapper, "ext");
  const exts = r.children(extList!, "exts");
  const dup = seq(...tbsParts.slice(0, -1).map((p) => p.raw), tlv(0xa3, seq(...exts.map((e) => e.raw), exts[0]!.raw)));
  assert.throws(() => parseCertificate(seq(dup, alg!.raw, sig!.raw)), isMalformed("certificate"));
});

pem.run();
der.run();
cert.run();
