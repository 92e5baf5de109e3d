import { ValidationError, type Problem } from "../../common/index.ts";
import { dnsLabelProblems } from "./dns-label.ts";
import { REVOCATIONS_KEY, TRUST_BUNDLE_KEY, kvStream, kvSubject, type BucketNames } from "./buckets.ts";

/**
 * Who may do what on the bus. The server enforces these lists from each
 * user's JWT; whatever is not listed is refused. They are the whole of the
 * least-privilege scheme, so they are exact: each JetStream API subject is one
 * that `@nats-io/kv` v3 was seen to use against nats-server 2.12 (see
 * test/integration/federation-bus-credentials.test.ts).
 *
 * Subject permissions cannot see headers. What a header could do on a stream a
 * cluster may write to is closed by the stream configuration instead (see
 * `bus-buckets.ts`: no roll-ups, no schedules).
 */
export interface BusUserPolicy {
  /** The JWT's name. */
  readonly name: string;
  /**
   * The prefix this user's client must give `connect({ inboxPrefix })`: it may
   * subscribe only below it, so it never sees another user's replies (which
   * carry consumer names it could otherwise delete).
   */
  readonly inboxPrefix: string;
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

/** A cluster name is not an RFC 1123 DNS label, so it would not be one literal subject token. */
export class BusClusterNameError extends ValidationError {
  readonly input: string;
  constructor(input: string, problems: readonly Problem[]) {
    super("FEDGATE_BUS_BAD_CLUSTER_NAME", `invalid cluster name ${JSON.stringify(input.slice(0, 100))}`, problems);
    this.input = input;
  }
}

/** Options of the bus (ClusterSet name, bucket names, replicas, history) failed validation. */
export class BusOptionsError extends ValidationError {
  constructor(subject: string, problems: readonly Problem[]) {
    super("FEDGATE_BUS_INVALID_OPTIONS", subject, problems);
  }
}

// What `@nats-io/kv` accepts as a bucket name: no `.`, `*` or `>`, so a bucket is one literal token.
const BUCKET_NAME = /^[-\w]+$/;
// `_` cannot occur in a DNS label, so no cluster's inbox can be the admin's.
const ADMIN_INBOX_PREFIX = "_INBOX._admin";

/** Throws `BusClusterNameError` unless `cluster` is an RFC 1123 DNS label. */
export function assertClusterName(cluster: string): void {
  const problems = dnsLabelProblems(cluster);
  if (problems.length > 0) throw new BusClusterNameError(cluster, problems);
}

/** Every problem with a set of bucket names; empty when each is one literal subject token and all differ. */
export function bucketNameProblems(buckets: BucketNames, path = "buckets"): Problem[] {
  const problems: Problem[] = [];
  for (const role of ["clusters", "exports", "trust"] as const) {
    if (!BUCKET_NAME.test(buckets[role])) problems.push({ path: `${path}.${role}`, message: "may contain only letters, digits, '-' and '_'" });
  }
  if (new Set([buckets.clusters, buckets.exports, buckets.trust]).size !== 3) problems.push({ path, message: "must be three distinct names" });
  return problems;
}

function assertBucketNames(buckets: BucketNames): void {
  const problems = bucketNameProblems(buckets);
  if (problems.length > 0) throw new BusOptionsError("bus buckets", problems);
}

/** Reading a bucket: JetStream API requests confined to its stream, and flow-control replies. */
function readSubjects(bucket: string): string[] {
  const stream = kvStream(bucket);
  return [
    // watch(), keys() and history() create an ordered push consumer by name, with or without a filter token ...
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    // ... keys() and history() read its pending count ...
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    // ... and an ordered consumer deletes its old incarnation when it resets (gap, missed heartbeats).
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    // get() on a bucket opened without allow_direct goes through the stream leader ...
    `$JS.API.STREAM.MSG.GET.${stream}`,
    // ... with allow_direct to any replica: by revision, or last-by-subject with the subject appended.
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    // A push consumer asks for flow-control (and stall) acknowledgements on $JS.FC.<stream>.<consumer>.<id>.
    `$JS.FC.${stream}.>`,
  ];
}

function allBuckets(buckets: BucketNames): string[] {
  return [buckets.clusters, buckets.exports, buckets.trust];
}

/** The inbox prefix of cluster `cluster`'s connections. */
export function clusterInboxPrefix(cluster: string): string {
  assertClusterName(cluster);
  return `_INBOX.${cluster}`;
}

/**
 * Cluster `cluster` may write only its own keys in the `clusters` and
 * `exports` buckets (put, delete, TTL'd publishes), and read every bucket.
 * It cannot write `trust` or other clusters' keys, create, change, purge or
 * delete streams, delete messages, or read other users' inboxes.
 * Throws `BusClusterNameError` for a name that is not a DNS label.
 */
export function clusterPolicy(options: { cluster: string; buckets: BucketNames }): BusUserPolicy {
  const { cluster, buckets } = options;
  const inboxPrefix = clusterInboxPrefix(cluster);
  assertBucketNames(buckets);
  return Object.freeze({
    name: `cluster/${cluster}`,
    inboxPrefix,
    publish: Object.freeze([
      kvSubject(buckets.clusters, `${cluster}.>`),
      kvSubject(buckets.exports, `${cluster}.>`),
      ...allBuckets(buckets).flatMap(readSubjects),
    ]),
    subscribe: Object.freeze([`${inboxPrefix}.>`]),
  });
}

/**
 * The ClusterSet admin may create and update the three KV streams, write the
 * trust bundle and the revocation lists, and read every bucket. It writes no cluster's keys, and cannot
 * purge or delete streams.
 */
export function adminPolicy(buckets: BucketNames): BusUserPolicy {
  assertBucketNames(buckets);
  return Object.freeze({
    name: "admin",
    inboxPrefix: ADMIN_INBOX_PREFIX,
    publish: Object.freeze([
      // jetstreamManager() first checks that JetStream is enabled for the account.
      "$JS.API.INFO",
      ...allBuckets(buckets)
        .map(kvStream)
        .flatMap((stream) => [`$JS.API.STREAM.INFO.${stream}`, `$JS.API.STREAM.CREATE.${stream}`, `$JS.API.STREAM.UPDATE.${stream}`]),
      kvSubject(buckets.trust, TRUST_BUNDLE_KEY),
      kvSubject(buckets.trust, REVOCATIONS_KEY),
      ...allBuckets(buckets).flatMap(readSubjects),
    ]),
    subscribe: Object.freeze([`${ADMIN_INBOX_PREFIX}.>`]),
  });
}
