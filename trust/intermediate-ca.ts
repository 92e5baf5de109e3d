import { z } from "zod";
import { caMaterialFromSecret, caMaterialToSecret, readCaFiles, writeCaFiles, type CaMaterial, type KubernetesSecret } from "./ca-storage.ts";
import { parseCertificate, type Certificate } from "./certificate.ts";
import { createSystemClock, isClock, type Clock } from "./clock.ts";
import { clusterOfIntermediate } from "./cluster-scope.ts";
import { parseCsr } from "./csr.ts";
import { InvalidSpiffeIdError, IssuanceRefusedError, MalformedInputError, NameConstraintError, TrustOptionsError } from "./errors.ts";
import {
  DEFAULT_KEY_ALGORITHM,
  KEY_ALGORITHMS,
  assertKeyMatchesCertificate,
  generateLeafKey,
  importPrivateKeyPem,
  type CryptoKey,
  type KeyAlgorithm,
} from "./keys.ts";
import { DEFAULT_LEAF_TTL_MS, LEAF_BACKDATE_MS, LeafEncoder, MAX_LEAF_TTL_MS, type IssuedLeaf } from "./leaf.ts";
import { KEY_USAGE, OID } from "./oids.ts";
import { parseOptions } from "./options.ts";
import type { PublicKeyType, SubjectPublicKeyInfo } from "./public-key.ts";
import { isSignedBy } from "./signature.ts";
import { clusterPathPrefix, gatewaySpiffeId, parseClusterSpiffeId } from "./spiffe-id.ts";

const LoadOptionsSchema = z.object({
  certPem: z.string(),
  keyPem: z.string(),
  issuerPem: z.string(),
  clock: z.custom<Clock>(isClock, "must be an object with now(): Date").optional(),
});
export type LoadIntermediateCaOptions = z.input<typeof LoadOptionsSchema>;

/** What `issueLeaf` takes. Exactly one key source: a CSR, or (default) a key the CA generates. */
export interface IssueLeafOptions {
  /** Defaults to the cluster's gateway ID, `spiffe://<td>/cluster/<name>/gateway`. */
  spiffeId?: string;
  /** PEM or DER PKCS#10 request; its key is certified, its subject ignored, its URI SANs must be empty or exactly `spiffeId`. */
  csr?: string | Uint8Array;
  /** Key algorithm when the CA generates the key. */
  algorithm?: KeyAlgorithm;
  /** Default 24 h; at most 30 days; never past the intermediate's own expiry. */
  ttlMs?: number;
}

/**
 * A cluster's intermediate CA. It can certify only identities under
 * `spiffe://<trust-domain>/cluster/<cluster>/` and refuses anything else; the
 * verifier enforces the same scope on the receiving side (see cluster-scope.ts).
 */
export class IntermediateCa {
  readonly certificate: Certificate;
  /** The root that signed this intermediate. */
  readonly issuer: Certificate;
  readonly trustDomain: string;
  readonly cluster: string;
  readonly keyType: PublicKeyType;
  readonly #keyPem: string;
  readonly #clock: Clock;
  readonly #encoder: LeafEncoder;

  private constructor(fields: { certificate: Certificate; issuer: Certificate; trustDomain: string; cluster: string; keyType: PublicKeyType; privateKey: CryptoKey; keyPem: string; clock: Clock }) {
    this.certificate = fields.certificate;
    this.issuer = fields.issuer;
    this.trustDomain = fields.trustDomain;
    this.cluster = fields.cluster;
    this.keyType = fields.keyType;
    this.#keyPem = fields.keyPem;
    this.#clock = fields.clock;
    this.#encoder = new LeafEncoder({ issuer: fields.certificate, signingKey: fields.privateKey, keyType: fields.keyType });
  }

  /** @internal Used by RootCa, which has just created and checked every part. */
  static fromParts(fields: { certificate: Certificate; issuer: Certificate; privateKey: CryptoKey; keyPem: string; keyType: PublicKeyType; clock: Clock }): IntermediateCa {
    const trustDomain = fields.issuer.subjectField(OID.organizationName)[0] ?? "";
    const cluster = clusterOfIntermediate(fields.certificate, trustDomain);
    return new IntermediateCa({ ...fields, trustDomain, cluster });
  }

  /**
   * Loads an intermediate from PEM and checks everything fedgate relies on:
   * signed by `issuerPem`, a CA with pathLen 0 and keyCertSign, a cluster
   * subject, URI name constraints on the trust domain, and a matching key.
   */
  static async fromPem(options: LoadIntermediateCaOptions): Promise<IntermediateCa> {
    const opts = parseOptions(LoadOptionsSchema, options, "intermediate CA material");
    const certificate = parseCertificate(opts.certPem);
    const issuer = parseCertificate(opts.issuerPem);
    const { key, type } = await importPrivateKeyPem(opts.keyPem);
    const trustDomain = issuer.subjectField(OID.organizationName)[0];
    const bad = (message: string) => new MalformedInputError("certificate", `intermediate: ${message}`);
    if (trustDomain === undefined) throw bad("issuer has no O=<trust-domain>");
    if (!certificate.isCa || certificate.basicConstraints?.pathLen !== 0) throw bad("must be a CA with pathLen 0");
    if (!certificate.hasKeyUsage(KEY_USAGE.keyCertSign)) throw bad("must allow keyCertSign");
    if (!isSignedBy(certificate, issuer.publicKey)) throw bad("is not signed by the given issuer");
    const nc = certificate.nameConstraints;
    if (!nc?.critical || !nc.permittedUris.includes(trustDomain)) throw bad(`must carry critical URI name constraints permitting ${trustDomain}`);
    let cluster: string;
    try {
      cluster = clusterOfIntermediate(certificate, trustDomain);
    } catch (err) {
      if (err instanceof NameConstraintError) throw new MalformedInputError("certificate", err.message, { cause: err });
      throw err;
    }
    await assertKeyMatchesCertificate(key, certificate);
    return new IntermediateCa({ certificate, issuer, trustDomain, cluster, keyType: type, privateKey: key, keyPem: opts.keyPem, clock: opts.clock ?? createSystemClock() });
  }

  static async fromSecret(secret: unknown, options: { clock?: Clock } = {}): Promise<IntermediateCa> {
    const m = caMaterialFromSecret(secret, true);
    return IntermediateCa.fromPem({ certPem: m.certPem, keyPem: m.keyPem, issuerPem: m.issuerPem ?? "", ...options });
  }

  static async readFiles(dir: string, options: { clock?: Clock } = {}): Promise<IntermediateCa> {
    const m = await readCaFiles(dir, true);
    return IntermediateCa.fromPem({ certPem: m.certPem, keyPem: m.keyPem, issuerPem: m.issuerPem ?? "", ...options });
  }

  get fingerprint(): string {
    return this.certificate.fingerprint;
  }

  get certPem(): string {
    return this.certificate.pem;
  }

  get keyPem(): string {
    return this.#keyPem;
  }

  toMaterial(): CaMaterial {
    return { certPem: this.certPem, keyPem: this.#keyPem, issuerPem: this.issuer.pem };
  }

  toSecret(ref: { name: string; namespace?: string }): KubernetesSecret {
    return caMaterialToSecret(this.toMaterial(), { ...ref, role: "intermediate-ca", trustDomain: this.trustDomain, cluster: this.cluster });
  }

  writeFiles(dir: string): Promise<void> {
    return writeCaFiles(dir, this.toMaterial());
  }

  /** Issues a leaf for an identity of this cluster; see IssueLeafOptions. */
  async issueLeaf(options: IssueLeafOptions = {}): Promise<IssuedLeaf> {
    const spiffeId = options.spiffeId ?? gatewaySpiffeId(this.trustDomain, this.cluster);
    const ttlMs = options.ttlMs ?? DEFAULT_LEAF_TTL_MS;
    const algorithm = options.algorithm ?? DEFAULT_KEY_ALGORITHM;
    const problems: { path: string; message: string }[] = [];
    if (!Number.isInteger(ttlMs) || ttlMs < 1000 || ttlMs > MAX_LEAF_TTL_MS) problems.push({ path: "ttlMs", message: `must be an integer from 1000 to ${MAX_LEAF_TTL_MS}` });
    if (!KEY_ALGORITHMS.includes(algorithm)) problems.push({ path: "algorithm", message: `must be one of ${KEY_ALGORITHMS.join(", ")}` });
    if (options.csr !== undefined && options.algorithm !== undefined) problems.push({ path: "algorithm", message: "not allowed with a CSR (the CSR carries the key)" });
    if (problems.length) throw new TrustOptionsError("leaf options", problems);

    let id;
    try {
      id = parseClusterSpiffeId(spiffeId);
    } catch (err) {
      if (err instanceof InvalidSpiffeIdError) throw new IssuanceRefusedError(err.message, { cause: err });
      throw err;
    }
    if (id.trustDomain !== this.trustDomain) throw new IssuanceRefusedError(`${spiffeId} is outside trust domain ${this.trustDomain}`);
    if (id.cluster !== this.cluster) throw new IssuanceRefusedError(`${spiffeId} is outside ${clusterPathPrefix(this.cluster)}; the ${this.cluster} intermediate cannot certify it`);

    const now = this.#clock.now();
    if (now >= this.certificate.notAfter) throw new IssuanceRefusedError(`intermediate for ${this.cluster} expired at ${this.certificate.notAfter.toISOString()}`);
    const notBefore = new Date(Math.max(now.getTime() - LEAF_BACKDATE_MS, this.certificate.notBefore.getTime()));
    const notAfter = new Date(Math.min(now.getTime() + ttlMs, this.certificate.notAfter.getTime()));

    let publicKeyInfo: SubjectPublicKeyInfo;
    let privateKeyPem: string | undefined;
    if (options.csr !== undefined) {
      const csr = parseCsr(options.csr);
      if (csr.requestedUris.some((u) => u !== spiffeId) || csr.requestedUris.length > 1) {
        throw new IssuanceRefusedError(`CSR asks for ${csr.requestedUris.join(", ")}, but the granted identity is ${spiffeId}`);
      }
      publicKeyInfo = csr.publicKeyInfo;
    } else {
      const key = await generateLeafKey(algorithm);
      publicKeyInfo = key.publicKeyInfo;
      privateKeyPem = key.privateKeyPem;
    }

    const certificate = await this.#encoder.encode({ publicKeyInfo, spiffeId, notBefore, notAfter });
    return {
      spiffeId,
      trustDomain: this.trustDomain,
      cluster: this.cluster,
      certificate,
      chain: [certificate, this.certificate],
      certPem: certificate.pem,
      chainPem: certificate.pem + this.certificate.pem,
      ...(privateKeyPem === undefined ? {} : { privateKeyPem }),
    };
  }
}
