import { randomUUID } from "node:crypto";
import { metrics, type Counter, type Meter } from "@opentelemetry/api";
import { Backoff, FedgateError, asError, keyedChangeStream, silentLogger, type Logger } from "../../common/index.ts";
import { acceptRevocations, acceptRevocationsRecord, acceptSignedBundle, Revocations, type TrustBundle } from "../../trust/index.ts";
import { DEFAULT_BUCKETS, MARKER_TTL_MS, REVOCATIONS_KEY, TRUST_BUNDLE_KEY, type BucketNames } from "./buckets.ts";
import { ClusterSetView, serviceKey, type ClusterView, type MergedService, type ViewChange } from "./clusterset-view.ts";
import { canonicalJson } from "./canonical-json.ts";
import { decodeRecord, encodeRecord, exportKey, type RejectReason } from "./record-codec.ts";
import { createRecordVerifier, type RecordSigner } from "./record-signing.ts";
import { RECORD_VERSION, clusterRegistration, serviceExport, type ClusterRegistration, type RecordBody, type RecordKind, type ServiceExportRecord } from "./records.ts";
import { BusUnavailableError, type Bus, type BusBucket, type BusEntry, type BusWatch } from "./nats-bus.ts";

export const DEFAULT_LEASE_TTL_MS = 30_000;
const STALENESS_TICK_MS = 250;
/** Upper bound of the wait between failed resyncs, and between failed lease renewals (which is also kept under the reconnect grace). */
const RETRY_MAX_MS = 5_000;
/**
 * A watch that is not ready and has delivered no key it had not delivered
 * before for this long is replaced. Live updates of keys already replayed (the
 * lease renewals) do not count: they keep coming while a replay is stuck.
 * Longer than a few watch-consumer creations that time out (2 s each) on a
 * node the server still believes alive; a replay that makes progress never
 * trips it.
 */
const DEFAULT_WATCH_STALL_MS = 10_000;
/** How many times per stall period a watch's progress is looked at. */
const WATCH_STALL_CHECKS = 10;
/** Distinct (key, reason) rejections remembered for log de-duplication; bounded so junk cannot grow memory. */
const MAX_REMEMBERED_REJECTIONS = 4_096;

export interface ExchangeOptions {
  bus: Bus;
  /** This cluster's registration; `readVersions` is filled in. */
  registration: Omit<ClusterRegistration, "readVersions">;
  signer: RecordSigner;
  /** The trust bundle this cluster installed when it joined; later bundles arrive over the bus. */
  trustBundle: TrustBundle;
  buckets?: BucketNames;
  leaseTtlMs?: number;
  /** After the bus returns, how long before a missing lease makes a peer stale; defaults to half the lease TTL. */
  reconnectGraceMs?: number;
  /** A replay with no new key for this long is replaced (DEFAULT_WATCH_STALL_MS). */
  watchStallMs?: number;
  revokedClusters?: () => Iterable<string>;
  logger?: Logger;
  meter?: Meter;
}

export class ExchangeError extends FedgateError {}

interface BusHealth {
  viewCurrent: boolean;
  leaseLanded: boolean;
}

export interface ServiceChange {
  key: string;
  /** undefined when no routable export is left. */
  service: MergedService | undefined;
}

export interface ClusterChange {
  name: string;
  cluster: ClusterView | undefined;
}

export interface ExchangeStats {
  applied: number;
  rejected: Record<RejectReason | "trust", number>;
  resyncs: number;
}

/**
 * A cluster's seat on the bus: publishes its registration, lease and exports,
 * and keeps the merged, verified view of everyone else's. Level-triggered: the
 * view is rebuilt from KV state alone on start and after every reconnect.
 */
export class Exchange {
  readonly cluster: string;
  private readonly options: ExchangeOptions;
  private readonly buckets: BucketNames;
  private readonly leaseTtlMs: number;
  private readonly watchStallMs: number;
  private readonly view: ClusterSetView;
  private readonly log: Logger;
  private readonly incarnation = randomUUID();
  private readonly verifier;
  private readonly ownExports = new Map<string, ServiceExportRecord>();
  private readonly generations = new Map<string, number>();
  private readonly appliedGenerations = new Map<string, number>();
  private readonly rejectionsLogged = new Set<string>();
  private readonly trustListeners = new Set<() => void>();
  private readonly stats_: ExchangeStats = {
    applied: 0,
    rejected: { malformed: 0, "unsupported-version": 0, schema: 0, signature: 0, unauthorized: 0, "stale-generation": 0, trust: 0 },
    resyncs: 0,
  };
  private readonly rejectedCounter: Counter;
  private bundle: TrustBundle;
  private revocations_: Revocations = Revocations.NONE;
  /** True while a rebuild reads the trust bucket, before it re-reads (and so re-verifies) every record. */
  private readingTrust = false;
  private store: { clusters: BusBucket; exports: BusBucket; trust: BusBucket } | undefined;
  private watches: BusWatch[] = [];
  private timers: NodeJS.Timeout[] = [];
  private leaseTimer: NodeJS.Timeout | undefined;
  /** Capped well under the reconnect grace: a renewal refused right after an outage is retried before any peer judges our lease. */
  private readonly leaseBackoff: Backoff;
  private readonly resyncBackoff = new Backoff({ initialMs: 200, maxMs: RETRY_MAX_MS });
  private unsubscribeConnection: (() => void) | undefined;
  private resyncing: Promise<boolean> | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** Counts view rebuilds, so a watch replacement left over from a failed one stops instead of leaking a watch. */
  private rebuilds = 0;
  /** The server's timestamp of our latest lease write, and when we saw it: our estimate of the server's clock. */
  private serverClock: { serverMs: number; localMs: number } | undefined;
  private closed = false;
  /**
   * The view may judge silence only while both hold: it was rebuilt since the
   * bus last went away, and our latest lease write landed. Kept apart so that
   * one renewal that fails late (sent during an outage, timed out after the
   * resync) pauses judging only until the next renewal lands, not until the
   * next reconnect.
   */
  private readonly busHealth: BusHealth = { viewCurrent: false, leaseLanded: true };

  constructor(options: ExchangeOptions) {
    this.options = options;
    this.cluster = options.signer.cluster;
    const registration = clusterRegistration.safeParse({ ...options.registration, readVersions: [RECORD_VERSION] });
    if (!registration.success) throw new ExchangeError("FEDGATE_EXCHANGE_BAD_REGISTRATION", `invalid registration: ${registration.error.message}`);
    if (registration.data.name !== this.cluster) {
      throw new ExchangeError("FEDGATE_EXCHANGE_BAD_REGISTRATION", `registration names ${registration.data.name} but the signer is ${this.cluster}`);
    }
    this.buckets = options.buckets ?? DEFAULT_BUCKETS;
    this.leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.watchStallMs = options.watchStallMs ?? DEFAULT_WATCH_STALL_MS;
    const reconnectGraceMs = options.reconnectGraceMs ?? this.leaseTtlMs / 2;
    this.leaseBackoff = new Backoff({ initialMs: Math.min(200, reconnectGraceMs / 8), maxMs: Math.min(RETRY_MAX_MS, reconnectGraceMs / 4) });
    this.bundle = options.trustBundle;
    this.log = (options.logger ?? silentLogger).child({ component: "exchange", cluster: this.cluster });
    this.view = new ClusterSetView({
      self: this.cluster,
      now: () => performance.now(),
      serverNow: () => (this.serverClock ? this.serverClock.serverMs + (performance.now() - this.serverClock.localMs) : undefined),
      reconnectGraceMs,
    });
    this.verifier = createRecordVerifier({ bundle: () => this.bundle, revocations: () => this.revocations_, ...(options.revokedClusters ? { revokedClusters: options.revokedClusters } : {}) });
    const meter = options.meter ?? metrics.getMeter("fedgate");
    this.rejectedCounter = meter.createCounter("fedgate_exchange_records_rejected_total", { description: "Bus records not applied, by reason" });
    meter
      .createObservableGauge("fedgate_exchange_stale_clusters", { description: "Peers whose lease lapsed while the bus was healthy" })
      .addCallback((result) => result.observe(this.view.clusters().filter((c) => c.stale).length));
  }

  /** Opens the buckets, announces this cluster, and returns once the view holds the bus's current state. */
  async start(): Promise<void> {
    const bus = this.options.bus;
    const [clusters, exports, trust] = await Promise.all([bus.bucket(this.buckets.clusters), bus.bucket(this.buckets.exports), bus.bucket(this.buckets.trust)]);
    this.store = { clusters, exports, trust };
    this.unsubscribeConnection = bus.onConnectionChange((connected) => {
      if (connected) {
        // Renew at once rather than after the resync or the back-off of the renewals that failed during the outage: peers start judging our lease a reconnect grace after they return.
        this.leaseBackoff.reset();
        void this.renewLease();
        void this.resync();
      } else {
        this.log.warn("bus connection lost; keeping every import and route");
        this.setBusHealth({ viewCurrent: false });
      }
    });
    await this.publish(clusters, `${this.cluster}.info`, "cluster", { ...this.options.registration, readVersions: [RECORD_VERSION] });
    await this.renewLease();
    if (!(await this.resync())) {
      // Nobody will close an exchange whose start failed: stop its lease renewal, retries and watches here.
      await this.close();
      throw new BusUnavailableError("the initial read of the ClusterSet buckets failed");
    }
    this.timers.push(setInterval(() => this.view.tick(), STALENESS_TICK_MS));
  }

  /** Publishes the export; an unchanged export already on the bus is not written again, so reconciles cause no churn. */
  async publishExport(record: ServiceExportRecord): Promise<void> {
    const body = serviceExport.parse(record);
    const key = exportKey(this.cluster, body.namespace, body.name);
    const previous = this.ownExports.get(key);
    const onBus = this.view.service(serviceKey(body))?.exports.some((e) => e.cluster === this.cluster);
    if (previous && onBus && canonicalJson(previous) === canonicalJson(body)) return;
    this.ownExports.set(key, body);
    await this.publish(this.requireStore().exports, key, "export", body);
  }

  async withdrawExport(namespace: string, name: string): Promise<void> {
    const key = exportKey(this.cluster, namespace, name);
    this.ownExports.delete(key);
    await this.requireStore().exports.delete(key, { markerTtlMs: MARKER_TTL_MS });
  }

  /** Leaves the ClusterSet: withdraws every export, the registration and the lease. */
  async leave(): Promise<void> {
    const store = this.requireStore();
    const own = new Set([...this.ownExports.keys(), ...this.ownKeysOnBus()]);
    for (const key of own) await store.exports.delete(key, { markerTtlMs: MARKER_TTL_MS });
    this.ownExports.clear();
    this.stopLease();
    await store.clusters.delete(`${this.cluster}.lease`, { markerTtlMs: MARKER_TTL_MS });
    await store.clusters.delete(`${this.cluster}.info`, { markerTtlMs: MARKER_TTL_MS });
  }

  services(): MergedService[] {
    return this.view.services();
  }

  service(namespace: string, name: string): MergedService | undefined {
    return this.view.service(serviceKey({ namespace, name }));
  }

  clusters(): ClusterView[] {
    return this.view.clusters();
  }

  trustBundle(): TrustBundle {
    return this.bundle;
  }

  /** The root-signed revocation lists installed from the bus (empty until the admin publishes one). */
  revocations(): Revocations {
    return this.revocations_;
  }

  /** Every service's state now (unless `currentState` is false), then each change, coalesced per service. */
  watchServices(options: { signal?: AbortSignal; currentState?: boolean } = {}): AsyncIterableIterator<ServiceChange, undefined> {
    const { signal, currentState = true } = options;
    return keyedChangeStream({
      initialKeys: currentState ? this.view.services().map((s) => s.key) : [],
      subscribe: (push) => this.view.onChange((c: ViewChange) => push(c.services)),
      read: (key) => ({ key, service: this.view.service(key) }),
      ...(signal ? { signal } : {}),
    });
  }

  watchClusters(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<ClusterChange, undefined> {
    const { signal } = options;
    return keyedChangeStream({
      initialKeys: this.view.clusters().map((c) => c.name),
      subscribe: (push) => this.view.onChange((c: ViewChange) => push(c.clusters)),
      read: (name) => ({ name, cluster: this.view.cluster(name) }),
      ...(signal ? { signal } : {}),
    });
  }

  /** The installed trust bundle now, then each time a new bundle or new revocation lists are installed (read `revocations()`). */
  watchTrust(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<TrustBundle, undefined> {
    const { signal } = options;
    return keyedChangeStream({
      initialKeys: [TRUST_BUNDLE_KEY],
      subscribe: (push) => {
        const listener = () => push([TRUST_BUNDLE_KEY]);
        this.trustListeners.add(listener);
        return () => this.trustListeners.delete(listener);
      },
      read: () => this.bundle,
      ...(signal ? { signal } : {}),
    });
  }

  stats(): ExchangeStats {
    return structuredClone(this.stats_);
  }

  /** Stops watching and renewing; what was published stays on the bus until its lease lapses. */
  close(): Promise<void> {
    this.closed = true;
    this.unsubscribeConnection?.();
    this.stopLease();
    for (const t of this.timers) clearInterval(t);
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    // A resync in flight stops at its next step: its watches are stopped and it checks `closed`.
    for (const w of this.watches) w.stop();
    this.watches = [];
    return Promise.resolve();
  }

  private requireStore() {
    if (!this.store) throw new ExchangeError("FEDGATE_EXCHANGE_NOT_STARTED", "the exchange has not been started");
    return this.store;
  }

  private async publish<K extends RecordKind>(bucket: BusBucket, key: string, kind: K, body: RecordBody<K>, options?: { ttlMs?: number }): Promise<void> {
    // Wall-clock milliseconds keep generations increasing across restarts without reading old state.
    const generation = Math.max((this.generations.get(key) ?? 0) + 1, Date.now());
    this.generations.set(key, generation);
    const bytes = encodeRecord({ signer: this.options.signer, bucket: bucket.name, key, kind, generation, body });
    await bucket.put(key, bytes, options);
  }

  private async renewLease(): Promise<void> {
    const store = this.requireStore();
    try {
      await this.publish(store.clusters, `${this.cluster}.lease`, "lease", { ttlMs: this.leaseTtlMs, incarnation: this.incarnation }, { ttlMs: this.leaseTtlMs });
      this.leaseBackoff.reset();
      this.log.debug("lease renewed");
      this.setBusHealth({ leaseLanded: true });
      this.scheduleLease(this.leaseTtlMs / 3);
    } catch (err) {
      // If the bus will not take our lease we cannot trust our view of others' silence either.
      this.setBusHealth({ leaseLanded: false });
      this.log.warn("lease renewal failed", { err: asError(err) });
      this.scheduleLease(this.leaseBackoff.next());
    }
  }

  private setBusHealth(change: Partial<BusHealth>): void {
    Object.assign(this.busHealth, change);
    this.view.setBusHealthy(this.busHealth.viewCurrent && this.busHealth.leaseLanded);
  }

  private scheduleLease(delayMs: number): void {
    this.stopLease();
    if (this.closed) return;
    this.leaseTimer = setTimeout(() => void this.renewLease(), delayMs);
  }

  private stopLease(): void {
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    this.leaseTimer = undefined;
  }

  /**
   * Re-reads every bucket. Serialised; never rejects: a failed resync (a watch
   * that errors, a write that cannot land) keeps the current view untouched and
   * schedules another after backoff. Resolves true when the view was rebuilt.
   */
  private resync(): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      if (this.closed) return false;
      try {
        await this.rebuildView();
        this.resyncBackoff.reset();
        return true;
      } catch (err) {
        if (this.closed) return false;
        const delay = this.resyncBackoff.next();
        this.log.warn("resync failed; keeping the current view and retrying", { err: asError(err), retryInMs: delay });
        if (!this.resyncTimer) {
          this.resyncTimer = setTimeout(() => {
            this.resyncTimer = undefined;
            void this.resync();
          }, delay);
        }
        return false;
      }
    };
    const next = (this.resyncing ?? Promise.resolve(true)).then(run);
    this.resyncing = next;
    return next;
  }

  private async rebuildView(): Promise<void> {
    const store = this.requireStore();
    this.rebuilds++;
    for (const w of this.watches) w.stop();
    this.view.beginResync();
    // Trust first: records are verified against the bundle and revocation lists the bus holds now, so a revoked cluster's records never enter the view, not even briefly.
    this.watches = [];
    this.readingTrust = true;
    try {
      await this.watchUntilReady([store.trust]);
    } finally {
      this.readingTrust = false;
    }
    await this.watchUntilReady([store.clusters, store.exports]);
    this.log.debug("resync read every bucket");
    // Only a complete re-read may remove what it did not see again.
    this.view.endResync();
    this.stats_.resyncs++;
    await this.restoreOwnState(store);
    this.setBusHealth({ viewCurrent: true });
  }

  private async watchUntilReady(buckets: readonly BusBucket[]): Promise<void> {
    const rebuild = this.rebuilds;
    await Promise.all(
      buckets.map(async (bucket) => {
        for (let attempt = 1; !(await this.watchOnce(bucket)); attempt++) {
          if (rebuild !== this.rebuilds) throw new ExchangeError("FEDGATE_EXCHANGE_RESYNC_SUPERSEDED", "a newer resync replaced this one");
          this.log.warn("bus watch stalled before it was ready; replacing it", { bucket: bucket.name, attempt, stalledForMs: this.watchStallMs });
        }
      }),
    );
  }

  /**
   * Watches `bucket`: resolves true once its current state is replayed, false
   * when the replay stalled (see DEFAULT_WATCH_STALL_MS; the watch is then stopped), and rejects when the
   * watch fails. A stalled replay (its consumer's initial pending count never
   * reached) would otherwise hold this resync, and every resync queued behind
   * it, forever.
   */
  private watchOnce(bucket: BusBucket): Promise<boolean> {
    if (this.closed) return Promise.reject(closedError());
    const startedAt = performance.now();
    let lastProgressAt = startedAt;
    let replayedKeys: Set<string> | undefined = new Set<string>();
    return new Promise<boolean>((resolve, reject) => {
      const settle = (outcome: boolean | Error) => {
        clearInterval(stallCheck);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      const watch = bucket.watch({
        onEntry: (entry) => {
          if (replayedKeys && !replayedKeys.has(entry.key)) {
            replayedKeys.add(entry.key);
            lastProgressAt = performance.now();
          }
          this.apply(bucket.name, entry);
        },
        onReady: () => {
          replayedKeys = undefined;
          this.log.debug("bus watch ready", { bucket: bucket.name, afterMs: Math.round(performance.now() - startedAt) });
          settle(true);
        },
        onError: (err) => {
          // Before it was ready this fails the resync; afterwards it asks for a new one.
          settle(err);
          this.log.warn("bus watch failed; resyncing", { bucket: bucket.name, err });
          void this.resync();
        },
      });
      const stallCheck = setInterval(() => {
        if (this.closed) return settle(closedError());
        if (performance.now() - lastProgressAt < this.watchStallMs) return;
        watch.stop();
        this.watches = this.watches.filter((w) => w !== watch);
        settle(false);
      }, this.watchStallMs / WATCH_STALL_CHECKS);
      this.watches.push(watch);
    });
  }

  /** After an outage the bus may have lost what we wrote (an R1 store wiped, say); write it again. */
  private async restoreOwnState(store: { clusters: BusBucket; exports: BusBucket }): Promise<void> {
    if (!this.view.cluster(this.cluster)?.registration) {
      await this.publish(store.clusters, `${this.cluster}.info`, "cluster", { ...this.options.registration, readVersions: [RECORD_VERSION] });
    }
    await this.renewLease();
    const onBus = this.ownKeysOnBus();
    for (const [key, body] of this.ownExports) if (!onBus.has(key)) await this.publish(store.exports, key, "export", body);
  }

  /** The bus keys of this cluster's exports as the view currently holds them. */
  private ownKeysOnBus(): Set<string> {
    return new Set(this.view.services().flatMap((s) => s.exports.filter((e) => e.cluster === this.cluster).map((e) => exportKey(e.cluster, e.namespace, e.name))));
  }

  private apply(bucket: string, entry: BusEntry): void {
    if (bucket === this.buckets.trust) return this.applyTrust(entry);
    const origin = entry.key.split(".")[0] ?? "";
    if (!entry.value) {
      // Deletes carry no body; server permissions ensure only the origin can delete its keys.
      this.appliedGenerations.delete(`${bucket}/${entry.key}`);
      if (bucket === this.buckets.exports) this.view.setExport(entry.key, entry.revision, undefined);
      else if (entry.key.endsWith(".lease")) this.view.setLease(origin, entry.revision, undefined);
      else if (entry.key.endsWith(".info")) this.view.setRegistration(origin, entry.revision, undefined);
      return;
    }
    const result = decodeRecord({ buckets: this.buckets, bucket, key: entry.key, bytes: entry.value, verifier: this.verifier });
    if (!result.ok) return this.reject(bucket, entry.key, result.reason, result.detail);
    const record = result.record;
    const generationKey = `${bucket}/${entry.key}`;
    const applied = this.appliedGenerations.get(generationKey);
    if (applied !== undefined && record.generation < applied) {
      return this.reject(bucket, entry.key, "stale-generation", `generation ${record.generation} is older than applied ${applied}`);
    }
    this.appliedGenerations.set(generationKey, record.generation);
    this.stats_.applied++;
    if (record.kind === "export") this.view.setExport(entry.key, entry.revision, { ...record.body, cluster: record.origin, revision: entry.revision });
    else if (record.kind === "lease") {
      if (record.origin === this.cluster) this.serverClock = { serverMs: entry.storedAtMs, localMs: performance.now() };
      this.view.setLease(record.origin, entry.revision, { renewedAtMs: entry.storedAtMs, ttlMs: record.body.ttlMs });
    }
    else this.view.setRegistration(record.origin, entry.revision, record.body);
  }

  private applyTrust(entry: BusEntry): void {
    if (!entry.value) return;
    if (entry.key === REVOCATIONS_KEY) return this.applyRevocations(entry.value);
    if (entry.key !== TRUST_BUNDLE_KEY) return;
    try {
      const accepted = acceptSignedBundle(Buffer.from(entry.value).toString("utf8"), { current: this.bundle });
      if (!accepted.changed) return;
      this.bundle = accepted.bundle;
      // Lists of roots the new bundle retired stop counting.
      this.revocations_ = acceptRevocations("", { bundle: this.bundle, current: this.revocations_ }).revocations;
      this.log.info("installed trust bundle", { sequence: accepted.bundle.sequence });
      for (const listener of this.trustListeners) listener();
    } catch (err) {
      this.reject(this.buckets.trust, entry.key, "trust", asError(err).message);
    }
  }

  /**
   * A forged, stale or malformed revocation record is refused and changes
   * nothing. A newer one is installed, and the view is rebuilt from the bus so
   * records already applied from a now-revoked cluster are verified again and
   * dropped.
   */
  private applyRevocations(value: Uint8Array): void {
    try {
      const accepted = acceptRevocationsRecord(Buffer.from(value).toString("utf8"), { bundle: this.bundle, current: this.revocations_ });
      if (!accepted.changed) return;
      this.revocations_ = accepted.revocations;
      this.log.info("installed revocation lists", { crlNumbers: accepted.revocations.lists.map((l) => String(l.crlNumber)) });
      for (const listener of this.trustListeners) listener();
      if (!this.readingTrust) void this.resync();
    } catch (err) {
      this.reject(this.buckets.trust, REVOCATIONS_KEY, "trust", asError(err).message);
    }
  }

  private reject(bucket: string, key: string, reason: RejectReason | "trust", detail: string): void {
    this.stats_.rejected[reason]++;
    this.rejectedCounter.add(1, { reason, bucket });
    const id = `${bucket}/${key}/${reason}`;
    if (this.rejectionsLogged.has(id)) return;
    if (this.rejectionsLogged.size >= MAX_REMEMBERED_REJECTIONS) this.rejectionsLogged.clear();
    this.rejectionsLogged.add(id);
    this.log.warn("rejected bus record", { bucket, key, reason, detail });
  }
}

function closedError(): ExchangeError {
  return new ExchangeError("FEDGATE_EXCHANGE_CLOSED", "the exchange is closed");
}
