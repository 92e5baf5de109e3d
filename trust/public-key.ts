import { createPublicKey, type KeyObject } from "node:crypto";
import { TAG, type DerNode, type DerReader } from "./der.ts";
import { MalformedInputError, type InputKind } from "./errors.ts";
import { OID } from "./oids.ts";

/** Public key types fedgate accepts in certificates and CSRs. */
export type PublicKeyType = "ecdsa-p256" | "ecdsa-p384" | "rsa";

/** RSA moduli below this are refused. */
export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

/** The public members of a key as a JWK (RFC 7518): `kty`, `crv`, `x`, `y` or `kty`, `n`, `e`. */
export type PublicJwk = { kty: "EC"; crv: "P-256" | "P-384"; x: string; y: string } | { kty: "RSA"; n: string; e: string };

export interface SubjectPublicKeyInfo {
  readonly type: PublicKeyType;
  /** Modulus size, for RSA keys. */
  readonly rsaBits?: number;
  /** The whole DER SubjectPublicKeyInfo. */
  readonly der: Uint8Array;
  readonly jwk: PublicJwk;
}

const b64url = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");

/** Reads a SubjectPublicKeyInfo and checks its algorithm is one fedgate supports. */
export function parseSpki(reader: DerReader, node: DerNode): SubjectPublicKeyInfo {
  reader.expectTag(node, TAG.SEQUENCE, "subjectPublicKeyInfo");
  const [algId, keyBits, ...extra] = reader.children(node, "subjectPublicKeyInfo", 3);
  if (!algId || !keyBits || extra.length) reader.fail("subjectPublicKeyInfo: expected algorithm and key");
  reader.expectTag(algId, TAG.SEQUENCE, "subjectPublicKeyInfo.algorithm");
  const [algOid, params] = reader.children(algId, "subjectPublicKeyInfo.algorithm", 2);
  if (!algOid) reader.fail("subjectPublicKeyInfo.algorithm: missing OID");
  const alg = reader.oid(algOid, "subjectPublicKeyInfo.algorithm");
  const bits = reader.bitString(keyBits, "subjectPublicKey").bytes;
  if (alg === OID.ecPublicKey) {
    if (!params) reader.fail("EC key without a named curve");
    const curve = reader.oid(params, "EC curve");
    if (curve === OID.p256) {
      if (bits.length !== 65 || bits[0] !== 4) reader.fail("P-256 key must be an uncompressed point");
      return { type: "ecdsa-p256", der: node.raw, jwk: { kty: "EC", crv: "P-256", x: b64url(bits.subarray(1, 33)), y: b64url(bits.subarray(33)) } };
    }
    if (curve === OID.p384) {
      if (bits.length !== 97 || bits[0] !== 4) reader.fail("P-384 key must be an uncompressed point");
      return { type: "ecdsa-p384", der: node.raw, jwk: { kty: "EC", crv: "P-384", x: b64url(bits.subarray(1, 49)), y: b64url(bits.subarray(49)) } };
    }
    return reader.fail(`unsupported EC curve ${curve}`);
  }
  if (alg === OID.rsaEncryption) {
    const rsaKey = reader.readExact(bits, TAG.SEQUENCE, "RSAPublicKey");
    const [n, e, ...more] = reader.children(rsaKey, "RSAPublicKey", 3);
    if (!n || !e || more.length) reader.fail("RSAPublicKey: expected modulus and exponent");
    const modulus = reader.integer(n, "RSA modulus");
    const exponent = reader.integer(e, "RSA exponent");
    if (modulus[0]! & 0x80 || exponent[0]! & 0x80) reader.fail("negative RSA modulus or exponent");
    const lead = modulus[0] === 0 ? modulus.subarray(1) : modulus;
    const rsaBits = lead.length * 8 - Math.clz32(lead[0] ?? 0) + 24;
    if (rsaBits < MIN_RSA_BITS || rsaBits > MAX_RSA_BITS) reader.fail(`RSA modulus of ${rsaBits} bits is outside ${MIN_RSA_BITS}..${MAX_RSA_BITS}`);
    const exp = exponent[0] === 0 ? exponent.subarray(1) : exponent;
    return { type: "rsa", rsaBits, der: node.raw, jwk: { kty: "RSA", n: b64url(lead), e: b64url(exp) } };
  }
  return reader.fail(`unsupported public key algorithm ${alg}`);
}

/**
 * A Node KeyObject for a parsed public key; a point off the curve or an
 * unusable modulus becomes a MalformedInputError. Built from the JWK form,
 * which Node imports markedly faster than DER SPKI (and validates the same way).
 */
export function publicKeyObject(info: SubjectPublicKeyInfo, kind: InputKind): KeyObject {
  try {
    return createPublicKey({ key: info.jwk, format: "jwk" });
  } catch (err) {
    throw new MalformedInputError(kind, "public key is not usable", { cause: err });
  }
}
