import { createHash, webcrypto } from "node:crypto";
import { bitString, bool, concatBytes, ia5, octets, oid, seq, smallInteger, time, tlv, toHex, unsignedInteger } from "./der.ts";
import { Certificate } from "./certificate.ts";
import { signForX509, signingProfile, type CryptoKey, type SigningProfile } from "./keys.ts";
import { KEY_USAGE, OID } from "./oids.ts";
import type { PublicKeyType, SubjectPublicKeyInfo } from "./public-key.ts";

/**
 * Leaf (SVID) certificates: the identity a gateway or workload presents.
 *
 * Leaves are built here with fedgate's own DER writer rather than
 * @peculiar/x509's generator: leaves are issued by the thousand and the
 * generator's generic ASN.1 layer costs far more than the ECDSA signature
 * itself. Everything that does not vary per leaf (issuer name, authority key
 * id, fixed extensions) is encoded once per issuing CA.
 */

export const DEFAULT_LEAF_TTL_MS = 24 * 60 * 60 * 1000;
/** Leaves are short-lived by design; a longer TTL is refused. */
export const MAX_LEAF_TTL_MS = 30 * 24 * 60 * 60 * 1000;
/** notBefore is set this far in the past, so a peer whose clock lags a little still accepts a fresh leaf. */
export const LEAF_BACKDATE_MS = 60_000;

/** A certificate issued to a gateway or workload, with the chain it presents in TLS. */
export interface IssuedLeaf {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly cluster: string;
  readonly certificate: Certificate;
  /** `[leaf, intermediate]`: what a TLS endpoint sends (the root stays in the peer's bundle). */
  readonly chain: readonly Certificate[];
  readonly certPem: string;
  /** Leaf then intermediate, PEM: the `cert` option of Node's tls. */
  readonly chainPem: string;
  /** PKCS#8 PEM; present when the CA generated the key, absent for leaves issued from a CSR. */
  readonly privateKeyPem?: string;
}

const VERSION_3 = tlv(0xa0, smallInteger(2));
const EMPTY_SUBJECT = seq();

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

// keyUsage as a DER BIT STRING: digitalSignature is bit 0 (0x80, 7 unused bits);
// with keyEncipherment (bit 2) it is 0xa0 with 5 unused bits.
const KU_SIGN = extension(OID.keyUsage, true, bitString(new Uint8Array([0x80]), 7));
const KU_SIGN_ENCIPHER = extension(OID.keyUsage, true, bitString(new Uint8Array([0xa0]), 5));
const BC_NOT_CA = extension(OID.basicConstraints, true, seq());
const EKU_SERVER_CLIENT = extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth)));

/** Everything about one issuing CA that leaf encoding needs, precomputed. */
export class LeafEncoder {
  private readonly issuerName: Uint8Array;
  private readonly profile: SigningProfile;
  private readonly signingKey: CryptoKey;
  private readonly fixedExtensions: Uint8Array;
  readonly issuer: Certificate;

  constructor(options: { issuer: Certificate; signingKey: CryptoKey; keyType: PublicKeyType }) {
    this.issuer = options.issuer;
    this.issuerName = options.issuer.subjectDer;
    this.profile = signingProfile(options.keyType);
    this.signingKey = options.signingKey;
    const aki = options.issuer.subjectKeyId;
    this.fixedExtensions = concatBytes([
      BC_NOT_CA,
      EKU_SERVER_CLIENT,
      ...(aki ? [extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, Buffer.from(aki, "hex"))))] : []),
    ]);
  }

  /**
   * Encodes and signs one leaf. The caller has already checked the SPIFFE ID,
   * key and validity window. The returned Certificate is assembled from the
   * fields just encoded instead of re-parsing the DER (a unit test checks the
   * two agree field for field).
   */
  async encode(fields: { publicKeyInfo: SubjectPublicKeyInfo; spiffeId: string; notBefore: Date; notAfter: Date }): Promise<Certificate> {
    const serial = webcrypto.getRandomValues(new Uint8Array(16));
    // Positive, 16 octets, never a leading zero: unique enough and DER-minimal.
    serial[0] = (serial[0]! & 0x7f) | 0x40;
    const notBefore = wholeSeconds(fields.notBefore);
    const notAfter = wholeSeconds(fields.notAfter);
    const rsa = fields.publicKeyInfo.type === "rsa";
    const extensions = tlv(
      0xa3,
      seq(
        rsa ? KU_SIGN_ENCIPHER : KU_SIGN,
        // The subject is empty, so the SAN must be critical (RFC 5280 §4.2.1.6).
        extension(OID.subjectAltName, true, seq(ia5(fields.spiffeId, 0x86))),
        this.fixedExtensions,
      ),
    );
    const tbs = seq(
      VERSION_3,
      unsignedInteger(serial),
      this.profile.algorithmIdentifier,
      this.issuerName,
      seq(time(notBefore), time(notAfter)),
      EMPTY_SUBJECT,
      fields.publicKeyInfo.der,
      extensions,
    );
    const signature = await signForX509(this.signingKey, this.profile, tbs);
    const der = seq(tbs, this.profile.algorithmIdentifier, bitString(signature));
    return Certificate.fromFields({
      der,
      fingerprint: createHash("sha256").update(der).digest("hex"),
      tbs,
      signatureAlgorithm: this.profile.oid,
      signature,
      serialNumber: toHex(serial),
      issuerDer: this.issuerName,
      subjectDer: EMPTY_SUBJECT,
      issuer: this.issuer.subject,
      subject: [],
      notBefore,
      notAfter,
      publicKeyInfo: fields.publicKeyInfo,
      basicConstraints: { ca: false },
      keyUsage: rsa ? (1 << KEY_USAGE.digitalSignature) | (1 << KEY_USAGE.keyEncipherment) : 1 << KEY_USAGE.digitalSignature,
      extKeyUsage: [OID.serverAuth, OID.clientAuth],
      uris: [fields.spiffeId],
      dnsNames: [],
      otherSanCount: 0,
      subjectAltNameCritical: true,
      nameConstraints: undefined,
      subjectKeyId: undefined,
      authorityKeyId: this.issuer.subjectKeyId,
      unknownCriticalExtensions: [],
    });
  }
}

function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
