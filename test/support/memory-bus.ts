import { BusUnavailableError, type Bus, type BusBucket, type BusEntry, type BusWatch } from "../../federation/index.ts";

type BusWatchHandlers = Parameters<BusBucket["watch"]>[0];

/**
 * An in-memory Bus for unit tests of the exchange's own logic (resync,
 * lease renewal), with the faults that are hard to provoke on a real NATS on
 * demand: an outage, and a watch that never finishes its replay.
 */
export class MemoryBus implements Bus {
  private readonly store: MemoryStore;
  private readonly listeners = new Set<(connected: boolean) => void>();
  /** Writes of this client still to be refused, by key suffix, as a server not yet ready after a restart refuses them. */
  private readonly refusalsLeft = new Map<string, number>();

  constructor(store: MemoryStore) {
    this.store = store;
    store.buses.add(this);
  }

  bucket(name: string): Promise<BusBucket> {
    const shared = this.store.bucket(name);
    return Promise.resolve({
      name,
      put: async (key, value) => {
        await this.store.heldWhileDown();
        return shared.write(key, value, this.refused(name, key));
      },
      delete: async (key) => {
        await this.store.heldWhileDown();
        shared.write(key, undefined, this.refused(name, key));
      },
      watch: (handlers) => shared.watch(handlers),
    });
  }

  /** Refuses this client's next `count` writes of keys ending in `keySuffix`. */
  refuseWrites(keySuffix: string, count: number): void {
    this.refusalsLeft.set(keySuffix, count);
  }

  private refused(bucket: string, key: string): boolean {
    for (const [suffix, left] of this.refusalsLeft) {
      if (left > 0 && key.endsWith(suffix)) {
        this.refusalsLeft.set(suffix, left - 1);
        this.store.refusals.push({ bucket, key, atMs: performance.now() });
        return true;
      }
    }
    return false;
  }

  onConnectionChange(listener: (connected: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(connected: boolean): void {
    for (const listener of this.listeners) listener(connected);
  }

  close(): Promise<void> {
    this.store.buses.delete(this);
    return Promise.resolve();
  }
}

/** The "server": every bucket's last values, shared by the MemoryBus of each simulated cluster. */
export class MemoryStore {
  readonly buses = new Set<MemoryBus>();
  private readonly buckets = new Map<string, MemoryBucket>();
  /** While true, writes fail (or are held, see `stop`) and new watches fail at once. */
  private down = false;
  private holdWritesMs: number | undefined;
  private readonly held: (() => void)[] = [];
  /** Watch attempts still to be stalled, per bucket: they replay part of the state, then fall silent. */
  private readonly stallsLeft = new Map<string, number>();
  /** Every watch opened (bucket name and whether it was stalled), and every write, in order. */
  readonly watchesOpened: { bucket: string; stalled: boolean; stopped: () => boolean }[] = [];
  readonly writes: { bucket: string; key: string; atMs: number }[] = [];
  readonly refusals: { bucket: string; key: string; atMs: number }[] = [];

  bucket(name: string): MemoryBucket {
    let bucket = this.buckets.get(name);
    if (!bucket) this.buckets.set(name, (bucket = new MemoryBucket(name, this)));
    return bucket;
  }

  /** Makes the next `count` watches of `bucket` stall before they are ready. */
  stallWatches(bucket: string, count: number): void {
    this.stallsLeft.set(bucket, count);
  }

  /**
   * Stops the server: every client sees its connection drop. With
   * `holdWritesMs`, writes sent meanwhile are held and fail that long after
   * the restart, as a NATS client buffers a publish through a disconnect and
   * its request times out after the reconnect.
   */
  stop(options: { holdWritesMs?: number } = {}): void {
    this.down = true;
    this.holdWritesMs = options.holdWritesMs;
    for (const bus of this.buses) bus.notify(false);
  }

  /** Starts the server again: every client reconnects. */
  start(): void {
    this.down = false;
    for (const bus of this.buses) bus.notify(true);
    for (const release of this.held.splice(0)) release();
  }

  /** Resolves at once while up; a write sent while down is held (then rejected) or fails at once. */
  heldWhileDown(): Promise<void> {
    const holdMs = this.holdWritesMs;
    if (!this.down || holdMs === undefined) return Promise.resolve();
    return new Promise<void>((_, reject) => {
      this.held.push(() => setTimeout(() => reject(new BusUnavailableError(`a write held through the outage timed out ${holdMs} ms after the restart`)), holdMs));
    });
  }

  isDown(): boolean {
    return this.down;
  }

  takeStall(bucket: string): boolean {
    const left = this.stallsLeft.get(bucket) ?? 0;
    if (left > 0) this.stallsLeft.set(bucket, left - 1);
    return left > 0;
  }
}

class MemoryBucket {
  readonly name: string;
  private readonly store: MemoryStore;
  private readonly entries = new Map<string, BusEntry>();
  private readonly watchers = new Set<BusWatchHandlers>();
  private revision = 0;

  constructor(name: string, store: MemoryStore) {
    this.name = name;
    this.store = store;
  }

  watch(handlers: BusWatchHandlers): BusWatch {
    let stopped = false;
    const stalled = this.store.takeStall(this.name);
    this.store.watchesOpened.push({ bucket: this.name, stalled, stopped: () => stopped });
    const stop = () => {
      stopped = true;
      this.watchers.delete(handlers);
    };
    queueMicrotask(() => {
      if (stopped) return;
      if (this.store.isDown()) return handlers.onError(new BusUnavailableError(`watch on ${this.name} failed: the server is down`));
      const replay = [...this.entries.values()];
      // A stalled watch delivers all but the last entry and is never ready, as when a consumer's pending count is never reached; live updates still arrive.
      for (const entry of stalled ? replay.slice(0, -1) : replay) handlers.onEntry(entry);
      if (!stalled) handlers.onReady();
      this.watchers.add(handlers);
    });
    return { stop };
  }

  write(key: string, value: Uint8Array | undefined, refused: boolean): number {
    if (this.store.isDown() || refused) throw new BusUnavailableError(`write ${this.name}/${key} failed: the server is down or not ready`);
    const entry = { key, value, revision: ++this.revision, storedAtMs: Date.now() };
    this.store.writes.push({ bucket: this.name, key, atMs: performance.now() });
    if (value) this.entries.set(key, entry);
    else this.entries.delete(key);
    for (const watcher of this.watchers) watcher.onEntry(entry);
    return entry.revision;
  }
}
