/**
 * trust/: the federation PKI. A shared root per trust domain, one
 * name-constrained intermediate per cluster, short-lived SPIFFE leaves, signed
 * trust bundles, root rotation, and the peer verification the gateway runs on
 * every mTLS connection. Other modules import only from here.
 */

// Errors.
export {
  TrustError,
  MalformedInputError,
  TrustOptionsError,
  InvalidSpiffeIdError,
  InvalidCsrError,
  IssuanceRefusedError,
  KeyMismatchError,
  PeerVerificationError,
  CertificateExpiredError,
  CertificateNotYetValidError,
  UnknownRootError,
  NameConstraintError,
  WrongTrustDomainError,
  ClusterRevokedError,
  InvalidChainError,
  BundleValidationError,
  BundleTamperedError,
  BundleUnknownSignerError,
  StaleBundleError,
  RevocationUnknownSignerError,
  StaleRevocationError,
  RotationRefusedError,
  IssuerUnavailableError,
  type ChainRole,
  type InputKind,
} from "./errors.ts";

// Time.
export { createSystemClock, MAX_TIMER_DELAY_MS, type Clock, type ClockWithTimers, type TimerHandle, type Timers } from "./clock.ts";

// Identities.
export {
  parseSpiffeId,
  parseClusterSpiffeId,
  gatewaySpiffeId,
  workloadSpiffeId,
  clusterPathPrefix,
  isValidTrustDomain,
  isValidClusterName,
  type SpiffeId,
  type ClusterSpiffeId,
} from "./spiffe-id.ts";

// Certificates, keys and encodings.
export { Certificate, parseCertificate, parseCertificatesPem, parseChain, type BasicConstraints, type NameAttribute, type NameConstraints } from "./certificate.ts";
export { decodePem, encodePem, PEM_LABEL, MAX_PEM_CHARS, MAX_DER_BYTES, type PemBlock } from "./pem.ts";
export { KEY_ALGORITHMS, DEFAULT_KEY_ALGORITHM, generateKeyPair, exportPrivateKeyPem, importPrivateKeyPem, type KeyAlgorithm, type CryptoKey, type CryptoKeyPair } from "./keys.ts";
export type { PublicKeyType } from "./public-key.ts";
export { parseCsr, createCsr, type CertificateRequest, type GeneratedCsr } from "./csr.ts";
export { CLUSTER_CA_UNIT } from "./cluster-scope.ts";

// Certificate authorities and leaves.
export {
  RootCa,
  DEFAULT_ROOT_VALIDITY_MS,
  DEFAULT_INTERMEDIATE_VALIDITY_MS,
  DEFAULT_REVOCATION_VALIDITY_MS,
  type IssueRevocationListOptions,
  type RootCaOptions,
  type LoadRootCaOptions,
  type IssueIntermediateOptions,
  type IssueIntermediateFromCsrOptions,
} from "./root-ca.ts";
export { IntermediateCa, type IssueLeafOptions, type LoadIntermediateCaOptions } from "./intermediate-ca.ts";
export { DEFAULT_LEAF_TTL_MS, MAX_LEAF_TTL_MS, type IssuedLeaf } from "./leaf.ts";
export { CERT_FILE, KEY_FILE, ISSUER_FILE, type CaMaterial, type KubernetesSecret } from "./ca-storage.ts";
export { RenewalScheduler, DEFAULT_RENEW_AT, type Renewable, type RenewalSchedulerOptions } from "./renewal-scheduler.ts";

// Trust bundles.
export { TrustBundle, DEFAULT_REFRESH_HINT_SECONDS, type BundleDiff, type BundleJwk, type SpiffeBundleDocument, type BundleCreateOptions } from "./trust-bundle.ts";
export {
  signBundle,
  acceptSignedBundle,
  parseSignedBundle,
  SIGNED_BUNDLE_KIND,
  type SignedBundle,
  type BundleSignature,
  type AcceptedBundle,
} from "./bundle-signature.ts";

// Revocation of clusters (root-signed CRLs).
export {
  RevocationList,
  Revocations,
  acceptRevocations,
  acceptRevocationsRecord,
  revocationsRecord,
  REVOCATIONS_KIND,
  MAX_CRL_ENTRIES,
  type AcceptRevocationsOptions,
  type AcceptedRevocations,
  type RevocationsRecord,
} from "./revocation-list.ts";

// Root rotation.
export { RootRotation, ROTATION_PHASES, type RotationPhase, type RotationState, type RootRotationOptions } from "./rotation.ts";

// Peer verification and TLS.
export { verifyPeer, type PeerIdentity, type VerifyPeerOptions } from "./verify-peer.ts";
export {
  bundleTlsOptions,
  mtlsServerOptions,
  mtlsClientOptions,
  serverIdentityChecker,
  chainFromPeerCertificate,
  verifyTlsPeer,
  admitTlsPeer,
  tlsIdentityOf,
  type TlsIdentity,
  type AdmitResult,
} from "./tls-peer.ts";
