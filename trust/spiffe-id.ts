import { InvalidSpiffeIdError } from "./errors.ts";

/**
 * SPIFFE IDs (SPIFFE ID spec §2) and the shape fedgate gives them:
 *
 *   spiffe://<trust-domain>/cluster/<cluster>/<rest...>
 *
 * e.g. `spiffe://example.org/cluster/a/gateway` or
 * `spiffe://example.org/cluster/a/ns/shop/sa/cart`. Everything a cluster's
 * intermediate may certify sits under `/cluster/<cluster>/`.
 */

export const SPIFFE_SCHEME = "spiffe://";
/** The SPIFFE spec caps a whole ID at 2048 bytes and a trust domain at 255 characters. */
export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_CHARS = 255;
/** Cluster names are RFC 1123 subdomains under 128 characters (KEP-2149 `cluster.clusterset.k8s.io`). */
export const MAX_CLUSTER_NAME_CHARS = 127;

const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
const CLUSTER_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const GATEWAY_SEGMENT = "gateway";

export interface SpiffeId {
  /** The whole ID, as it appears in a URI SAN. */
  readonly uri: string;
  readonly trustDomain: string;
  /** `/cluster/a/gateway`; empty for a trust-domain ID. */
  readonly path: string;
  readonly segments: readonly string[];
}

/** A SPIFFE ID of fedgate's shape, with the cluster it belongs to. */
export interface ClusterSpiffeId extends SpiffeId {
  readonly cluster: string;
  /** What follows `/cluster/<name>`, e.g. `/gateway` or `/ns/shop/sa/cart`. */
  readonly workloadPath: string;
}

export function isValidTrustDomain(td: string): boolean {
  return typeof td === "string" && td.length > 0 && td.length <= MAX_TRUST_DOMAIN_CHARS && TRUST_DOMAIN_RE.test(td);
}

export function isValidClusterName(name: string): boolean {
  return typeof name === "string" && name.length > 0 && name.length <= MAX_CLUSTER_NAME_CHARS && CLUSTER_RE.test(name);
}

/** Parses any SPIFFE ID, strictly per the spec: lowercase scheme and trust domain, no port, userinfo, query, fragment, empty, `.` or `..` segments, nor a trailing slash. */
export function parseSpiffeId(uri: string): SpiffeId {
  if (typeof uri !== "string") throw new InvalidSpiffeIdError(String(uri), "not a string");
  if (Buffer.byteLength(uri) > MAX_SPIFFE_ID_BYTES) throw new InvalidSpiffeIdError(uri, `longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
  if (!uri.startsWith(SPIFFE_SCHEME)) throw new InvalidSpiffeIdError(uri, "scheme must be spiffe://");
  const rest = uri.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf("/");
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? "" : rest.slice(slash);
  if (!trustDomain) throw new InvalidSpiffeIdError(uri, "missing trust domain");
  if (!isValidTrustDomain(trustDomain)) throw new InvalidSpiffeIdError(uri, "trust domain may hold only a-z, 0-9, '.', '-', '_' (at most 255)");
  const segments = path ? path.slice(1).split("/") : [];
  for (const seg of segments) {
    if (seg === "") throw new InvalidSpiffeIdError(uri, "empty path segment or trailing slash");
    if (seg === "." || seg === "..") throw new InvalidSpiffeIdError(uri, "dot segments are not allowed");
    if (!SEGMENT_RE.test(seg)) throw new InvalidSpiffeIdError(uri, "path segments may hold only A-Z, a-z, 0-9, '.', '-', '_'");
  }
  return { uri, trustDomain, path, segments };
}

/** Parses a SPIFFE ID that must have fedgate's `/cluster/<name>/<rest>` shape. */
export function parseClusterSpiffeId(uri: string): ClusterSpiffeId {
  const id = parseSpiffeId(uri);
  const [first, cluster, ...rest] = id.segments;
  if (first !== "cluster" || cluster === undefined || rest.length === 0) {
    throw new InvalidSpiffeIdError(uri, "fedgate identities have the shape spiffe://<trust-domain>/cluster/<name>/<workload...>");
  }
  if (!isValidClusterName(cluster)) throw new InvalidSpiffeIdError(uri, "cluster name must be an RFC 1123 subdomain under 128 characters");
  return { ...id, cluster, workloadPath: "/" + rest.join("/") };
}

/** The path prefix every identity of `cluster` starts with: `/cluster/<name>/`. */
export function clusterPathPrefix(cluster: string): string {
  return `/cluster/${cluster}/`;
}

/** The SPIFFE ID of a cluster's east-west gateway. */
export function gatewaySpiffeId(trustDomain: string, cluster: string): string {
  return parseClusterSpiffeId(`${SPIFFE_SCHEME}${trustDomain}${clusterPathPrefix(cluster)}${GATEWAY_SEGMENT}`).uri;
}

/** The SPIFFE ID of a workload (a Kubernetes service account) of a cluster. */
export function workloadSpiffeId(trustDomain: string, cluster: string, namespace: string, serviceAccount: string): string {
  const candidate = `${SPIFFE_SCHEME}${trustDomain}${clusterPathPrefix(cluster)}ns/${namespace}/sa/${serviceAccount}`;
  if (!DNS_LABEL_RE.test(namespace) || namespace.length > 63) throw new InvalidSpiffeIdError(candidate, "namespace must be a DNS label");
  if (!CLUSTER_RE.test(serviceAccount) || serviceAccount.length > 253) throw new InvalidSpiffeIdError(candidate, "service account must be a DNS subdomain");
  return parseClusterSpiffeId(`${SPIFFE_SCHEME}${trustDomain}${clusterPathPrefix(cluster)}ns/${namespace}/sa/${serviceAccount}`).uri;
}
