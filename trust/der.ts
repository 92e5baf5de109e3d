import { MalformedInputError, type InputKind } from "./errors.ts";

/**
 * A small, strict DER codec: enough of X.690 for certificates, CSRs and PKCS#8.
 *
 * Why not @peculiar/asn1-schema on the hot path: its generic schema machinery
 * issues and parses certificates at well under a tenth of the raw ECDSA sign
 * rate. Certificates fedgate issues by the thousand (leaves) and verifies on
 * every handshake go through this codec instead; roots and intermediates,
 * issued rarely, are built with @peculiar/x509.
 *
 * The reader accepts only DER: definite, minimal lengths; single-byte tags; no
 * trailing bytes where a caller asks for an exact fit. Every failure is a
 * `MalformedInputError`.
 */

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  TELETEX_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** One TLV: `tag` is the whole identifier byte; `value` the contents; `raw` the whole encoding. */
export interface DerNode {
  readonly tag: number;
  readonly raw: Uint8Array;
  readonly value: Uint8Array;
}

export class DerReader {
  private readonly kind: InputKind;

  constructor(kind: InputKind) {
    this.kind = kind;
  }

  fail(message: string): never {
    throw new MalformedInputError(this.kind, message);
  }

  /** Reads the TLV at `offset` of `buf`. */
  read(buf: Uint8Array, offset = 0): DerNode {
    if (offset + 2 > buf.length) this.fail("truncated TLV header");
    const tag = buf[offset]!;
    if ((tag & 0x1f) === 0x1f) this.fail("multi-byte tags are not used here");
    let len = buf[offset + 1]!;
    let pos = offset + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0) this.fail("indefinite length is not DER");
      if (n > 4) this.fail("length too large");
      if (pos + n > buf.length) this.fail("truncated length");
      if (buf[pos] === 0) this.fail("non-minimal length");
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i]!;
      if (len < 0x80) this.fail("non-minimal length");
      pos += n;
    }
    if (pos + len > buf.length) this.fail(`truncated value (need ${len} bytes, have ${buf.length - pos})`);
    return { tag, raw: buf.subarray(offset, pos + len), value: buf.subarray(pos, pos + len) };
  }

  /** Reads a TLV that must fill `buf` exactly, with the expected tag. */
  readExact(buf: Uint8Array, tag: number, what: string): DerNode {
    const node = this.read(buf, 0);
    if (node.raw.length !== buf.length) this.fail(`${what}: trailing bytes`);
    this.expectTag(node, tag, what);
    return node;
  }

  expectTag(node: DerNode, tag: number, what: string): void {
    if (node.tag !== tag) this.fail(`${what}: expected tag 0x${tag.toString(16)}, got 0x${node.tag.toString(16)}`);
  }

  /** The children of a constructed node. */
  children(node: DerNode, what: string, max = 4096): DerNode[] {
    if (!(node.tag & 0x20)) this.fail(`${what}: not a constructed value`);
    const out: DerNode[] = [];
    let pos = 0;
    while (pos < node.value.length) {
      if (out.length >= max) this.fail(`${what}: more than ${max} elements`);
      const child = this.read(node.value, pos);
      out.push(child);
      pos += child.raw.length;
    }
    return out;
  }

  oid(node: DerNode, what: string): string {
    this.expectTag(node, TAG.OID, what);
    return decodeOid(node.value, this);
  }

  integer(node: DerNode, what: string): Uint8Array {
    this.expectTag(node, TAG.INTEGER, what);
    const v = node.value;
    if (v.length === 0) this.fail(`${what}: empty INTEGER`);
    if (v.length > 1 && ((v[0] === 0 && !(v[1]! & 0x80)) || (v[0] === 0xff && v[1]! & 0x80))) this.fail(`${what}: non-minimal INTEGER`);
    return v;
  }

  smallInt(node: DerNode, what: string): number {
    const v = this.integer(node, what);
    if (v.length > 4 || v[0]! & 0x80) this.fail(`${what}: INTEGER out of range`);
    let n = 0;
    for (const b of v) n = n * 256 + b;
    return n;
  }

  boolean(node: DerNode, what: string): boolean {
    this.expectTag(node, TAG.BOOLEAN, what);
    if (node.value.length !== 1) this.fail(`${what}: bad BOOLEAN length`);
    const b = node.value[0]!;
    if (b !== 0 && b !== 0xff) this.fail(`${what}: BOOLEAN is not DER`);
    return b === 0xff;
  }

  /** A BIT STRING's bytes; `unusedBits` must be 0 unless `allowUnused`. */
  bitString(node: DerNode, what: string, allowUnused = false): { bytes: Uint8Array; unusedBits: number } {
    this.expectTag(node, TAG.BIT_STRING, what);
    if (node.value.length === 0) this.fail(`${what}: empty BIT STRING`);
    const unusedBits = node.value[0]!;
    if (unusedBits > 7 || (unusedBits > 0 && (!allowUnused || node.value.length === 1))) this.fail(`${what}: bad unused-bits count`);
    return { bytes: node.value.subarray(1), unusedBits };
  }

  /** A string of one of the directory string types, decoded to text. */
  string(node: DerNode, what: string): string {
    switch (node.tag) {
      case TAG.UTF8_STRING:
        return decodeUtf8(node.value, this, what);
      case TAG.PRINTABLE_STRING:
      case TAG.IA5_STRING:
      case TAG.TELETEX_STRING:
        for (const b of node.value) if (b > 0x7e || b < 0x20) this.fail(`${what}: non-printable byte in string`);
        return latin1(node.value);
      case TAG.BMP_STRING: {
        if (node.value.length % 2) this.fail(`${what}: odd BMPString length`);
        let s = "";
        for (let i = 0; i < node.value.length; i += 2) s += String.fromCharCode((node.value[i]! << 8) | node.value[i + 1]!);
        return s;
      }
      default:
        return this.fail(`${what}: unsupported string tag 0x${node.tag.toString(16)}`);
    }
  }

  ia5(node: DerNode, what: string, tag: number = TAG.IA5_STRING): string {
    this.expectTag(node, tag, what);
    for (const b of node.value) if (b > 0x7e || b < 0x20) this.fail(`${what}: non-printable byte in IA5String`);
    return latin1(node.value);
  }

  time(node: DerNode, what: string): Date {
    if (node.value.length > 32) this.fail(`${what}: time too long`);
    const s = latin1(node.value);
    let m: RegExpExecArray | null;
    let year: number;
    if (node.tag === TAG.UTC_TIME) {
      m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
      if (!m) this.fail(`${what}: bad UTCTime`);
      const yy = Number(m[1]);
      year = yy >= 50 ? 1900 + yy : 2000 + yy;
    } else if (node.tag === TAG.GENERALIZED_TIME) {
      m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
      if (!m) this.fail(`${what}: bad GeneralizedTime`);
      year = Number(m[1]);
    } else {
      return this.fail(`${what}: expected a time`);
    }
    const [mo, d, h, mi, se] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
    const t = Date.UTC(year, mo - 1, d, h, mi, se);
    const date = new Date(t);
    if (Number.isNaN(t) || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || h > 23 || mi > 59 || se > 59) this.fail(`${what}: invalid date`);
    return date;
  }
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

function decodeUtf8(bytes: Uint8Array, reader: DerReader, what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    return reader.fail(`${what}: invalid UTF-8 (${err instanceof Error ? err.name : "error"})`);
  }
}

export function decodeOid(v: Uint8Array, reader: DerReader): string {
  if (v.length === 0 || v.length > 64) reader.fail("bad OID length");
  const parts: number[] = [];
  let acc = 0;
  let started = false;
  for (let i = 0; i < v.length; i++) {
    const b = v[i]!;
    if (!started && b === 0x80) reader.fail("non-minimal OID arc");
    started = true;
    acc = acc * 128 + (b & 0x7f);
    if (acc > Number.MAX_SAFE_INTEGER / 128) reader.fail("OID arc too large");
    if (!(b & 0x80)) {
      parts.push(acc);
      acc = 0;
      started = false;
    } else if (i === v.length - 1) {
      reader.fail("truncated OID");
    }
  }
  const first = parts[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...parts.slice(1)].join(".");
}

// ---------------------------------------------------------------------------
// Writer.
// ---------------------------------------------------------------------------

function lengthBytes(len: number): number[] {
  if (len < 0x80) return [len];
  const out: number[] = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) out.unshift(n & 0xff);
  return [0x80 | out.length, ...out];
}

/** Encodes one TLV. */
export function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const c of contents) len += c.length;
  const head = lengthBytes(len);
  const out = new Uint8Array(1 + head.length + len);
  out[0] = tag;
  out.set(head, 1);
  let pos = 1 + head.length;
  for (const c of contents) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

export const seq = (...items: Uint8Array[]): Uint8Array => tlv(TAG.SEQUENCE, ...items);
export const set = (...items: Uint8Array[]): Uint8Array => tlv(TAG.SET, ...items);
export const octets = (bytes: Uint8Array): Uint8Array => tlv(TAG.OCTET_STRING, bytes);
export const bool = (b: boolean): Uint8Array => tlv(TAG.BOOLEAN, new Uint8Array([b ? 0xff : 0]));
export const derNull = (): Uint8Array => new Uint8Array([TAG.NULL, 0]);
export const bitString = (bytes: Uint8Array, unusedBits = 0): Uint8Array => tlv(TAG.BIT_STRING, new Uint8Array([unusedBits]), bytes);
export const utf8 = (s: string): Uint8Array => tlv(TAG.UTF8_STRING, new TextEncoder().encode(s));
export const ia5 = (s: string, tag: number = TAG.IA5_STRING): Uint8Array => tlv(tag, asciiBytes(s));

function asciiBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0x7f;
  return out;
}

/** An unsigned big-endian magnitude as a minimal DER INTEGER. */
export function unsignedInteger(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const body = bytes.subarray(i);
  return body[0]! & 0x80 ? tlv(TAG.INTEGER, new Uint8Array([0]), body) : tlv(TAG.INTEGER, body);
}

export function smallInteger(n: number): Uint8Array {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return unsignedInteger(new Uint8Array(bytes.length ? bytes : [0]));
}

export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map(Number);
  const body: number[] = [];
  const push = (n: number) => {
    const chunk: number[] = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    body.push(...chunk);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(TAG.OID, new Uint8Array(body));
}

/** UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5); whole seconds. */
export function time(date: Date): Uint8Array {
  const y = date.getUTCFullYear();
  const p = (n: number) => String(n).padStart(2, "0");
  const rest = `${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.UTC_TIME, asciiBytes(`${p(y % 100)}${rest}`));
  return tlv(TAG.GENERALIZED_TIME, asciiBytes(`${String(y).padStart(4, "0")}${rest}`));
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}
