import { TimeoutError, connect, headers, nuid, type Authenticator, type NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg, type PushConsumer } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { FedgateError, asError } from "../../common/index.ts";
import { kvStream, kvSubject } from "./buckets.ts";
import { ensureBuckets, type BucketSettings } from "./bus-buckets.ts";

/**
 * The exchange's view of NATS JetStream KV. This file is the only one in the
 * exchange that imports @nats-io; unit tests substitute an in-memory Bus.
 */
export interface BusEntry {
  key: string;
  /** undefined for a delete. (A message that expires by TTL simply vanishes: no event.) */
  value: Uint8Array | undefined;
  revision: number;
  /** When the server stored it, by the server's clock. */
  storedAtMs: number;
}

export interface BusWatchHandlers {
  onEntry(entry: BusEntry): void;
  /** Every key's last value has been delivered; what follows are updates. */
  onReady(): void;
  /** The watch ended abnormally; the owner restarts it. */
  onError(error: Error): void;
}

export interface BusWatch {
  stop(): void;
}

export interface BusBucket {
  readonly name: string;
  /** Stores `value`; with `ttlMs` the server drops it by itself after that long. */
  put(key: string, value: Uint8Array, options?: { ttlMs?: number }): Promise<number>;
  /**
   * Writes a delete marker that the server drops after `markerTtlMs`; with a
   * history of 1 nothing of the key remains. (Purges are refused on fedgate
   * buckets: their roll-up header could wipe other clusters' keys.)
   */
  delete(key: string, options: { markerTtlMs: number }): Promise<void>;
  watch(handlers: BusWatchHandlers): BusWatch;
}

export interface Bus {
  bucket(name: string): Promise<BusBucket>;
  /** Connection state changes: false on disconnect, true on reconnect. */
  onConnectionChange(listener: (connected: boolean) => void): () => void;
  close(): Promise<void>;
}

/** A bus connection that, with the admin credential, may create the buckets. */
export interface AdminBus extends Bus {
  ensureBuckets(settings: Partial<BucketSettings>): Promise<void>;
}

export class BusUnavailableError extends FedgateError {
  constructor(message: string, cause?: unknown) {
    super("FEDGATE_BUS_UNAVAILABLE", message, { cause, retryable: true });
  }
}

export interface ConnectBusOptions {
  servers: string[];
  /** Connection name shown in server monitoring, e.g. `fedgate-controller/cluster-a`. */
  name: string;
  authenticator?: Authenticator;
  /** Each credential may only subscribe under its own inbox prefix; see bus-permissions.ts. */
  inboxPrefix?: string;
  /** Upper bound of the reconnect wait; the client adds jitter. */
  reconnectWaitMs?: number;
}

export async function connectBus(options: ConnectBusOptions): Promise<AdminBus> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: options.servers,
      name: options.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: options.reconnectWaitMs ?? 250,
      reconnectJitter: 100,
      pingInterval: 5_000,
      ...(options.authenticator ? { authenticator: options.authenticator } : {}),
      ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
    });
  } catch (err) {
    throw new BusUnavailableError(`cannot connect to NATS at ${options.servers.join(", ")}`, err);
  }
  // Only deletes abandoned watch consumers; its API check would ask $JS.API.INFO, which cluster credentials may not.
  const jsm = await jetstreamManager(nc, { timeout: WATCH_REQUEST_TIMEOUT_MS, checkAPI: false });
  return new NatsBus(nc, jsm);
}

class NatsBus implements AdminBus {
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly watchApi: WatchApi;
  private readonly kvm: Kvm;
  private readonly listeners = new Set<(connected: boolean) => void>();

  constructor(nc: NatsConnection, jsm: JetStreamManager) {
    this.nc = nc;
    this.js = jetstream(nc);
    this.watchApi = { js: jetstream(nc, { timeout: WATCH_REQUEST_TIMEOUT_MS }), jsm };
    this.kvm = new Kvm(this.js);
    void this.followStatus();
  }

  private async followStatus(): Promise<void> {
    for await (const status of this.nc.status()) {
      const connected = status.type === "reconnect" ? true : status.type === "disconnect" ? false : undefined;
      if (connected === undefined) continue;
      for (const listener of this.listeners) listener(connected);
    }
  }

  onConnectionChange(listener: (connected: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async bucket(name: string): Promise<BusBucket> {
    try {
      return new NatsBucket({ name, kv: await this.kvm.open(name), js: this.js, watchApi: this.watchApi });
    } catch (err) {
      throw new BusUnavailableError(`cannot open KV bucket ${name}`, err);
    }
  }

  ensureBuckets(settings: Partial<BucketSettings>): Promise<void> {
    return ensureBuckets(this.nc, settings);
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

/** The JetStream handles watches use: requests that give up sooner, since a watch consumer's creation is retried. */
interface WatchApi {
  js: JetStreamClient;
  jsm: JetStreamManager;
}

class NatsBucket implements BusBucket {
  readonly name: string;
  private readonly kv: KV;
  private readonly js: JetStreamClient;
  private readonly watchApi: WatchApi;

  constructor(options: { name: string; kv: KV; js: JetStreamClient; watchApi: WatchApi }) {
    this.name = options.name;
    this.kv = options.kv;
    this.js = options.js;
    this.watchApi = options.watchApi;
  }

  async put(key: string, value: Uint8Array, options: { ttlMs?: number } = {}): Promise<number> {
    try {
      if (options.ttlMs === undefined) return await this.kv.put(key, value);
      // KV's put has no per-message TTL; a JetStream publish on the key's subject is the same write with one.
      const ack = await this.js.publish(kvSubject(this.name, key), value, { ttl: ttl(options.ttlMs) });
      return ack.seq;
    } catch (err) {
      throw new BusUnavailableError(`put ${this.name}/${key} failed`, err);
    }
  }

  async delete(key: string, options: { markerTtlMs: number }): Promise<void> {
    const h = headers();
    h.set(KV_OPERATION_HEADER, "DEL");
    try {
      // KV's delete cannot carry a TTL; the same marker published directly can, so it expires instead of lingering.
      await this.js.publish(kvSubject(this.name, key), new Uint8Array(0), { headers: h, ttl: ttl(options.markerTtlMs) });
    } catch (err) {
      throw new BusUnavailableError(`delete ${this.name}/${key} failed`, err);
    }
  }

  /**
   * An ordered push consumer over the bucket's last values, as KV's watch
   * builds, but held here so its liveness can be checked: when the node that
   * hosted it dies, the client alone notices only after two 30 s heartbeats.
   */
  watch(handlers: BusWatchHandlers): BusWatch {
    let stopped = false;
    let consumer: PushConsumer | undefined;
    let liveness: NodeJS.Timeout | undefined;
    const fail = (err: unknown) => {
      if (stopped) return;
      stop();
      handlers.onError(err instanceof BusUnavailableError ? err : new BusUnavailableError(`watch on ${this.name} failed: ${asError(err).message}`, err));
    };
    const stop = () => {
      stopped = true;
      if (liveness) clearInterval(liveness);
      void consumer?.delete().catch(() => undefined);
    };
    const prefix = `$KV.${this.name}.`;
    const run = async () => {
      consumer = await this.createWatchConsumer(`${prefix}>`, () => stopped);
      if (stopped) return stop();
      const initial = (await consumer.info(true)).num_pending;
      let ready = initial === 0;
      if (ready) handlers.onReady();
      const messages = await consumer.consume({
        callback: (m: JsMsg) => {
          handlers.onEntry(toBusEntry(m, prefix));
          // `pending` counts what is left of the initial replay; 0 marks its end.
          if (!ready && m.info.pending === 0) {
            ready = true;
            handlers.onReady();
          }
        },
      });
      liveness = setInterval(() => {
        consumer?.info(false).catch(fail);
      }, WATCH_LIVENESS_MS);
      await messages.closed();
      fail(new BusUnavailableError(`watch on ${this.name} ended`));
    };
    run().catch(fail);
    return { stop };
  }

  /**
   * The server places a watch's (R1) consumer on a random peer of the stream
   * that it believes online, and it believes a killed node online until that
   * node has missed five 30 s heartbeats: a creation placed there is never
   * answered. Every attempt is placed anew, so one that times out is abandoned
   * and the next is sent at once, rather than failing the whole resync, which
   * needs a consumer on every bucket and would fail again and again.
   */
  private async createWatchConsumer(filter: string, stopped: () => boolean): Promise<PushConsumer> {
    const stream = kvStream(this.name);
    for (;;) {
      const namePrefix = `fedgate_${nuid.next()}`;
      try {
        return await this.watchApi.js.consumers.getPushConsumer(stream, { name_prefix: namePrefix, filter_subjects: filter, deliver_policy: DeliverPolicy.LastPerSubject });
      } catch (err) {
        if (!(err instanceof TimeoutError) || stopped()) throw err;
        // Its deliver subject is never listened to again; if it was created after all, delete it rather than wait for its inactivity threshold.
        void this.watchApi.jsm.consumers.delete(stream, `${namePrefix}_1`).catch(() => undefined);
      }
    }
  }
}

/** How often a watch asks the server whether its consumer still exists. */
const WATCH_LIVENESS_MS = 1_000;

/**
 * How long a watch waits for its consumer to be created (and for each
 * liveness check); these take milliseconds, so this only bounds how long an
 * attempt placed on a dead node costs.
 */
const WATCH_REQUEST_TIMEOUT_MS = 2_000;

/** The header @nats-io/kv writes and reads to mark deletes. */
const KV_OPERATION_HEADER = "KV-Operation";

/** NATS TTLs are whole seconds. */
function ttl(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

function toBusEntry(m: JsMsg, prefix: string): BusEntry {
  const operation = m.headers?.get(KV_OPERATION_HEADER) ?? "";
  return {
    key: m.subject.slice(prefix.length),
    value: operation === "" ? m.data : undefined,
    revision: m.seq,
    storedAtMs: Math.floor(m.info.timestampNanos / 1e6),
  };
}
