import { webcrypto } from "node:crypto";
import { z } from "zod";
import { JOSE_ALG, bundleSignaturePayload, type BundleSignature } from "./bundle-signature.ts";
import { caMaterialFromSecret, caMaterialToSecret, readCaFiles, writeCaFiles, type CaMaterial, type KubernetesSecret } from "./ca-storage.ts";
import { parseCertificate, type Certificate } from "./certificate.ts";
import { createSystemClock, isClock, type Clock } from "./clock.ts";
import { CLUSTER_CA_UNIT, encodeUriNameConstraints, intermediateSubject, NAME_CONSTRAINTS_OID } from "./cluster-scope.ts";
import { parseCsr } from "./csr.ts";
import { IssuanceRefusedError, MalformedInputError } from "./errors.ts";
import { IntermediateCa } from "./intermediate-ca.ts";
import {
  DEFAULT_KEY_ALGORITHM,
  KEY_ALGORITHMS,
  assertKeyMatchesCertificate,
  exportPrivateKeyPem,
  exportSpki,
  generateKeyPair,
  importPrivateKeyPem,
  keyTypeOf,
  signRaw,
  signingProfile,
  type CryptoKey,
} from "./keys.ts";
import { KEY_USAGE, OID } from "./oids.ts";
import { parseOptions } from "./options.ts";
import { RevocationList } from "./revocation-list.ts";
import { smallInteger } from "./der.ts";
import type { PublicKeyType } from "./public-key.ts";
import { isSignedBy } from "./signature.ts";
import { isValidClusterName, isValidTrustDomain } from "./spiffe-id.ts";
import { x509 } from "./x509.ts";

const DAY_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_ROOT_VALIDITY_MS = 10 * 365 * DAY_MS;
export const MAX_ROOT_VALIDITY_MS = 30 * 365 * DAY_MS;
export const DEFAULT_INTERMEDIATE_VALIDITY_MS = 365 * DAY_MS;
/** CA certificates are backdated this much, so clusters with slightly lagging clocks accept them at once. */
export const CA_BACKDATE_MS = 5 * 60 * 1000;
/** How long a revocation list stays fresh; the ClusterSet admin reissues it (next cRLNumber) before then. */
export const DEFAULT_REVOCATION_VALIDITY_MS = 7 * DAY_MS;

const clockSchema = z.custom<Clock>(isClock, "must be an object with now(): Date");

const RootCaOptionsSchema = z.object({
  trustDomain: z.string().refine(isValidTrustDomain, "must be a SPIFFE trust domain (a-z, 0-9, '.', '-', '_')"),
  algorithm: z.enum(KEY_ALGORITHMS).default(DEFAULT_KEY_ALGORITHM),
  validityMs: z.number().int().min(60 * 60 * 1000).max(MAX_ROOT_VALIDITY_MS).default(DEFAULT_ROOT_VALIDITY_MS),
  clock: clockSchema.optional(),
});
export type RootCaOptions = z.input<typeof RootCaOptionsSchema>;

const IntermediateOptionsSchema = z.object({
  cluster: z.string().refine(isValidClusterName, "must be an RFC 1123 subdomain under 128 characters"),
  algorithm: z.enum(KEY_ALGORITHMS).default(DEFAULT_KEY_ALGORITHM),
  validityMs: z.number().int().min(60 * 1000).max(MAX_ROOT_VALIDITY_MS).default(DEFAULT_INTERMEDIATE_VALIDITY_MS),
});
export type IssueIntermediateOptions = z.input<typeof IntermediateOptionsSchema>;

const IntermediateCsrOptionsSchema = IntermediateOptionsSchema.omit({ algorithm: true }).extend({
  csr: z.union([z.string(), z.instanceof(Uint8Array)]),
});
export type IssueIntermediateFromCsrOptions = z.input<typeof IntermediateCsrOptionsSchema>;

const RevocationOptionsSchema = z.object({
  /** Intermediates (of whole clusters) to revoke; each must have been issued by this root. */
  intermediates: z.array(z.custom<Certificate>((c) => c instanceof Object && "serialNumber" in c && "issuerDer" in c, "must be a parsed Certificate")).max(16_384),
  /** Strictly increasing per root: receivers refuse a list whose number is not above the installed one. */
  crlNumber: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  validityMs: z.number().int().min(60 * 1000).max(366 * DAY_MS).default(DEFAULT_REVOCATION_VALIDITY_MS),
});
export type IssueRevocationListOptions = z.input<typeof RevocationOptionsSchema>;

const LoadOptionsSchema = z.object({
  certPem: z.string(),
  keyPem: z.string(),
  clock: clockSchema.optional(),
});
export type LoadRootCaOptions = z.input<typeof LoadOptionsSchema>;

export function randomSerialHex(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0]! & 0x7f) | 0x40;
  return Buffer.from(b).toString("hex");
}

/**
 * The federation's root of trust for one trust domain. It signs cluster
 * intermediates and trust-bundle documents, nothing else.
 */
export class RootCa {
  readonly certificate: Certificate;
  readonly trustDomain: string;
  readonly keyType: PublicKeyType;
  readonly #privateKey: CryptoKey;
  readonly #keyPem: string;
  readonly #clock: Clock;

  private constructor(fields: { certificate: Certificate; trustDomain: string; keyType: PublicKeyType; privateKey: CryptoKey; keyPem: string; clock: Clock }) {
    this.certificate = fields.certificate;
    this.trustDomain = fields.trustDomain;
    this.keyType = fields.keyType;
    this.#privateKey = fields.privateKey;
    this.#keyPem = fields.keyPem;
    this.#clock = fields.clock;
  }

  /** Generates a key and a self-signed root certificate. */
  static async create(options: RootCaOptions): Promise<RootCa> {
    const opts = parseOptions(RootCaOptionsSchema, options, "root CA options");
    const clock = opts.clock ?? createSystemClock();
    const now = clock.now();
    const keys = await generateKeyPair(opts.algorithm);
    const keyType = keyTypeOf(opts.algorithm);
    const label = `fedgate root ${now.toISOString().slice(0, 10)} ${randomSerialHex().slice(0, 8)}`;
    const cert = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: randomSerialHex(),
        name: [{ O: [opts.trustDomain] }, { CN: [label] }],
        notBefore: new Date(now.getTime() - CA_BACKDATE_MS),
        notAfter: new Date(now.getTime() + opts.validityMs),
        keys,
        signingAlgorithm: signingProfile(keyType).params,
        extensions: [
          new x509.BasicConstraintsExtension(true, 1, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
        ],
      },
      webcrypto,
    );
    return new RootCa({
      certificate: parseCertificate(new Uint8Array(cert.rawData)),
      trustDomain: opts.trustDomain,
      keyType,
      privateKey: keys.privateKey,
      keyPem: await exportPrivateKeyPem(keys.privateKey),
      clock,
    });
  }

  /** Loads a root from PEM, checking it is a self-signed CA of a trust domain and that the key is its own. */
  static async fromPem(options: LoadRootCaOptions): Promise<RootCa> {
    const opts = parseOptions(LoadOptionsSchema, options, "root CA material");
    const certificate = parseCertificate(opts.certPem);
    const { key, type } = await importPrivateKeyPem(opts.keyPem);
    const [td, ...moreTd] = certificate.subjectField(OID.organizationName);
    if (!certificate.isCa || !certificate.hasKeyUsage(KEY_USAGE.keyCertSign)) throw new MalformedInputError("certificate", "root certificate is not a CA with keyCertSign");
    if (!certificate.isSelfIssued || !isSignedBy(certificate, certificate.publicKey)) throw new MalformedInputError("certificate", "root certificate is not self-signed");
    if (td === undefined || moreTd.length || !isValidTrustDomain(td)) throw new MalformedInputError("certificate", "root subject must carry O=<trust-domain>");
    if (certificate.subjectField(OID.organizationalUnitName).includes(CLUSTER_CA_UNIT)) throw new MalformedInputError("certificate", "a cluster CA is not a root");
    await assertKeyMatchesCertificate(key, certificate);
    return new RootCa({ certificate, trustDomain: td, keyType: type, privateKey: key, keyPem: opts.keyPem, clock: opts.clock ?? createSystemClock() });
  }

  static async fromSecret(secret: unknown, options: { clock?: Clock } = {}): Promise<RootCa> {
    const m = caMaterialFromSecret(secret, false);
    return RootCa.fromPem({ certPem: m.certPem, keyPem: m.keyPem, ...options });
  }

  static async readFiles(dir: string, options: { clock?: Clock } = {}): Promise<RootCa> {
    const m = await readCaFiles(dir, false);
    return RootCa.fromPem({ certPem: m.certPem, keyPem: m.keyPem, ...options });
  }

  get fingerprint(): string {
    return this.certificate.fingerprint;
  }

  get certPem(): string {
    return this.certificate.pem;
  }

  /** The PKCS#8 PEM private key. Handle as a secret. */
  get keyPem(): string {
    return this.#keyPem;
  }

  toMaterial(): CaMaterial {
    return { certPem: this.certPem, keyPem: this.#keyPem };
  }

  toSecret(ref: { name: string; namespace?: string }): KubernetesSecret {
    return caMaterialToSecret(this.toMaterial(), { ...ref, role: "root-ca", trustDomain: this.trustDomain });
  }

  writeFiles(dir: string): Promise<void> {
    return writeCaFiles(dir, this.toMaterial());
  }

  /** Issues a cluster intermediate with a freshly generated key (kept by the returned IntermediateCa). */
  async issueIntermediate(options: IssueIntermediateOptions): Promise<IntermediateCa> {
    const opts = parseOptions(IntermediateOptionsSchema, options, "intermediate options");
    const keys = await generateKeyPair(opts.algorithm);
    const cert = await this.signIntermediate(opts.cluster, await exportSpki(keys.publicKey), opts.validityMs);
    return IntermediateCa.fromParts({
      certificate: cert,
      issuer: this.certificate,
      privateKey: keys.privateKey,
      keyPem: await exportPrivateKeyPem(keys.privateKey),
      keyType: keyTypeOf(opts.algorithm),
      clock: this.#clock,
    });
  }

  /**
   * Issues a cluster intermediate for a key that never leaves the cluster: the
   * cluster sends a CSR, the root returns the certificate.
   */
  async issueIntermediateFromCsr(options: IssueIntermediateFromCsrOptions): Promise<Certificate> {
    const opts = parseOptions(IntermediateCsrOptionsSchema, options, "intermediate options");
    const csr = parseCsr(opts.csr);
    return this.signIntermediate(opts.cluster, csr.publicKeyInfo.der, opts.validityMs);
  }

  private async signIntermediate(cluster: string, spki: Uint8Array, validityMs: number): Promise<Certificate> {
    const now = this.#clock.now();
    if (now >= this.certificate.notAfter) throw new IssuanceRefusedError(`root expired at ${this.certificate.notAfter.toISOString()}`);
    const notAfter = new Date(Math.min(now.getTime() + validityMs, this.certificate.notAfter.getTime()));
    const notBefore = new Date(Math.max(now.getTime() - CA_BACKDATE_MS, this.certificate.notBefore.getTime()));
    const publicKey = new x509.PublicKey(spki);
    const extensions: InstanceType<typeof x509.Extension>[] = [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.Extension(NAME_CONSTRAINTS_OID, true, encodeUriNameConstraints([this.trustDomain])),
      await x509.SubjectKeyIdentifierExtension.create(publicKey, false, webcrypto),
    ];
    if (this.certificate.subjectKeyId) extensions.push(new x509.AuthorityKeyIdentifierExtension(this.certificate.subjectKeyId, false));
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerialHex(),
        subject: intermediateSubject(this.trustDomain, cluster),
        issuer: new x509.Name(this.certificate.subjectDer),
        notBefore,
        notAfter,
        publicKey,
        signingKey: this.#privateKey,
        signingAlgorithm: signingProfile(this.keyType).params,
        extensions,
      },
      webcrypto,
    );
    return parseCertificate(new Uint8Array(cert.rawData));
  }

  /**
   * Signs an X.509 CRL listing the given cluster intermediates: the standard
   * form of "cluster X is revoked". The complete list every time (not a
   * delta): a receiver replaces its list for this root with the newer one.
   */
  async issueRevocationList(options: IssueRevocationListOptions): Promise<RevocationList> {
    const opts = parseOptions(RevocationOptionsSchema, options, "revocation list options");
    const foreign = opts.intermediates.filter((c) => Buffer.compare(c.issuerDer, this.certificate.subjectDer) !== 0 || !isSignedBy(c, this.certificate.publicKey));
    if (foreign.length) throw new IssuanceRefusedError(`cannot revoke certificates this root did not issue (serials ${foreign.map((c) => c.serialNumber).join(", ")})`);
    const now = this.#clock.now();
    const extensions: InstanceType<typeof x509.Extension>[] = [new x509.Extension(OID.crlNumber, false, smallInteger(opts.crlNumber))];
    if (this.certificate.subjectKeyId) extensions.push(new x509.AuthorityKeyIdentifierExtension(this.certificate.subjectKeyId, false));
    const crl = await x509.X509CrlGenerator.create(
      {
        issuer: new x509.Name(this.certificate.subjectDer),
        thisUpdate: now,
        nextUpdate: new Date(now.getTime() + opts.validityMs),
        entries: [...new Map(opts.intermediates.map((c) => [c.serialNumber, c])).values()].map((c) => ({ serialNumber: c.serialNumber, revocationDate: now })),
        extensions,
        signingKey: this.#privateKey,
        signingAlgorithm: signingProfile(this.keyType).params,
      },
      webcrypto,
    );
    return RevocationList.parse(new Uint8Array(crl.rawData));
  }

  /**
   * Signs a trust-bundle document (see bundle-signature.ts). The root signs
   * only this domain-separated payload, never caller-chosen bytes, so the
   * method cannot be turned into a certificate-signing oracle.
   */
  async signBundleDocument(document: { trustDomain: string; sequence: number; bundleJson: string }): Promise<BundleSignature> {
    const payload = bundleSignaturePayload(document.trustDomain, document.sequence, document.bundleJson);
    const sig = await signRaw(this.#privateKey, signingProfile(this.keyType), payload);
    return { signer: this.fingerprint, alg: JOSE_ALG[this.keyType], sig: Buffer.from(sig).toString("base64url") };
  }
}
