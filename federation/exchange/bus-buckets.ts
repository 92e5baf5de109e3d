import { DiscardPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { FedgateError, type Problem } from "../../common/index.ts";
import { DEFAULT_BUCKETS, kvStream, type BucketNames } from "./buckets.ts";
import { BusOptionsError, bucketNameProblems } from "./bus-permissions.ts";

/**
 * The streams behind the KV buckets, configured so that what a cluster may
 * publish cannot reach beyond its own keys.
 *
 * Subject permissions cannot inspect headers, and a header can act on the
 * whole stream: with `allow_rollup_hdrs`, one message carrying
 * `Nats-Rollup: all` to a cluster's own key purges every other key of the
 * bucket. `@nats-io/kv` always turns roll-ups on, and so does a subject
 * delete-marker TTL (the server forces it), so fedgate creates the streams
 * itself: roll-ups off, no delete markers, no message schedules (their target
 * header names another subject). The price is that `kv.purge()` is refused;
 * withdraw a key with `kv.delete()`, or a delete marker carrying `Nats-TTL`
 * where TTLs are allowed, and keep `history` at 1 so nothing else remains.
 */

export interface BucketSettings {
  readonly buckets: BucketNames;
  /** 1 for development, 3 in production. */
  readonly replicas: number;
  /** Revisions kept per key; 1 leaves no residue once a key's delete marker expires. */
  readonly history: number;
}

/** Creating or updating a bucket's stream failed; retryable unless the server rejected the request itself. */
export class BusBucketsError extends FedgateError {
  /** The stream being created or updated; undefined when JetStream itself was unreachable or off. */
  readonly stream: string | undefined;
  constructor(stream: string | undefined, cause: unknown) {
    const what = stream === undefined ? "could not reach JetStream for the bus account" : `could not ensure stream ${stream}`;
    super("FEDGATE_BUS_BUCKETS_FAILED", what, { cause, retryable: !(cause instanceof JetStreamApiError) });
    this.stream = stream;
  }
}

type BucketStreamConfig = Partial<StreamConfig> & Pick<StreamConfig, "name" | "subjects">;

const MAX_HISTORY = 64;
const MAX_REPLICAS = 5;

/** Every problem with bucket settings, collected. */
export function bucketSettingsProblems(settings: BucketSettings): Problem[] {
  const problems = bucketNameProblems(settings.buckets);
  if (!Number.isInteger(settings.replicas) || settings.replicas < 1 || settings.replicas > MAX_REPLICAS) {
    problems.push({ path: "replicas", message: `must be an integer from 1 to ${MAX_REPLICAS}` });
  }
  if (!Number.isInteger(settings.history) || settings.history < 1 || settings.history > MAX_HISTORY) {
    problems.push({ path: "history", message: `must be an integer from 1 to ${MAX_HISTORY}` });
  }
  return problems;
}

/**
 * The stream configuration of each bucket, in the layout `@nats-io/kv` reads
 * (`Kvm.open()` binds to it), minus everything a header could abuse.
 */
export function bucketStreamConfigs(settings: BucketSettings): BucketStreamConfig[] {
  const problems = bucketSettingsProblems(settings);
  if (problems.length > 0) throw new BusOptionsError("bus bucket settings", problems);
  const { buckets, replicas, history } = settings;
  const config = (bucket: string, allowMsgTtl: boolean): BucketStreamConfig => ({
    name: kvStream(bucket),
    subjects: [`$KV.${bucket}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: replicas,
    max_msgs_per_subject: history,
    discard: DiscardPolicy.New,
    // Readers may open a bucket with { allow_direct: true } and read from any replica.
    allow_direct: true,
    allow_rollup_hdrs: false,
    // Clusters hold no permission for the message-delete API; this closes it for everyone, for good.
    deny_delete: true,
    deny_purge: false,
    // Leases (clusters) and withdrawal markers (both) may expire on their own.
    allow_msg_ttl: allowMsgTtl,
    subject_delete_marker_ttl: 0,
    allow_msg_schedules: false,
  });
  return [config(buckets.clusters, true), config(buckets.exports, true), config(buckets.trust, false)];
}

/** The settings an existing stream must match; anything else is left as the operator set it. */
const RECONCILED = ["num_replicas", "max_msgs_per_subject", "allow_direct", "allow_rollup_hdrs", "deny_delete", "allow_msg_ttl", "subject_delete_marker_ttl"] as const;

/**
 * Creates the three bucket streams, or updates an existing one whose
 * replicas, history or header policy differ. Needs the admin credentials.
 */
export async function ensureBuckets(nc: NatsConnection, options: Partial<BucketSettings> = {}): Promise<void> {
  const configs = bucketStreamConfigs({ buckets: options.buckets ?? DEFAULT_BUCKETS, replicas: options.replicas ?? 1, history: options.history ?? 1 });
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc);
  } catch (err) {
    throw new BusBucketsError(undefined, err);
  }
  for (const desired of configs) {
    try {
      const existing = await streamConfig(jsm, desired.name);
      if (existing === undefined) {
        await jsm.streams.add(desired);
      } else if (RECONCILED.some((key) => comparable(existing[key]) !== comparable(desired[key]))) {
        await jsm.streams.update(desired.name, { ...existing, ...pick(desired) });
      }
    } catch (err) {
      throw new BusBucketsError(desired.name, err);
    }
  }
}

async function streamConfig(jsm: JetStreamManager, name: string): Promise<StreamConfig | undefined> {
  try {
    return (await jsm.streams.info(name)).config;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw err;
  }
}

// The server leaves false and zero settings out of the config it returns.
function comparable(value: number | boolean | undefined): number {
  return Number(value ?? 0);
}

function pick(config: BucketStreamConfig): Partial<StreamConfig> {
  return Object.fromEntries(RECONCILED.map((key) => [key, config[key]]));
}
