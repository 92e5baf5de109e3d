import { createHash, type KeyObject } from "node:crypto";
import { DerReader, TAG, bytesEqual, toHex, type DerNode } from "./der.ts";
import { OID } from "./oids.ts";
import { PEM_LABEL, decodePem, derFromInput, encodePem, MAX_DER_BYTES } from "./pem.ts";
import { parseSpki, publicKeyObject, type SubjectPublicKeyInfo } from "./public-key.ts";

/** One attribute of a distinguished name, e.g. `{ oid: "2.5.4.3", value: "gateway" }`. */
export interface NameAttribute {
  readonly oid: string;
  readonly value: string;
}

export interface BasicConstraints {
  readonly ca: boolean;
  readonly pathLen?: number;
}

/** URI name constraints (RFC 5280 §4.2.1.10); other name types are only flagged. */
export interface NameConstraints {
  readonly critical: boolean;
  /** Permitted URI subtrees: hosts (`example.org`) or domains (`.example.org`). */
  readonly permittedUris: readonly string[];
  readonly excludedUris: readonly string[];
  /** True when the extension constrains name types fedgate does not evaluate (DNS, IP, DN, ...). */
  readonly otherTypes: boolean;
}

type CertificateFields = Omit<Certificate, "pem" | "publicKey" | "isCa" | "isSelfIssued" | "subjectField" | "hasKeyUsage">;

/**
 * An X.509 certificate, parsed once, strictly, by fedgate's own DER reader.
 * Immutable; `parseCertificate` either returns a complete value or throws a
 * `MalformedInputError`.
 */
export class Certificate {
  readonly der: Uint8Array;
  /** SHA-256 of the DER, lowercase hex. */
  readonly fingerprint: string;
  readonly tbs: Uint8Array;
  readonly signatureAlgorithm: string;
  readonly signature: Uint8Array;
  readonly serialNumber: string;
  readonly issuerDer: Uint8Array;
  readonly subjectDer: Uint8Array;
  readonly issuer: readonly NameAttribute[];
  readonly subject: readonly NameAttribute[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKeyInfo: SubjectPublicKeyInfo;
  readonly basicConstraints: BasicConstraints | undefined;
  /** keyUsage bits as a mask of `1 << bit` (RFC 5280 bit numbers); undefined without the extension. */
  readonly keyUsage: number | undefined;
  readonly extKeyUsage: readonly string[] | undefined;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  /** Count of SAN entries other than URI and DNS. */
  readonly otherSanCount: number;
  readonly subjectAltNameCritical: boolean;
  readonly nameConstraints: NameConstraints | undefined;
  readonly subjectKeyId: string | undefined;
  readonly authorityKeyId: string | undefined;
  /** Critical extensions fedgate does not understand; a verifier must reject a chain containing any. */
  readonly unknownCriticalExtensions: readonly string[];
  #pem: string | undefined;
  #publicKey: KeyObject | undefined;

  private constructor(fields: CertificateFields) {
    this.der = fields.der;
    this.fingerprint = fields.fingerprint;
    this.tbs = fields.tbs;
    this.signatureAlgorithm = fields.signatureAlgorithm;
    this.signature = fields.signature;
    this.serialNumber = fields.serialNumber;
    this.issuerDer = fields.issuerDer;
    this.subjectDer = fields.subjectDer;
    this.issuer = fields.issuer;
    this.subject = fields.subject;
    this.notBefore = fields.notBefore;
    this.notAfter = fields.notAfter;
    this.publicKeyInfo = fields.publicKeyInfo;
    this.basicConstraints = fields.basicConstraints;
    this.keyUsage = fields.keyUsage;
    this.extKeyUsage = fields.extKeyUsage;
    this.uris = fields.uris;
    this.dnsNames = fields.dnsNames;
    this.otherSanCount = fields.otherSanCount;
    this.subjectAltNameCritical = fields.subjectAltNameCritical;
    this.nameConstraints = fields.nameConstraints;
    this.subjectKeyId = fields.subjectKeyId;
    this.authorityKeyId = fields.authorityKeyId;
    this.unknownCriticalExtensions = fields.unknownCriticalExtensions;
    Object.freeze(this.issuer);
    Object.freeze(this.subject);
  }

  /** @internal Used by `parseCertificate` only. */
  static fromFields(fields: CertificateFields): Certificate {
    return new Certificate(fields);
  }

  get pem(): string {
    return (this.#pem ??= encodePem(PEM_LABEL.certificate, this.der));
  }

  /** The subject public key as a Node KeyObject (created once). */
  get publicKey(): KeyObject {
    return (this.#publicKey ??= publicKeyObject(this.publicKeyInfo, "certificate"));
  }

  get isCa(): boolean {
    return this.basicConstraints?.ca === true;
  }

  get isSelfIssued(): boolean {
    return bytesEqual(this.issuerDer, this.subjectDer);
  }

  hasKeyUsage(bit: number): boolean {
    return this.keyUsage !== undefined && (this.keyUsage & (1 << bit)) !== 0;
  }

  /** Every value of one subject attribute, e.g. `subjectField(OID.commonName)`. */
  subjectField(oid: string): string[] {
    return this.subject.filter((a) => a.oid === oid).map((a) => a.value);
  }
}

/** Parses one certificate from DER bytes or from PEM text holding exactly one CERTIFICATE block. */
export function parseCertificate(input: string | Uint8Array): Certificate {
  const der = derFromInput(input, PEM_LABEL.certificate, "certificate");
  return parseCertificateDer(der);
}

/** Parses every CERTIFICATE block of a PEM document. */
export function parseCertificatesPem(pem: string): Certificate[] {
  return decodePem(pem, { label: PEM_LABEL.certificate, kind: "certificate" }).map((b) => parseCertificateDer(b.der));
}

/** Parses a chain given as DER buffers and/or PEM strings (each string may hold several blocks). */
export function parseChain(chain: readonly (string | Uint8Array)[]): Certificate[] {
  const out: Certificate[] = [];
  for (const item of chain) {
    if (typeof item === "string") out.push(...parseCertificatesPem(item));
    else out.push(parseCertificate(item));
  }
  return out;
}

function parseCertificateDer(input: Uint8Array): Certificate {
  const r: DerReader = new DerReader("certificate");
  if (input.length > MAX_DER_BYTES) r.fail(`certificate exceeds ${MAX_DER_BYTES} bytes`);
  // Copy, so later mutation of the caller's buffer cannot change a parsed certificate.
  const der = new Uint8Array(input);
  const cert = r.readExact(der, TAG.SEQUENCE, "certificate");
  const [tbsNode, sigAlgNode, sigNode, ...extra] = r.children(cert, "certificate", 4);
  if (!tbsNode || !sigAlgNode || !sigNode || extra.length) r.fail("certificate must have tbsCertificate, signatureAlgorithm, signature");
  r.expectTag(tbsNode, TAG.SEQUENCE, "tbsCertificate");
  const signatureAlgorithm = algorithmOid(r, sigAlgNode, "signatureAlgorithm");
  const signature = r.bitString(sigNode, "signature").bytes;

  const fields = r.children(tbsNode, "tbsCertificate", 12);
  let i = 0;
  let version = 0;
  if (fields[0]?.tag === 0xa0) {
    const [v, ...rest] = r.children(fields[0], "version", 2);
    if (!v || rest.length) r.fail("version: expected one INTEGER");
    version = r.smallInt(v, "version");
    if (version > 2) r.fail(`unknown version ${version}`);
    i++;
  }
  const serialNode = fields[i++];
  const innerAlgNode = fields[i++];
  const issuerNode = fields[i++];
  const validityNode = fields[i++];
  const subjectNode = fields[i++];
  const spkiNode = fields[i++];
  if (!serialNode || !innerAlgNode || !issuerNode || !validityNode || !subjectNode || !spkiNode) r.fail("tbsCertificate: missing fields");
  const serial = r.integer(serialNode, "serialNumber");
  if (serial.length > 21) r.fail("serialNumber longer than 20 octets");
  if (!bytesEqual(innerAlgNode.raw, sigAlgNode.raw)) r.fail("signature algorithm differs between tbsCertificate and certificate");
  const issuer = parseName(r, issuerNode, "issuer");
  const subject = parseName(r, subjectNode, "subject");
  r.expectTag(validityNode, TAG.SEQUENCE, "validity");
  const [nb, na, ...vx] = r.children(validityNode, "validity", 3);
  if (!nb || !na || vx.length) r.fail("validity: expected notBefore and notAfter");
  const notBefore = r.time(nb, "notBefore");
  const notAfter = r.time(na, "notAfter");
  const publicKeyInfo = parseSpki(r, spkiNode);

  let extensionsNode: DerNode | undefined;
  for (const f of fields.slice(i)) {
    if (f.tag === 0x81 || f.tag === 0x82) continue; // issuer/subject unique IDs: ignored
    if (f.tag === 0xa3 && !extensionsNode) {
      extensionsNode = f;
      continue;
    }
    r.fail(`tbsCertificate: unexpected field with tag 0x${f.tag.toString(16)}`);
  }
  if (extensionsNode && version !== 2) r.fail("extensions require a v3 certificate");
  const ext = extensionsNode ? parseExtensions(r, extensionsNode) : emptyExtensions();

  return Certificate.fromFields({
    der,
    fingerprint: createHash("sha256").update(der).digest("hex"),
    tbs: tbsNode.raw,
    signatureAlgorithm,
    signature,
    serialNumber: toHex(serial),
    issuerDer: issuerNode.raw,
    subjectDer: subjectNode.raw,
    issuer,
    subject,
    notBefore,
    notAfter,
    publicKeyInfo,
    ...ext,
  });
}

export function algorithmOid(r: DerReader, node: DerNode, what: string): string {
  r.expectTag(node, TAG.SEQUENCE, what);
  const [o, params, ...extra] = r.children(node, what, 3);
  if (!o || extra.length) r.fail(`${what}: malformed AlgorithmIdentifier`);
  if (params && params.tag !== TAG.NULL) r.fail(`${what}: unexpected parameters`);
  return r.oid(o, what);
}

export function parseName(r: DerReader, node: DerNode, what: string): NameAttribute[] {
  r.expectTag(node, TAG.SEQUENCE, what);
  const out: NameAttribute[] = [];
  for (const rdn of r.children(node, what, 64)) {
    r.expectTag(rdn, TAG.SET, `${what} RDN`);
    const atvs = r.children(rdn, `${what} RDN`, 16);
    if (atvs.length === 0) r.fail(`${what}: empty RDN`);
    for (const atv of atvs) {
      r.expectTag(atv, TAG.SEQUENCE, `${what} attribute`);
      const [type, value, ...extra] = r.children(atv, `${what} attribute`, 3);
      if (!type || !value || extra.length) r.fail(`${what}: malformed attribute`);
      out.push({ oid: r.oid(type, `${what} attribute type`), value: r.string(value, `${what} attribute value`) });
    }
  }
  return out;
}

type ExtensionFields = Pick<
  Certificate,
  | "basicConstraints"
  | "keyUsage"
  | "extKeyUsage"
  | "uris"
  | "dnsNames"
  | "otherSanCount"
  | "subjectAltNameCritical"
  | "nameConstraints"
  | "subjectKeyId"
  | "authorityKeyId"
  | "unknownCriticalExtensions"
>;

function emptyExtensions(): ExtensionFields {
  return {
    basicConstraints: undefined,
    keyUsage: undefined,
    extKeyUsage: undefined,
    uris: [],
    dnsNames: [],
    otherSanCount: 0,
    subjectAltNameCritical: false,
    nameConstraints: undefined,
    subjectKeyId: undefined,
    authorityKeyId: undefined,
    unknownCriticalExtensions: [],
  };
}

/** Reads an `Extensions` SEQUENCE (inside the `[3]` wrapper for certificates). */
function parseExtensions(r: DerReader, wrapper: DerNode): ExtensionFields {
  const [list, ...extra] = r.children(wrapper, "extensions", 2);
  if (!list || extra.length) r.fail("extensions: expected one SEQUENCE");
  return parseExtensionList(r, list);
}

export function parseExtensionList(r: DerReader, list: DerNode): ExtensionFields {
  r.expectTag(list, TAG.SEQUENCE, "extensions");
  const out: { -readonly [K in keyof ExtensionFields]: ExtensionFields[K] } = emptyExtensions();
  const unknownCritical: string[] = [];
  const seen = new Set<string>();
  for (const e of r.children(list, "extensions", 64)) {
    r.expectTag(e, TAG.SEQUENCE, "extension");
    const parts = r.children(e, "extension", 3);
    const id = parts[0];
    if (!id) r.fail("extension: missing OID");
    const extnId = r.oid(id, "extension id");
    if (seen.has(extnId)) r.fail(`duplicate extension ${extnId}`);
    seen.add(extnId);
    let critical = false;
    let valueNode = parts[1];
    if (parts.length === 3) {
      critical = r.boolean(parts[1]!, `extension ${extnId} critical`);
      if (!critical) r.fail(`extension ${extnId}: DEFAULT FALSE must be omitted in DER`);
      valueNode = parts[2];
    }
    if (!valueNode) r.fail(`extension ${extnId}: missing value`);
    r.expectTag(valueNode, TAG.OCTET_STRING, `extension ${extnId} value`);
    const value = valueNode.value;
    switch (extnId) {
      case OID.basicConstraints: {
        const s = r.readExact(value, TAG.SEQUENCE, "basicConstraints");
        const items = r.children(s, "basicConstraints", 2);
        let ca = false;
        let pathLen: number | undefined;
        for (const item of items) {
          if (item.tag === TAG.BOOLEAN) {
            if (pathLen !== undefined) r.fail("basicConstraints: cA after pathLen");
            ca = r.boolean(item, "basicConstraints.cA");
          } else pathLen = r.smallInt(item, "basicConstraints.pathLenConstraint");
        }
        out.basicConstraints = pathLen === undefined ? { ca } : { ca, pathLen };
        break;
      }
      case OID.keyUsage: {
        const { bytes } = r.bitString(r.readExact(value, TAG.BIT_STRING, "keyUsage"), "keyUsage", true);
        let mask = 0;
        for (let bit = 0; bit < Math.min(bytes.length * 8, 16); bit++) if (bytes[bit >> 3]! & (0x80 >> (bit & 7))) mask |= 1 << bit;
        out.keyUsage = mask;
        break;
      }
      case OID.extKeyUsage: {
        const s = r.readExact(value, TAG.SEQUENCE, "extKeyUsage");
        out.extKeyUsage = r.children(s, "extKeyUsage", 32).map((n) => r.oid(n, "extKeyUsage purpose"));
        break;
      }
      case OID.subjectAltName: {
        const s = r.readExact(value, TAG.SEQUENCE, "subjectAltName");
        const uris: string[] = [];
        const dns: string[] = [];
        let other = 0;
        for (const gn of r.children(s, "subjectAltName", 64)) {
          if (gn.tag === 0x86) uris.push(r.ia5(gn, "SAN URI", 0x86));
          else if (gn.tag === 0x82) dns.push(r.ia5(gn, "SAN DNS", 0x82));
          else other++;
        }
        out.uris = uris;
        out.dnsNames = dns;
        out.otherSanCount = other;
        out.subjectAltNameCritical = critical;
        break;
      }
      case OID.nameConstraints: {
        const s = r.readExact(value, TAG.SEQUENCE, "nameConstraints");
        const permitted: string[] = [];
        const excluded: string[] = [];
        let otherTypes = false;
        for (const subtrees of r.children(s, "nameConstraints", 2)) {
          if (subtrees.tag !== 0xa0 && subtrees.tag !== 0xa1) r.fail("nameConstraints: unexpected field");
          const target = subtrees.tag === 0xa0 ? permitted : excluded;
          for (const st of r.children(subtrees, "GeneralSubtrees", 64)) {
            r.expectTag(st, TAG.SEQUENCE, "GeneralSubtree");
            const [base, ...minmax] = r.children(st, "GeneralSubtree", 3);
            if (!base) r.fail("GeneralSubtree: missing base");
            if (minmax.length) r.fail("GeneralSubtree: minimum/maximum must be absent (RFC 5280)");
            if (base.tag === 0x86) target.push(r.ia5(base, "name constraint URI", 0x86));
            else otherTypes = true;
          }
        }
        out.nameConstraints = { critical, permittedUris: permitted, excludedUris: excluded, otherTypes };
        break;
      }
      case OID.subjectKeyIdentifier: {
        out.subjectKeyId = toHex(r.readExact(value, TAG.OCTET_STRING, "subjectKeyIdentifier").value);
        break;
      }
      case OID.authorityKeyIdentifier: {
        const s = r.readExact(value, TAG.SEQUENCE, "authorityKeyIdentifier");
        for (const item of r.children(s, "authorityKeyIdentifier", 3)) if (item.tag === 0x80) out.authorityKeyId = toHex(item.value);
        break;
      }
      default:
        if (critical) unknownCritical.push(extnId);
    }
  }
  out.unknownCriticalExtensions = unknownCritical;
  return out;
}
