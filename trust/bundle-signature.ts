import { verify as nodeVerify } from "node:crypto";
import { z } from "zod";
import {
  BundleTamperedError,
  BundleUnknownSignerError,
  BundleValidationError,
  MalformedInputError,
  StaleBundleError,
  TrustOptionsError,
  WrongTrustDomainError,
} from "./errors.ts";
import { zodProblems } from "./options.ts";
import type { PublicKeyType } from "./public-key.ts";
import type { RootCa } from "./root-ca.ts";
import { MAX_BUNDLE_JSON_CHARS, TrustBundle } from "./trust-bundle.ts";

/**
 * Signed trust bundles: how a new bundle travels over the bus (or any other
 * channel a mere writer could tamper with) and how a receiver decides to
 * install it.
 *
 * Chain of authority (see trust/README.md):
 * - Only root CA keys sign bundles. A signature counts only if it comes from a
 *   root in the bundle the receiver has *already installed*, unexpired.
 * - A receiver installs a new bundle only if at least one such signature
 *   verifies, no signature from a root it trusts fails, the trust domain
 *   matches, and the sequence number is higher than the installed one.
 * - Rotation: the bundle that adds a new root is signed by the old root (and
 *   the new one), so clusters that trust only the old root accept it. The
 *   bundle that retires the old root is signed by the new root and, again, the
 *   old one, so a cluster that missed the intermediate bundle still catches up.
 * - Someone who can write to the bus but holds no trusted root key cannot make
 *   a receiver install anything: a new signature is by an unknown key, an
 *   edited document breaks a known signature, a replay is stale.
 *
 * The first bundle a cluster installs comes out of band (its join material).
 */

export const SIGNED_BUNDLE_KIND = "fedgate.trust-bundle";
const PAYLOAD_PREFIX = "fedgate-trust-bundle/v1\n";

/** JOSE algorithm names (RFC 7518) for each root key type. Signatures are JWS-style: raw r||s for ECDSA. */
export const JOSE_ALG = { "ecdsa-p256": "ES256", "ecdsa-p384": "ES384", rsa: "RS256" } as const satisfies Record<PublicKeyType, string>;
type JoseAlg = (typeof JOSE_ALG)[PublicKeyType];
const HASH_OF: Record<JoseAlg, "sha256" | "sha384"> = { ES256: "sha256", ES384: "sha384", RS256: "sha256" };

export interface BundleSignature {
  /** SHA-256 fingerprint (hex) of the signing root's certificate. */
  signer: string;
  alg: JoseAlg;
  /** base64url signature over `bundleSignaturePayload(...)`. */
  sig: string;
}

/** The bus record: versioned, self-describing, the bundle carried as the exact JSON text that was signed. */
export interface SignedBundle {
  v: 1;
  kind: typeof SIGNED_BUNDLE_KIND;
  trustDomain: string;
  sequence: number;
  /** The SPIFFE bundle (JWKS) as JSON text; signatures cover these exact characters. */
  bundle: string;
  signatures: BundleSignature[];
}

/** Bytes a root signs: a fixed prefix (domain separation: never valid DER), the trust domain, the sequence, the bundle text. */
export function bundleSignaturePayload(trustDomain: string, sequence: number, bundleJson: string): Uint8Array {
  return new TextEncoder().encode(`${PAYLOAD_PREFIX}${trustDomain}\n${sequence}\n${bundleJson}`);
}

/** Signs `bundle` with every root in `signers` (all of the bundle's trust domain). */
export async function signBundle(bundle: TrustBundle, signers: readonly RootCa[]): Promise<SignedBundle> {
  const problems = signers.flatMap((s, i) =>
    s.trustDomain === bundle.trustDomain ? [] : [{ path: `signers[${i}]`, message: `belongs to ${s.trustDomain}, not ${bundle.trustDomain}` }],
  );
  if (signers.length === 0) problems.push({ path: "signers", message: "at least one root must sign" });
  if (problems.length) throw new TrustOptionsError("bundle signers", problems);
  const bundleJson = bundle.toJson();
  const signatures = await Promise.all(signers.map((s) => s.signBundleDocument({ trustDomain: bundle.trustDomain, sequence: bundle.sequence, bundleJson })));
  return { v: 1, kind: SIGNED_BUNDLE_KIND, trustDomain: bundle.trustDomain, sequence: bundle.sequence, bundle: bundleJson, signatures };
}

const SignedBundleSchema = z.strictObject({
  v: z.literal(1),
  kind: z.literal(SIGNED_BUNDLE_KIND),
  trustDomain: z.string().min(1).max(255),
  sequence: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  bundle: z.string().max(MAX_BUNDLE_JSON_CHARS),
  signatures: z
    .array(
      z.strictObject({
        signer: z.string().regex(/^[0-9a-f]{64}$/, "must be a SHA-256 fingerprint in lowercase hex"),
        alg: z.enum(["ES256", "ES384", "RS256"]),
        sig: z.string().max(2048).regex(/^[A-Za-z0-9_-]*$/, "must be base64url"),
      }),
    )
    .min(1)
    .max(16),
});

/** Parses a signed-bundle record (object or JSON text); garbage is a MalformedInputError. */
export function parseSignedBundle(input: unknown): SignedBundle {
  let json = input;
  if (typeof input === "string") {
    if (input.length > MAX_BUNDLE_JSON_CHARS * 2) throw new MalformedInputError("signed-bundle", "record too large");
    try {
      json = JSON.parse(input);
    } catch (err) {
      throw new MalformedInputError("signed-bundle", "not valid JSON", { cause: err });
    }
  }
  const parsed = SignedBundleSchema.safeParse(json);
  if (!parsed.success) {
    throw new MalformedInputError("signed-bundle", zodProblems(parsed.error.issues).map((p) => `${p.path}: ${p.message}`).join("; "));
  }
  return parsed.data;
}

export interface AcceptedBundle {
  readonly bundle: TrustBundle;
  /** False when the record restates the installed bundle (same sequence, same certificates). */
  readonly changed: boolean;
  /** Fingerprints of the trusted roots whose signatures verified. */
  readonly signedBy: readonly string[];
}

/**
 * Decides whether a receiver that has `current` installed may install the
 * signed bundle, per the chain of authority above. Returns the new bundle, or
 * throws BundleTamperedError, BundleUnknownSignerError, StaleBundleError,
 * WrongTrustDomainError, BundleValidationError or MalformedInputError.
 */
export function acceptSignedBundle(input: unknown, options: { current: TrustBundle; now?: Date }): AcceptedBundle {
  const now = options.now ?? new Date();
  const current = options.current;
  const signed = parseSignedBundle(input);
  if (signed.trustDomain !== current.trustDomain) throw new WrongTrustDomainError(current.trustDomain, signed.trustDomain);

  const payload = bundleSignaturePayload(signed.trustDomain, signed.sequence, signed.bundle);
  const verifiedBy: string[] = [];
  const failedBy: string[] = [];
  for (const s of signed.signatures) {
    const anchor = current.get(s.signer);
    if (!anchor || now < anchor.notBefore || now > anchor.notAfter) continue;
    const keyType = anchor.publicKeyInfo.type;
    const ok =
      JOSE_ALG[keyType] === s.alg &&
      nodeVerify(HASH_OF[s.alg], payload, keyType === "rsa" ? anchor.publicKey : { key: anchor.publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(s.sig, "base64url"));
    (ok ? verifiedBy : failedBy).push(s.signer);
  }
  if (failedBy.length) throw new BundleTamperedError(`signature of trusted root ${failedBy[0]} does not verify: the bundle was altered after signing`);
  if (verifiedBy.length === 0) {
    throw new BundleUnknownSignerError(`bundle ${signed.sequence} is not signed by any root of installed bundle ${current.sequence} (signers: ${signed.signatures.map((s) => s.signer.slice(0, 16)).join(", ")})`);
  }

  if (signed.sequence < current.sequence) throw new StaleBundleError(current.sequence, signed.sequence);
  const bundle = TrustBundle.fromJwks(signed.bundle, { trustDomain: signed.trustDomain, now });
  if (bundle.sequence !== signed.sequence) {
    throw new BundleValidationError([{ path: "bundle.spiffe_sequence", message: `is ${bundle.sequence}, record says ${signed.sequence}` }]);
  }
  if (signed.sequence === current.sequence) {
    if (bundle.fingerprint !== current.fingerprint) throw new StaleBundleError(current.sequence, signed.sequence);
    return { bundle: current, changed: false, signedBy: verifiedBy };
  }
  return { bundle, changed: true, signedBy: verifiedBy };
}
