/**
 * The JetStream KV layout shared by every cluster of a ClusterSet.
 *
 * | bucket    | key                               | written by          |
 * |-----------|-----------------------------------|---------------------|
 * | clusters  | `<cluster>.info` (registration)   | that cluster        |
 * | clusters  | `<cluster>.lease` (liveness, TTL) | that cluster        |
 * | exports   | `<cluster>.<namespace>.<service>` | that cluster        |
 * | trust     | `bundle`                          | the ClusterSet admin|
 * | trust     | `revocations` (root-signed CRLs)  | the ClusterSet admin|
 *
 * Cluster, namespace and service names are RFC 1123 DNS labels, so they never
 * contain the `.` that separates subject tokens; that is what lets the server
 * confine a cluster's credentials to `<bucket>.<cluster>.>`.
 */
export interface BucketNames {
  clusters: string;
  exports: string;
  trust: string;
}

export const DEFAULT_BUCKETS: Readonly<BucketNames> = Object.freeze({
  clusters: "fedgate-clusters",
  exports: "fedgate-exports",
  trust: "fedgate-trust",
});

export const TRUST_BUNDLE_KEY = "bundle";
export const REVOCATIONS_KEY = "revocations";

/**
 * Delete and purge markers, and expired leases, are removed by the server this
 * long after they are written, so withdrawn keys leave no residue.
 */
export const MARKER_TTL_MS = 60_000;

/** The NATS subject a KV key is stored under; permissions are granted on these. */
export function kvSubject(bucket: string, key: string): string {
  return `$KV.${bucket}.${key}`;
}

/** The JetStream stream that backs a KV bucket. */
export function kvStream(bucket: string): string {
  return `KV_${bucket}`;
}
