import { createHash } from "node:crypto";
import { z } from "zod";
import type { Problem } from "../common/index.ts";
import { parseCertificate, type Certificate } from "./certificate.ts";
import { BundleValidationError, MalformedInputError } from "./errors.ts";
import { KEY_USAGE } from "./oids.ts";
import { zodProblems } from "./options.ts";
import { PEM_LABEL, decodeBase64Strict, decodePem, MAX_PEM_CHARS } from "./pem.ts";
import { isValidTrustDomain } from "./spiffe-id.ts";

/**
 * A trust bundle: the versioned set of CA certificates (roots) that anchor a
 * trust domain. Immutable. Every way of building one validates it and reports
 * every problem at once (BundleValidationError).
 *
 * Wire formats:
 * - the SPIFFE bundle format, a JWKS whose keys have `use: "x509-svid"`, an
 *   `x5c` holding the one DER certificate, the key's public parameters, plus
 *   `spiffe_sequence` and `spiffe_refresh_hint` (SPIFFE Trust Domain and Bundle spec §4);
 * - PEM, the concatenated certificates (what Node's `tls` `ca` option takes).
 */

export const DEFAULT_REFRESH_HINT_SECONDS = 300;
/** A bundle document larger than this is refused before it is parsed. */
export const MAX_BUNDLE_JSON_CHARS = MAX_PEM_CHARS;
export const MAX_BUNDLE_CERTIFICATES = 64;
/** Verified intermediate→root links kept per bundle (see `verifiedIssuerCache`). */
const ISSUER_CACHE_ENTRIES = 1024;

export const X509_SVID_USE = "x509-svid";

export interface BundleJwk {
  use: string;
  kty: string;
  x5c: string[];
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
}

export interface SpiffeBundleDocument {
  keys: BundleJwk[];
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

export interface BundleDiff {
  /** In the other bundle, not in this one. */
  readonly added: readonly Certificate[];
  /** In this bundle, not in the other one. */
  readonly removed: readonly Certificate[];
}

export interface BundleCreateOptions {
  trustDomain: string;
  certificates: readonly (Certificate | string | Uint8Array)[];
  sequence: number;
  refreshHintSeconds?: number;
  /** Certificates expired at this instant are rejected; defaults to the current time. */
  now?: Date;
}

/** @internal A verified intermediate, kept so repeat handshakes skip re-parsing and re-verifying it. */
export interface VerifiedIssuer {
  readonly intermediate: Certificate;
  readonly anchor: Certificate;
}

export class TrustBundle {
  readonly trustDomain: string;
  readonly sequence: number;
  readonly refreshHintSeconds: number;
  readonly certificates: readonly Certificate[];
  readonly #byFingerprint: ReadonlyMap<string, Certificate>;
  #fingerprint: string | undefined;
  readonly #issuerCache = new Map<string, VerifiedIssuer>();

  private constructor(trustDomain: string, sequence: number, refreshHintSeconds: number, certificates: readonly Certificate[]) {
    this.trustDomain = trustDomain;
    this.sequence = sequence;
    this.refreshHintSeconds = refreshHintSeconds;
    this.certificates = Object.freeze([...certificates]);
    this.#byFingerprint = new Map(certificates.map((c) => [c.fingerprint, c]));
  }

  /** Builds a bundle from certificates (parsed, PEM or DER), validating all of them. */
  static create(options: BundleCreateOptions): TrustBundle {
    const problems: Problem[] = [];
    checkHeader(options.trustDomain, options.sequence, options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS, problems);
    if (options.certificates.length > MAX_BUNDLE_CERTIFICATES) problems.push({ path: "certificates", message: `more than ${MAX_BUNDLE_CERTIFICATES} certificates` });
    const certs: (Certificate | undefined)[] = options.certificates.slice(0, MAX_BUNDLE_CERTIFICATES).map((c, i) => {
      if (typeof c === "string" || c instanceof Uint8Array) return parseInto(c, `certificates[${i}]`, problems);
      return c;
    });
    return TrustBundle.finish(options.trustDomain, options.sequence, options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS, certs, "certificates", options.now ?? new Date(), problems);
  }

  /** Parses PEM text (one or more CERTIFICATE blocks). */
  static fromPem(pem: string, options: Omit<BundleCreateOptions, "certificates">): TrustBundle {
    let blocks;
    try {
      blocks = decodePem(pem, { label: PEM_LABEL.certificate, kind: "bundle", maxBlocks: MAX_BUNDLE_CERTIFICATES });
    } catch (err) {
      if (err instanceof MalformedInputError) throw new BundleValidationError([{ path: "", message: err.message }], { cause: err });
      throw err;
    }
    return TrustBundle.create({ ...options, certificates: blocks.map((b) => b.der) });
  }

  /**
   * Parses a SPIFFE bundle (JWKS). Keys whose `use` is not `x509-svid` (e.g.
   * `jwt-svid`) are skipped, as the spec asks. Missing `spiffe_sequence` reads
   * as 0 and missing `spiffe_refresh_hint` as the default.
   */
  static fromJwks(document: unknown, options: { trustDomain: string; now?: Date }): TrustBundle {
    let json: unknown = document;
    if (typeof document === "string") {
      if (document.length > MAX_BUNDLE_JSON_CHARS) throw new BundleValidationError([{ path: "", message: `document exceeds ${MAX_BUNDLE_JSON_CHARS} characters` }]);
      try {
        json = JSON.parse(document);
      } catch (err) {
        throw new BundleValidationError([{ path: "", message: "not valid JSON" }], { cause: err });
      }
    }
    const parsed = JwksSchema.safeParse(json);
    if (!parsed.success) throw new BundleValidationError(zodProblems(parsed.error.issues));
    const doc = parsed.data;
    const problems: Problem[] = [];
    const sequence = doc.spiffe_sequence ?? 0;
    const refresh = doc.spiffe_refresh_hint ?? DEFAULT_REFRESH_HINT_SECONDS;
    checkHeader(options.trustDomain, sequence, refresh, problems);
    const certs: (Certificate | undefined)[] = [];
    const paths: string[] = [];
    doc.keys.forEach((key, i) => {
      if (key.use !== X509_SVID_USE) return;
      const path = `keys[${i}]`;
      paths.push(path);
      const x5c = key.x5c;
      if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== "string") {
        problems.push({ path: `${path}.x5c`, message: "must hold exactly one certificate" });
        certs.push(undefined);
        return;
      }
      let cert: Certificate | undefined;
      try {
        cert = parseCertificate(decodeBase64Strict(x5c[0], "bundle"));
      } catch (err) {
        if (!(err instanceof MalformedInputError)) throw err;
        problems.push({ path: `${path}.x5c[0]`, message: err.message });
      }
      if (cert) {
        try {
          void cert.publicKey; // the key must be usable (a point on its curve, a sane modulus)
          const jwk = cert.publicKeyInfo.jwk as Record<string, string>;
          const members = jwk.kty === "RSA" ? (["kty", "n", "e"] as const) : (["kty", "crv", "x", "y"] as const);
          for (const m of members) if (key[m] !== jwk[m]) problems.push({ path: `${path}.${m}`, message: `does not match the certificate's public key` });
        } catch (err) {
          if (!(err instanceof MalformedInputError)) throw err;
          problems.push({ path: `${path}.x5c[0]`, message: err.message });
        }
      }
      certs.push(cert);
    });
    if (paths.length > MAX_BUNDLE_CERTIFICATES) problems.push({ path: "keys", message: `more than ${MAX_BUNDLE_CERTIFICATES} x509-svid keys` });
    return TrustBundle.finish(options.trustDomain, sequence, refresh, certs, paths, options.now ?? new Date(), problems);
  }

  private static finish(
    trustDomain: string,
    sequence: number,
    refresh: number,
    certs: readonly (Certificate | undefined)[],
    paths: string | readonly string[],
    now: Date,
    problems: Problem[],
  ): TrustBundle {
    const pathOf = (i: number) => (typeof paths === "string" ? `${paths}[${i}]` : (paths[i] ?? `keys[${i}]`));
    if (certs.length === 0) problems.push({ path: typeof paths === "string" ? paths : "keys", message: "bundle holds no X.509 authority" });
    const firstIndex = new Map<string, number>();
    certs.forEach((cert, i) => {
      if (!cert) return;
      const path = pathOf(i);
      const seen = firstIndex.get(cert.fingerprint);
      if (seen !== undefined) problems.push({ path, message: `duplicates ${pathOf(seen)}` });
      else firstIndex.set(cert.fingerprint, i);
      if (!cert.isCa) problems.push({ path, message: "is not a CA certificate (basicConstraints cA is not true)" });
      else if (cert.keyUsage !== undefined && !cert.hasKeyUsage(KEY_USAGE.keyCertSign)) problems.push({ path, message: "CA key usage lacks keyCertSign" });
      if (cert.notAfter.getTime() <= now.getTime()) problems.push({ path, message: `expired at ${cert.notAfter.toISOString()}` });
      if (cert.unknownCriticalExtensions.length) problems.push({ path, message: `has unknown critical extensions ${cert.unknownCriticalExtensions.join(", ")}` });
    });
    if (problems.length) throw new BundleValidationError(problems);
    return new TrustBundle(trustDomain, sequence, refresh, certs as Certificate[]);
  }

  /** SHA-256 over the sorted SHA-256 fingerprints of the certificates (binary), hex. Independent of order and sequence. */
  get fingerprint(): string {
    if (this.#fingerprint === undefined) {
      const h = createHash("sha256");
      for (const fp of [...this.#byFingerprint.keys()].sort()) h.update(Buffer.from(fp, "hex"));
      this.#fingerprint = h.digest("hex");
    }
    return this.#fingerprint;
  }

  has(fingerprint: string): boolean {
    return this.#byFingerprint.has(fingerprint);
  }

  get(fingerprint: string): Certificate | undefined {
    return this.#byFingerprint.get(fingerprint);
  }

  /** The anchors whose subject is exactly `subjectDer` (candidates to have issued a certificate with that issuer). */
  anchorsNamed(issuerDer: Uint8Array): Certificate[] {
    return this.certificates.filter((c) => Buffer.compare(c.subjectDer, issuerDer) === 0);
  }

  /** @internal Verified intermediate→anchor links for this exact set of anchors; bounded. */
  verifiedIssuerCache(): { get(key: string): VerifiedIssuer | undefined; set(key: string, value: VerifiedIssuer): void } {
    const cache = this.#issuerCache;
    return {
      get: (key) => cache.get(key),
      set: (key, value) => {
        if (cache.size >= ISSUER_CACHE_ENTRIES) {
          const oldest = cache.keys().next();
          if (!oldest.done) cache.delete(oldest.value);
        }
        cache.set(key, value);
      },
    };
  }

  toJwks(): SpiffeBundleDocument {
    return {
      keys: this.certificates.map((c): BundleJwk => {
        const jwk = c.publicKeyInfo.jwk;
        const x5c = [Buffer.from(c.der).toString("base64")];
        return jwk.kty === "RSA"
          ? { use: X509_SVID_USE, kty: "RSA", n: jwk.n, e: jwk.e, x5c }
          : { use: X509_SVID_USE, kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y, x5c };
      }),
      spiffe_sequence: this.sequence,
      spiffe_refresh_hint: this.refreshHintSeconds,
    };
  }

  /** The SPIFFE bundle as JSON text. */
  toJson(): string {
    return JSON.stringify(this.toJwks());
  }

  toPem(): string {
    return this.certificates.map((c) => c.pem).join("");
  }

  /** PEM strings for Node's `tls` `ca` option. */
  caPems(): string[] {
    return this.certificates.map((c) => c.pem);
  }

  /** A new bundle holding both sets of authorities; sequence defaults to one past the larger of the two. */
  merge(other: TrustBundle, options: { sequence?: number; now?: Date } = {}): TrustBundle {
    if (other.trustDomain !== this.trustDomain) {
      throw new BundleValidationError([{ path: "trustDomain", message: `cannot merge bundles of ${this.trustDomain} and ${other.trustDomain}` }]);
    }
    const merged = [...this.certificates, ...other.certificates.filter((c) => !this.has(c.fingerprint))];
    return TrustBundle.create({
      trustDomain: this.trustDomain,
      certificates: merged,
      sequence: options.sequence ?? Math.max(this.sequence, other.sequence) + 1,
      refreshHintSeconds: Math.min(this.refreshHintSeconds, other.refreshHintSeconds),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  }

  /** What changes going from this bundle to `other`, by certificate fingerprint. */
  diff(other: TrustBundle): BundleDiff {
    return {
      added: other.certificates.filter((c) => !this.has(c.fingerprint)),
      removed: this.certificates.filter((c) => !other.has(c.fingerprint)),
    };
  }

  /** A new bundle with `certificates` instead, same trust domain and refresh hint. */
  with(options: { certificates: readonly (Certificate | string | Uint8Array)[]; sequence: number; now?: Date }): TrustBundle {
    return TrustBundle.create({ trustDomain: this.trustDomain, refreshHintSeconds: this.refreshHintSeconds, ...options });
  }
}

const JwkSchema = z.looseObject({
  use: z.string().max(64),
  kty: z.string().max(16),
  x5c: z.array(z.unknown()).max(16).optional(),
  crv: z.string().max(16).optional(),
  x: z.string().max(256).optional(),
  y: z.string().max(256).optional(),
  n: z.string().max(4096).optional(),
  e: z.string().max(16).optional(),
});

const JwksSchema = z.looseObject({
  keys: z.array(JwkSchema).max(MAX_BUNDLE_CERTIFICATES * 2),
  spiffe_sequence: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  spiffe_refresh_hint: z.number().int().min(0).max(7 * 24 * 3600).optional(),
});

function checkHeader(trustDomain: string, sequence: number, refresh: number, problems: Problem[]): void {
  if (!isValidTrustDomain(trustDomain)) problems.push({ path: "trustDomain", message: "not a valid trust domain" });
  if (!Number.isSafeInteger(sequence) || sequence < 0) problems.push({ path: "sequence", message: "must be a non-negative integer" });
  if (!Number.isSafeInteger(refresh) || refresh < 0) problems.push({ path: "refreshHintSeconds", message: "must be a non-negative integer" });
}

function parseInto(input: string | Uint8Array, path: string, problems: Problem[]): Certificate | undefined {
  try {
    return parseCertificate(input);
  } catch (err) {
    if (!(err instanceof MalformedInputError)) throw err;
    problems.push({ path, message: err.message });
    return undefined;
  }
}
