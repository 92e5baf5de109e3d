import { verify as nodeVerify, type KeyObject } from "node:crypto";
import type { Certificate } from "./certificate.ts";
import { SIGNATURE_HASH } from "./oids.ts";

/**
 * Whether `cert` (a certificate, or any signed structure such as a CRL) was signed by the holder of `issuerKey`. Uses Node's native,
 * synchronous verifier, so it can run inside TLS callbacks such as
 * `checkServerIdentity`. Signature algorithms outside SIGNATURE_HASH (SHA-1,
 * MD5, ...) never verify.
 */
export function isSignedBy(cert: Pick<Certificate, "tbs" | "signatureAlgorithm" | "signature">, issuerKey: KeyObject): boolean {
  const hash = SIGNATURE_HASH[cert.signatureAlgorithm];
  if (!hash) return false;
  const keyIsRsa = issuerKey.asymmetricKeyType === "rsa";
  const sigIsRsa = cert.signatureAlgorithm.startsWith("1.2.840.113549.");
  if (keyIsRsa !== sigIsRsa) return false;
  return nodeVerify(hash, cert.tbs, issuerKey, cert.signature);
}
