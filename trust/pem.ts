import { MalformedInputError, type InputKind } from "./errors.ts";

/** PEM text larger than this is refused before it is scanned (a bundle of 64 roots fits in well under it). */
export const MAX_PEM_CHARS = 1_048_576;
/** One DER object larger than this is refused; real certificates, CSRs and keys are a few KiB. */
export const MAX_DER_BYTES = 65_536;
/** More PEM blocks than this in one document is refused. */
export const MAX_PEM_BLOCKS = 256;

export const PEM_LABEL = {
  certificate: "CERTIFICATE",
  csr: "CERTIFICATE REQUEST",
  privateKey: "PRIVATE KEY",
  crl: "X509 CRL",
} as const;

export interface PemBlock {
  readonly label: string;
  readonly der: Uint8Array;
}

const BEGIN_LINE = "-----BEGIN ([A-Z0-9 ]{1,64})-----";
const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes every PEM block of `text` (RFC 7468, strict base64). Text between
 * blocks is allowed, as the RFC permits; encapsulated headers, label
 * mismatches, bad base64 and oversized input are `MalformedInputError`s.
 */
export function decodePem(text: string, options: { label?: string; kind?: InputKind; maxBlocks?: number } = {}): PemBlock[] {
  const kind = options.kind ?? "pem";
  const maxBlocks = options.maxBlocks ?? MAX_PEM_BLOCKS;
  if (typeof text !== "string") throw new MalformedInputError(kind, "PEM input is not a string");
  if (text.length > MAX_PEM_CHARS) throw new MalformedInputError(kind, `PEM input exceeds ${MAX_PEM_CHARS} characters`);
  const blocks: PemBlock[] = [];
  const beginRe = new RegExp(BEGIN_LINE, "g");
  let pos = 0;
  for (;;) {
    beginRe.lastIndex = pos;
    const begin = beginRe.exec(text);
    if (!begin) break;
    const label = begin[1]!;
    const endMarker = `-----END ${label}-----`;
    const bodyStart = begin.index + begin[0].length;
    const end = text.indexOf(endMarker, bodyStart);
    if (end < 0) throw new MalformedInputError(kind, `PEM block ${label} has no END line`);
    const body = text.slice(bodyStart, end);
    if (body.includes("-----")) throw new MalformedInputError(kind, `PEM block ${label} is not terminated before the next block`);
    if (body.includes(":")) throw new MalformedInputError(kind, `PEM block ${label} has encapsulated headers`);
    if (options.label !== undefined && label !== options.label) throw new MalformedInputError(kind, `expected a PEM ${options.label} block, got ${label}`);
    if (blocks.length >= maxBlocks) throw new MalformedInputError(kind, `more than ${maxBlocks} PEM blocks`);
    blocks.push({ label, der: decodeBase64Strict(body.replace(/[\r\n\t ]/g, ""), kind) });
    pos = end + endMarker.length;
  }
  if (blocks.length === 0) throw new MalformedInputError(kind, "no PEM block found");
  return blocks;
}

/** Decodes exactly one PEM block with `label`. */
export function decodeSinglePem(text: string, label: string, kind: InputKind): Uint8Array {
  const blocks = decodePem(text, { label, kind, maxBlocks: 1 });
  return blocks[0]!.der;
}

/** Standard base64 (not base64url), with padding, canonical; bounded by MAX_DER_BYTES. */
export function decodeBase64Strict(b64: string, kind: InputKind): Uint8Array {
  if (b64.length === 0) throw new MalformedInputError(kind, "empty base64 body");
  if (b64.length % 4 !== 0 || !BASE64_BODY.test(b64)) throw new MalformedInputError(kind, "invalid base64");
  if ((b64.length / 4) * 3 > MAX_DER_BYTES + 2) throw new MalformedInputError(kind, `object exceeds ${MAX_DER_BYTES} bytes`);
  const buf = Buffer.from(b64, "base64");
  if (buf.toString("base64") !== b64) throw new MalformedInputError(kind, "non-canonical base64");
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  let out = `-----BEGIN ${label}-----\n`;
  for (let i = 0; i < b64.length; i += 64) out += b64.slice(i, i + 64) + "\n";
  return out + `-----END ${label}-----\n`;
}

/** Accepts DER bytes or PEM text with exactly one block of `label`; checks the size bound either way. */
export function derFromInput(input: string | Uint8Array, label: string, kind: InputKind): Uint8Array {
  if (typeof input === "string") return decodeSinglePem(input, label, kind);
  if (!(input instanceof Uint8Array)) throw new MalformedInputError(kind, "input is neither PEM text nor DER bytes");
  if (input.length > MAX_DER_BYTES) throw new MalformedInputError(kind, `object exceeds ${MAX_DER_BYTES} bytes`);
  return input;
}
