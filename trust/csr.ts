import { verify as nodeVerify, webcrypto } from "node:crypto";
import { DerReader, TAG } from "./der.ts";
import { InvalidCsrError } from "./errors.ts";
import { algorithmOid, parseExtensionList, parseName } from "./certificate.ts";
import { DEFAULT_KEY_ALGORITHM, exportPrivateKeyPem, generateKeyPair, keyTypeOf, signingProfile, type CryptoKey, type KeyAlgorithm } from "./keys.ts";
import { OID, SIGNATURE_HASH } from "./oids.ts";
import { PEM_LABEL, derFromInput } from "./pem.ts";
import { parseSpki, publicKeyObject, type SubjectPublicKeyInfo } from "./public-key.ts";
import { parseSpiffeId } from "./spiffe-id.ts";
import { x509 } from "./x509.ts";

/** A PKCS#10 certificate request whose self-signature has been checked. */
export interface CertificateRequest {
  readonly der: Uint8Array;
  readonly publicKeyInfo: SubjectPublicKeyInfo;
  /** URI SANs the requester asked for (from the extensionRequest attribute). */
  readonly requestedUris: readonly string[];
}

/**
 * Parses a CSR (PEM or DER) and verifies its self-signature. Garbage is a
 * MalformedInputError; a well-formed request with a bad signature or an
 * unsupported algorithm is an InvalidCsrError.
 */
export function parseCsr(input: string | Uint8Array): CertificateRequest {
  const der = new Uint8Array(derFromInput(input, PEM_LABEL.csr, "csr"));
  const r: DerReader = new DerReader("csr");
  const req = r.readExact(der, TAG.SEQUENCE, "CertificationRequest");
  const [info, sigAlg, sig, ...extra] = r.children(req, "CertificationRequest", 4);
  if (!info || !sigAlg || !sig || extra.length) r.fail("CertificationRequest must have info, signatureAlgorithm, signature");
  r.expectTag(info, TAG.SEQUENCE, "certificationRequestInfo");
  const [version, subject, spkiNode, attrs, ...more] = r.children(info, "certificationRequestInfo", 5);
  if (!version || !subject || !spkiNode || more.length) r.fail("certificationRequestInfo: missing fields");
  if (r.smallInt(version, "version") !== 0) r.fail("unsupported CSR version");
  parseName(r, subject, "subject");
  const publicKeyInfo = parseSpki(r, spkiNode);
  const requestedUris: string[] = [];
  if (attrs) {
    if (attrs.tag !== 0xa0) r.fail("attributes: expected [0]");
    for (const attr of r.children(attrs, "attributes", 32)) {
      r.expectTag(attr, TAG.SEQUENCE, "attribute");
      const [type, values, ...x] = r.children(attr, "attribute", 3);
      if (!type || !values || x.length) r.fail("attribute: malformed");
      r.expectTag(values, TAG.SET, "attribute values");
      if (r.oid(type, "attribute type") !== OID.extensionRequest) continue;
      const [exts, ...moreExts] = r.children(values, "extensionRequest", 2);
      if (!exts || moreExts.length) r.fail("extensionRequest: expected one value");
      requestedUris.push(...parseExtensionList(r, exts).uris);
    }
  }
  const algOid = algorithmOid(r, sigAlg, "signatureAlgorithm");
  const signature = r.bitString(sig, "signature").bytes;
  const hash = SIGNATURE_HASH[algOid];
  if (!hash) throw new InvalidCsrError(`CSR signature algorithm ${algOid} is not accepted`);
  const key = publicKeyObject(publicKeyInfo, "csr");
  let ok: boolean;
  try {
    ok = nodeVerify(hash, info.raw, key, signature);
  } catch (err) {
    throw new InvalidCsrError("CSR signature could not be checked", { cause: err });
  }
  if (!ok) throw new InvalidCsrError("CSR signature does not verify with the key it carries");
  return { der, publicKeyInfo, requestedUris };
}

/** What a workload keeps after creating a CSR: the request to send and the key that stays. */
export interface GeneratedCsr {
  readonly csrPem: string;
  readonly privateKey: CryptoKey;
  readonly privateKeyPem: string;
}

/**
 * Creates a key pair and a CSR asking for `spiffeId` (built with
 * @peculiar/x509). This is the workload side; a CA never needs it.
 */
export async function createCsr(options: { spiffeId: string; algorithm?: KeyAlgorithm }): Promise<GeneratedCsr> {
  const spiffe = parseSpiffeId(options.spiffeId);
  const algorithm = options.algorithm ?? DEFAULT_KEY_ALGORITHM;
  const keys = await generateKeyPair(algorithm);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      keys,
      signingAlgorithm: signingProfile(keyTypeOf(algorithm)).params,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: spiffe.uri }], true)],
    },
    webcrypto,
  );
  return { csrPem: csr.toString("pem"), privateKey: keys.privateKey, privateKeyPem: await exportPrivateKeyPem(keys.privateKey) };
}
