import { FedgateError, ValidationError, type Problem } from "../common/index.ts";

/**
 * Typed errors of the trust module. Callers branch on the class (or the stable
 * `code`), never on message text. Every error a trust parser or verifier throws
 * is one of these, or a `ValidationError` subclass that lists every problem.
 */

/** Base class of every trust error; `instanceof TrustError` catches them all. */
export class TrustError extends FedgateError {}

/** What kind of input a parser was reading when it hit garbage. */
export type InputKind = "pem" | "der" | "certificate" | "csr" | "private-key" | "bundle" | "signed-bundle" | "crl" | "revocations" | "secret" | "files" | "state";

/** Input could not be parsed at all: truncated, mutated, oversized or of the wrong type. */
export class MalformedInputError extends TrustError {
  readonly kind: InputKind;
  constructor(kind: InputKind, message: string, options: { cause?: unknown } = {}) {
    super("FEDGATE_TRUST_MALFORMED", `malformed ${kind}: ${message}`, options);
    this.kind = kind;
  }
}

/** Options passed to a trust constructor or factory failed validation. */
export class TrustOptionsError extends ValidationError {
  constructor(subject: string, problems: readonly Problem[]) {
    super("FEDGATE_TRUST_INVALID_OPTIONS", subject, problems);
  }
}

/** A string is not a SPIFFE ID of the shape fedgate issues. */
export class InvalidSpiffeIdError extends TrustError {
  readonly input: string;
  constructor(input: string, reason: string) {
    super("FEDGATE_TRUST_INVALID_SPIFFE_ID", `invalid SPIFFE ID ${JSON.stringify(input.slice(0, 200))}: ${reason}`);
    this.input = input;
  }
}

/** A CSR is well-formed DER but cannot be trusted: its self-signature does not verify, or its signature algorithm is refused. */
export class InvalidCsrError extends TrustError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("FEDGATE_TRUST_INVALID_CSR", message, options);
  }
}

/** A CA refused to issue: the identity lies outside its scope, or the key/cert pair is inconsistent. */
export class IssuanceRefusedError extends TrustError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("FEDGATE_TRUST_ISSUANCE_REFUSED", message, options);
  }
}

/** A private key does not belong to the certificate it was loaded with. */
export class KeyMismatchError extends TrustError {
  constructor(message: string) {
    super("FEDGATE_TRUST_KEY_MISMATCH", message);
  }
}

// ---------------------------------------------------------------------------
// Peer verification. One class per outcome a gateway may want to branch on.
// ---------------------------------------------------------------------------

/** Which certificate of a chain an error is about. */
export type ChainRole = "leaf" | "intermediate" | "root";

/** Base of every reason `verifyPeer` rejects a chain. */
export class PeerVerificationError extends TrustError {}

export class CertificateExpiredError extends PeerVerificationError {
  readonly role: ChainRole;
  readonly notAfter: Date;
  constructor(role: ChainRole, notAfter: Date, now: Date) {
    super("FEDGATE_TRUST_EXPIRED", `${role} certificate expired at ${notAfter.toISOString()} (now ${now.toISOString()})`);
    this.role = role;
    this.notAfter = notAfter;
  }
}

export class CertificateNotYetValidError extends PeerVerificationError {
  readonly role: ChainRole;
  readonly notBefore: Date;
  constructor(role: ChainRole, notBefore: Date, now: Date) {
    super("FEDGATE_TRUST_NOT_YET_VALID", `${role} certificate is not valid before ${notBefore.toISOString()} (now ${now.toISOString()})`);
    this.role = role;
    this.notBefore = notBefore;
  }
}

/** The chain does not end in a certificate of the trust bundle. */
export class UnknownRootError extends PeerVerificationError {
  constructor(message: string) {
    super("FEDGATE_TRUST_UNKNOWN_ROOT", message);
  }
}

/** The leaf's identity lies outside what its issuing intermediate may certify. */
export class NameConstraintError extends PeerVerificationError {
  constructor(message: string) {
    super("FEDGATE_TRUST_NAME_CONSTRAINT", message);
  }
}

/** The leaf belongs to another trust domain than the one expected. */
export class WrongTrustDomainError extends PeerVerificationError {
  readonly expected: string;
  readonly actual: string;
  constructor(expected: string, actual: string) {
    super("FEDGATE_TRUST_WRONG_TRUST_DOMAIN", `expected trust domain ${expected}, got ${actual}`);
    this.expected = expected;
    this.actual = actual;
  }
}

/** The peer's cluster has been revoked from the ClusterSet. */
export class ClusterRevokedError extends PeerVerificationError {
  readonly cluster: string;
  constructor(cluster: string) {
    super("FEDGATE_TRUST_CLUSTER_REVOKED", `cluster ${cluster} is revoked`);
    this.cluster = cluster;
  }
}

/** The chain is structurally wrong: bad signature, missing issuer, a CA leaf, a leaf without a SPIFFE ID, ... */
export class InvalidChainError extends PeerVerificationError {
  constructor(message: string) {
    super("FEDGATE_TRUST_INVALID_CHAIN", message);
  }
}

// ---------------------------------------------------------------------------
// Bundles.
// ---------------------------------------------------------------------------

/** A trust bundle document or certificate set is invalid; `problems` lists every problem found. */
export class BundleValidationError extends ValidationError {
  constructor(problems: readonly Problem[], options: { cause?: unknown } = {}) {
    super("FEDGATE_TRUST_INVALID_BUNDLE", "invalid trust bundle", problems, options);
  }
}

/** A signature by a root the receiver trusts does not verify: the bundle was altered after signing. */
export class BundleTamperedError extends TrustError {
  constructor(message: string) {
    super("FEDGATE_TRUST_BUNDLE_TAMPERED", message);
  }
}

/** No signature on the bundle comes from a root the receiver already trusts. */
export class BundleUnknownSignerError extends TrustError {
  constructor(message: string) {
    super("FEDGATE_TRUST_BUNDLE_UNKNOWN_SIGNER", message);
  }
}

/** The bundle's sequence number is not newer than the one already installed (a replay or a stale writer). */
export class StaleBundleError extends TrustError {
  readonly current: number;
  readonly offered: number;
  constructor(current: number, offered: number) {
    super("FEDGATE_TRUST_BUNDLE_STALE", `bundle sequence ${offered} is not newer than installed sequence ${current}`);
    this.current = current;
    this.offered = offered;
  }
}

// ---------------------------------------------------------------------------
// Revocation lists.
// ---------------------------------------------------------------------------

/** A revocation list is not signed by a root of the receiver's bundle (a forgery, or another trust domain's). */
export class RevocationUnknownSignerError extends TrustError {
  constructor(message: string) {
    super("FEDGATE_TRUST_REVOCATION_UNKNOWN_SIGNER", message);
  }
}

/** A revocation list is older than the one installed for its root, or past its nextUpdate (a replay or a stale writer). */
export class StaleRevocationError extends TrustError {
  constructor(message: string) {
    super("FEDGATE_TRUST_REVOCATION_STALE", message);
  }
}

// ---------------------------------------------------------------------------
// Root rotation.
// ---------------------------------------------------------------------------

/** A rotation step was refused; `blockers` lists everything that stands in the way. */
export class RotationRefusedError extends TrustError {
  readonly step: string;
  readonly phase: string;
  readonly blockers: readonly Problem[];
  constructor(step: string, phase: string, blockers: readonly Problem[]) {
    super(
      "FEDGATE_TRUST_ROTATION_REFUSED",
      `rotation step ${step} refused in phase ${phase}: ${blockers.map((b) => (b.path ? `${b.path}: ${b.message}` : b.message)).join("; ")}`,
    );
    this.step = step;
    this.phase = phase;
    this.blockers = blockers;
  }
}

// ---------------------------------------------------------------------------
// Renewal.
// ---------------------------------------------------------------------------

/** The issuer could not be reached or failed; the renewal scheduler retries these. */
export class IssuerUnavailableError extends TrustError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("FEDGATE_TRUST_ISSUER_UNAVAILABLE", message, { ...options, retryable: true });
  }
}
