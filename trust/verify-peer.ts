import { createHash } from "node:crypto";
import { parseCertificate, parseCertificatesPem, type Certificate } from "./certificate.ts";
import { clusterOfIntermediate, uriConstraintViolation } from "./cluster-scope.ts";
import {
  CertificateExpiredError,
  CertificateNotYetValidError,
  ClusterRevokedError,
  InvalidChainError,
  InvalidSpiffeIdError,
  NameConstraintError,
  UnknownRootError,
  WrongTrustDomainError,
  type ChainRole,
} from "./errors.ts";
import { KEY_USAGE, OID } from "./oids.ts";
import { isSignedBy } from "./signature.ts";
import { clusterPathPrefix, parseClusterSpiffeId, parseSpiffeId } from "./spiffe-id.ts";
import type { Revocations } from "./revocation-list.ts";
import type { TrustBundle } from "./trust-bundle.ts";

/** A presented chain longer than this is refused outright. */
export const MAX_CHAIN_LENGTH = 8;

export interface VerifyPeerOptions {
  /** The instant to check validity at; defaults to the current time. */
  now?: Date;
  /** The trust domain the peer must belong to; defaults to the bundle's. */
  trustDomain?: string;
  /** Clusters whose identities are refused even though their chains are valid. */
  revokedClusters?: Iterable<string>;
  /** Root-signed revocation lists; an identity under a listed intermediate is refused (`ClusterRevokedError`). */
  revocations?: Revocations;
}

/** Who the peer is, once its chain has been verified. */
export interface PeerIdentity {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly cluster: string;
  /** What follows `/cluster/<name>`, e.g. `/gateway`. */
  readonly workloadPath: string;
  readonly leaf: Certificate;
  readonly intermediate: Certificate;
  readonly root: Certificate;
  /** When the identity stops being valid: the earliest notAfter along the chain. */
  readonly notAfter: Date;
}

/**
 * Verifies a peer's certificate chain against a trust bundle and returns its
 * identity, or throws one typed PeerVerificationError (or a
 * MalformedInputError for bytes that are not certificates).
 *
 * `chain[0]` is the leaf; the issuing intermediate must be among the rest (a
 * trailing root is allowed and ignored). The path is always
 * leaf → cluster intermediate → root in `bundle`. Beyond signatures and
 * validity periods it enforces what OpenSSL cannot: the leaf's SPIFFE ID must
 * lie under `/cluster/<name>/` of the cluster its intermediate was issued for.
 *
 * Synchronous (Node's native verifier), so it runs inside TLS callbacks such as
 * `checkServerIdentity`. Verified intermediates are memoised per bundle.
 */
export function verifyPeer(chain: readonly (string | Uint8Array)[], bundle: TrustBundle, options: VerifyPeerOptions = {}): PeerIdentity {
  const now = options.now ?? new Date();
  const expectedTd = options.trustDomain ?? bundle.trustDomain;
  // Checked at run time too: JavaScript callers can pass anything.
  const input: unknown = chain;
  if (!Array.isArray(input) || chain.length === 0) throw new InvalidChainError("no certificate presented");
  const first = chain[0]!;
  const rest = chain.slice(1);
  const leafList = typeof first === "string" ? parseCertificatesPem(first) : [parseCertificate(first)];
  const leaf = leafList[0]!;
  const presented: (string | Uint8Array)[] = [...leafList.slice(1).map((c) => c.der), ...rest];
  if (presented.length + 1 > MAX_CHAIN_LENGTH) throw new InvalidChainError(`chain longer than ${MAX_CHAIN_LENGTH} certificates`);

  // 1. The leaf's identity, and its trust domain.
  if (leaf.isCa) throw new InvalidChainError("leaf is a CA certificate");
  if (leaf.uris.length !== 1) throw new InvalidChainError(`leaf must carry exactly one URI SAN (a SPIFFE ID), has ${leaf.uris.length}`);
  const uri = leaf.uris[0]!;
  let td: string;
  try {
    td = parseSpiffeId(uri).trustDomain;
  } catch (err) {
    if (err instanceof InvalidSpiffeIdError) throw new InvalidChainError(`leaf URI SAN is not a SPIFFE ID: ${err.message}`);
    throw err;
  }
  if (td !== expectedTd) throw new WrongTrustDomainError(expectedTd, td);
  if (bundle.trustDomain !== expectedTd) throw new WrongTrustDomainError(expectedTd, `${bundle.trustDomain} (the bundle's)`);

  // 2. The path: leaf -> presented intermediate -> bundle anchor, by signature.
  const { intermediate, anchor } = findIssuer(leaf, presented, bundle);
  if (!intermediate.isCa || (intermediate.keyUsage !== undefined && !intermediate.hasKeyUsage(KEY_USAGE.keyCertSign))) {
    throw new InvalidChainError("issuer of the leaf is not a CA allowed to sign certificates");
  }
  if (anchor.basicConstraints?.pathLen === 0) throw new InvalidChainError("root forbids intermediates (pathLen 0)");
  if (leaf.keyUsage !== undefined && !leaf.hasKeyUsage(KEY_USAGE.digitalSignature)) throw new InvalidChainError("leaf key usage lacks digitalSignature");
  if (leaf.extKeyUsage !== undefined && !leaf.extKeyUsage.some((u) => u === OID.serverAuth || u === OID.clientAuth)) {
    throw new InvalidChainError("leaf extended key usage allows neither serverAuth nor clientAuth");
  }
  for (const [cert, role] of [[leaf, "leaf"], [intermediate, "intermediate"]] as const) {
    if (cert.unknownCriticalExtensions.length) throw new InvalidChainError(`${role} has unknown critical extensions ${cert.unknownCriticalExtensions.join(", ")}`);
  }

  // 3. Validity periods.
  checkValidity(leaf, "leaf", now);
  checkValidity(intermediate, "intermediate", now);
  checkValidity(anchor, "root", now);

  // 4. Name constraints: RFC 5280 URI host constraints (what OpenSSL checks), then the cluster path scope (what it cannot).
  for (const [ca, role] of [[intermediate, "intermediate"], [anchor, "root"]] as const) {
    if (!ca.nameConstraints) continue;
    const violation = uriConstraintViolation(uri, ca.nameConstraints);
    if (violation) throw new NameConstraintError(`${role} name constraints: ${violation}`);
  }
  if (!intermediate.nameConstraints) throw new NameConstraintError("issuing intermediate carries no name constraints");
  const cluster = clusterOfIntermediate(intermediate, expectedTd);
  let id;
  try {
    id = parseClusterSpiffeId(uri);
  } catch (err) {
    if (err instanceof InvalidSpiffeIdError) throw new NameConstraintError(`${uri} is not under ${clusterPathPrefix(cluster)} of its issuing cluster`);
    throw err;
  }
  if (id.cluster !== cluster) {
    throw new NameConstraintError(`${uri} claims cluster ${id.cluster}, but its intermediate was issued for cluster ${cluster} (${clusterPathPrefix(cluster)})`);
  }

  // 5. Revocation of whole clusters.
  if (options.revocations?.isRevoked(intermediate, anchor)) throw new ClusterRevokedError(cluster);
  if (options.revokedClusters && setOf(options.revokedClusters).has(cluster)) throw new ClusterRevokedError(cluster);

  const notAfter = new Date(Math.min(leaf.notAfter.getTime(), intermediate.notAfter.getTime(), anchor.notAfter.getTime()));
  return { spiffeId: uri, trustDomain: td, cluster, workloadPath: id.workloadPath, leaf, intermediate, root: anchor, notAfter };
}

function setOf(values: Iterable<string>): ReadonlySet<string> {
  return values instanceof Set ? (values as ReadonlySet<string>) : new Set(values);
}

function checkValidity(cert: Certificate, role: ChainRole, now: Date): void {
  if (now.getTime() < cert.notBefore.getTime()) throw new CertificateNotYetValidError(role, cert.notBefore, now);
  if (now.getTime() > cert.notAfter.getTime()) throw new CertificateExpiredError(role, cert.notAfter, now);
}

function derOf(item: string | Uint8Array): Uint8Array[] {
  return typeof item === "string" ? parseCertificatesPem(item).map((c) => c.der) : [item];
}

/** Finds the presented intermediate that signed `leaf` and the bundle anchor that signed it. */
function findIssuer(leaf: Certificate, presented: readonly (string | Uint8Array)[], bundle: TrustBundle): { intermediate: Certificate; anchor: Certificate } {
  const cache = bundle.verifiedIssuerCache();
  let sawIssuerName = false;
  let unknownRoot: string | undefined;
  for (const der of presented.flatMap(derOf)) {
    const key = createHash("sha256").update(der).digest("base64");
    let verified = cache.get(key);
    let candidate = verified?.intermediate;
    if (!candidate) {
      candidate = parseCertificate(der);
      if (bundle.has(candidate.fingerprint)) continue; // a trailing root, sent along by the peer
    }
    if (Buffer.compare(candidate.subjectDer, leaf.issuerDer) !== 0) continue;
    sawIssuerName = true;
    if (!isSignedBy(leaf, candidate.publicKey)) continue;
    if (!verified) {
      const anchor = bundle.anchorsNamed(candidate.issuerDer).find((a) => isSignedBy(candidate, a.publicKey));
      if (!anchor) {
        unknownRoot = `the leaf's issuer (${describe(candidate)}) does not chain to any root of the ${bundle.trustDomain} bundle`;
        continue;
      }
      verified = { intermediate: candidate, anchor };
      cache.set(key, verified);
    }
    return verified;
  }
  if (unknownRoot) throw new UnknownRootError(unknownRoot);
  if (bundle.anchorsNamed(leaf.issuerDer).some((a) => isSignedBy(leaf, a.publicKey))) {
    throw new InvalidChainError("leaf was issued directly by a root; fedgate leaves come from a cluster intermediate");
  }
  if (sawIssuerName) throw new InvalidChainError("leaf signature does not verify with the presented intermediate");
  throw new UnknownRootError("the leaf's issuer was not presented and is not in the bundle");
}

function describe(cert: Certificate): string {
  return cert.subject.map((a) => `${a.oid === OID.commonName ? "CN" : a.oid === OID.organizationName ? "O" : a.oid === OID.organizationalUnitName ? "OU" : a.oid}=${a.value}`).join(", ");
}
