import { generateKeyPair as generateNodeKeyPair, generateKeyPairSync, webcrypto } from "node:crypto";
import { promisify } from "node:util";
import { DerReader, TAG, bitString, concatBytes, derNull, octets, oid, seq, smallInteger, tlv, unsignedInteger } from "./der.ts";
import { KeyMismatchError, MalformedInputError } from "./errors.ts";
import { OID } from "./oids.ts";
import { PEM_LABEL, decodeSinglePem, encodePem } from "./pem.ts";
import { parseSpki, type PublicKeyType, type SubjectPublicKeyInfo } from "./public-key.ts";
import type { Certificate } from "./certificate.ts";

/**
 * Key generation, PKCS#8 import/export and signing, all through Node's
 * WebCrypto (`crypto.subtle`), the same API @peculiar/x509 drives.
 */

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** Key algorithms a fedgate CA or leaf may be created with. */
export const KEY_ALGORITHMS = ["ecdsa-p256", "ecdsa-p384", "rsa-3072"] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];
export const DEFAULT_KEY_ALGORITHM: KeyAlgorithm = "ecdsa-p256";

const subtle = webcrypto.subtle;

const RSA_PUBLIC_EXPONENT = new Uint8Array([1, 0, 1]);

export function keyTypeOf(algorithm: KeyAlgorithm): PublicKeyType {
  return algorithm === "rsa-3072" ? "rsa" : algorithm;
}

function importParams(type: PublicKeyType): webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams {
  if (type === "rsa") return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  return { name: "ECDSA", namedCurve: type === "ecdsa-p256" ? "P-256" : "P-384" };
}

/** How a key of `type` signs certificates: WebCrypto parameters, X.509 AlgorithmIdentifier, and the signature's shape. */
export interface SigningProfile {
  readonly params: webcrypto.EcdsaParams | webcrypto.Algorithm;
  readonly oid: string;
  /** DER AlgorithmIdentifier, ready to embed. */
  readonly algorithmIdentifier: Uint8Array;
  /** Byte length of r and s in WebCrypto's raw ECDSA signature; 0 for RSA. */
  readonly ecCoordinateBytes: number;
}

const PROFILES: Readonly<Record<PublicKeyType, SigningProfile>> = {
  "ecdsa-p256": {
    params: { name: "ECDSA", hash: "SHA-256" },
    oid: OID.ecdsaWithSha256,
    algorithmIdentifier: seq(oid(OID.ecdsaWithSha256)),
    ecCoordinateBytes: 32,
  },
  "ecdsa-p384": {
    params: { name: "ECDSA", hash: "SHA-384" },
    oid: OID.ecdsaWithSha384,
    algorithmIdentifier: seq(oid(OID.ecdsaWithSha384)),
    ecCoordinateBytes: 48,
  },
  rsa: {
    params: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    oid: OID.sha256WithRsa,
    algorithmIdentifier: seq(oid(OID.sha256WithRsa), derNull()),
    ecCoordinateBytes: 0,
  },
};

export function signingProfile(type: PublicKeyType): SigningProfile {
  return PROFILES[type];
}

export async function generateKeyPair(algorithm: KeyAlgorithm): Promise<CryptoKeyPair> {
  if (algorithm === "rsa-3072") {
    return subtle.generateKey({ name: "RSASSA-PKCS1-v1_5", modulusLength: 3072, publicExponent: RSA_PUBLIC_EXPONENT, hash: "SHA-256" }, true, ["sign", "verify"]);
  }
  return subtle.generateKey({ name: "ECDSA", namedCurve: algorithm === "ecdsa-p256" ? "P-256" : "P-384" }, true, ["sign", "verify"]);
}

/** A key pair for a leaf, already serialized: what a workload receives. */
export interface LeafKey {
  readonly publicKeyInfo: SubjectPublicKeyInfo;
  readonly privateKeyPem: string;
}

const generateNodeKeyPairAsync = promisify(generateNodeKeyPair);

const EC_ALGORITHM_ID = {
  "P-256": seq(oid(OID.ecPublicKey), oid(OID.p256)),
  "P-384": seq(oid(OID.ecPublicKey), oid(OID.p384)),
} as const;

/**
 * Generates a leaf key with Node's native key generator and serializes it.
 * The CA never signs with this key, so it need not be a WebCrypto key; going
 * native saves three thread-pool round trips per issued leaf. EC keys are
 * generated synchronously (tens of microseconds) and encoded here from their
 * JWK form, because OpenSSL 3's DER encoders cost several times the key
 * generation itself. RSA keys, which take far longer, go to the thread pool.
 */
export async function generateLeafKey(algorithm: KeyAlgorithm): Promise<LeafKey> {
  if (algorithm === "rsa-3072") {
    const pair = await generateNodeKeyPairAsync("rsa", { modulusLength: 3072, publicExponent: 0x10001 });
    const spki = pair.publicKey.export({ type: "spki", format: "der" });
    const r: DerReader = new DerReader("der");
    return {
      publicKeyInfo: parseSpki(r, r.read(new Uint8Array(spki.buffer, spki.byteOffset, spki.byteLength))),
      privateKeyPem: pair.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    };
  }
  const crv = algorithm === "ecdsa-p256" ? "P-256" : "P-384";
  const pair = generateKeyPairSync("ec", { namedCurve: crv });
  const jwk = pair.privateKey.export({ format: "jwk" });
  if (typeof jwk.x !== "string" || typeof jwk.y !== "string" || typeof jwk.d !== "string") throw new MalformedInputError("private-key", "key generator returned an incomplete JWK");
  const point = concatBytes([new Uint8Array([4]), Buffer.from(jwk.x, "base64url"), Buffer.from(jwk.y, "base64url")]);
  const algId = EC_ALGORITHM_ID[crv];
  // RFC 5915 ECPrivateKey inside RFC 5208 PKCS#8, with the public key, as OpenSSL writes it.
  const ecPrivateKey = seq(smallInteger(1), octets(Buffer.from(jwk.d, "base64url")), tlv(0xa1, bitString(point)));
  const pkcs8 = seq(smallInteger(0), algId, octets(ecPrivateKey));
  return {
    publicKeyInfo: { type: algorithm, der: seq(algId, bitString(point)), jwk: { kty: "EC", crv, x: jwk.x, y: jwk.y } },
    privateKeyPem: encodePem(PEM_LABEL.privateKey, pkcs8),
  };
}

export async function exportSpki(publicKey: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await subtle.exportKey("spki", publicKey));
}

/** PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
export async function exportPrivateKeyPem(privateKey: CryptoKey): Promise<string> {
  return encodePem(PEM_LABEL.privateKey, new Uint8Array(await subtle.exportKey("pkcs8", privateKey)));
}

/** Imports a PKCS#8 PEM private key (EC P-256/P-384 or RSA); garbage becomes a MalformedInputError. */
export async function importPrivateKeyPem(pem: string): Promise<{ key: CryptoKey; type: PublicKeyType }> {
  const der = decodeSinglePem(pem, PEM_LABEL.privateKey, "private-key");
  const type = pkcs8KeyType(der);
  try {
    const key = await subtle.importKey("pkcs8", der, importParams(type), true, ["sign"]);
    return { key, type };
  } catch (err) {
    throw new MalformedInputError("private-key", "PKCS#8 key could not be imported", { cause: err });
  }
}

/** Reads the algorithm of a PKCS#8 PrivateKeyInfo without trusting anything else in it. */
function pkcs8KeyType(der: Uint8Array): PublicKeyType {
  const r: DerReader = new DerReader("private-key");
  const info = r.readExact(der, TAG.SEQUENCE, "PrivateKeyInfo");
  const [version, algId] = r.children(info, "PrivateKeyInfo", 4);
  if (!version || !algId) r.fail("PrivateKeyInfo: missing fields");
  r.smallInt(version, "PrivateKeyInfo.version");
  r.expectTag(algId, TAG.SEQUENCE, "privateKeyAlgorithm");
  const [algOid, params] = r.children(algId, "privateKeyAlgorithm", 2);
  if (!algOid) r.fail("privateKeyAlgorithm: missing OID");
  const alg = r.oid(algOid, "privateKeyAlgorithm");
  if (alg === OID.rsaEncryption) return "rsa";
  if (alg === OID.ecPublicKey && params) {
    const curve = r.oid(params, "EC curve");
    if (curve === OID.p256) return "ecdsa-p256";
    if (curve === OID.p384) return "ecdsa-p384";
  }
  return r.fail(`unsupported private key algorithm ${alg}`);
}

/**
 * Signs `data` with `privateKey` and returns the signature as X.509 wants it:
 * DER `ECDSA-Sig-Value` for EC keys (WebCrypto returns raw r||s), raw for RSA.
 */
export async function signForX509(privateKey: CryptoKey, profile: SigningProfile, data: Uint8Array): Promise<Uint8Array> {
  const raw = new Uint8Array(await subtle.sign(profile.params, privateKey, data));
  if (profile.ecCoordinateBytes === 0) return raw;
  const n = profile.ecCoordinateBytes;
  return seq(unsignedInteger(raw.subarray(0, n)), unsignedInteger(raw.subarray(n, 2 * n)));
}

/** Signs with the raw WebCrypto signature format (r||s for ECDSA), as JWS uses. */
export async function signRaw(privateKey: CryptoKey, profile: SigningProfile, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle.sign(profile.params, privateKey, data));
}

/** Fails with KeyMismatchError unless `privateKey` is the private half of `cert`'s public key. */
export async function assertKeyMatchesCertificate(privateKey: CryptoKey, cert: Certificate): Promise<void> {
  const priv = (await subtle.exportKey("jwk", privateKey)) as Record<string, unknown>;
  const pub = cert.publicKeyInfo.jwk as Record<string, string>;
  const members = pub.kty === "RSA" ? ["kty", "n", "e"] : ["kty", "crv", "x", "y"];
  for (const m of members) {
    if (priv[m] !== pub[m]) throw new KeyMismatchError(`private key does not match the certificate's public key (${m} differs)`);
  }
}
