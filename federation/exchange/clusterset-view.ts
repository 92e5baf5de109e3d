import type { ClusterRegistration, ServiceExportRecord } from "./records.ts";

/** One cluster's export of a service, as peers see it. */
export interface ClusterExport extends ServiceExportRecord {
  cluster: string;
  /** The bus revision it came from; changes on every write. */
  revision: number;
}

/** Every routable export of one service across the ClusterSet, oldest export first (the MCS conflict winner). */
export interface MergedService {
  /** `<namespace>/<name>` */
  key: string;
  namespace: string;
  name: string;
  exports: readonly ClusterExport[];
}

export interface ClusterView {
  name: string;
  registration: ClusterRegistration | undefined;
  leaseLive: boolean;
  /** Lease lapsed while the bus was healthy: its exports are withdrawn from routing. */
  stale: boolean;
}

/** A peer's last lease renewal, as the bus server stamped it. */
export interface LeaseState {
  renewedAtMs: number;
  ttlMs: number;
}

export interface ViewChange {
  services: ReadonlySet<string>;
  clusters: ReadonlySet<string>;
}

export interface ClusterSetViewOptions {
  /** This cluster; its own exports are always in the view and it is never stale to itself. */
  self: string;
  /** Local milliseconds, monotonic: measures the reconnect grace. */
  now: () => number;
  /**
   * The bus server's clock, estimated from our own lease writes; undefined
   * until known. Lease ages are measured on it, so peers' clock skew never
   * matters.
   */
  serverNow: () => number | undefined;
  /**
   * After the bus (re)appears, how long a missing lease is tolerated before
   * its cluster counts as stale: time for every peer to reconnect and renew,
   * so an outage of the bus itself never evicts anyone.
   */
  reconnectGraceMs: number;
}

interface Versioned<T> {
  revision: number;
  value: T;
}

/**
 * The merged, level-triggered state of the ClusterSet as one cluster sees it:
 * fed with bus entries, it answers which exports are routable. Pure logic; the
 * exchange feeds it from NATS.
 */
export class ClusterSetView {
  private readonly options: ClusterSetViewOptions;
  private readonly registrations = new Map<string, Versioned<ClusterRegistration>>();
  private readonly leases = new Map<string, Versioned<LeaseState>>();
  private readonly exports = new Map<string, Versioned<ClusterExport>>();
  /** Indexes so a change touches only the services and clusters it concerns, at 10k exports too. */
  private readonly byService = new Map<string, Set<string>>();
  private readonly byCluster = new Map<string, Set<string>>();
  private readonly staleClusters = new Set<string>();
  private healthySince: number | undefined;
  private readonly listeners = new Set<(change: ViewChange) => void>();
  private pending = { services: new Set<string>(), clusters: new Set<string>() };
  private resyncSeen: Set<string> | undefined;

  constructor(options: ClusterSetViewOptions) {
    this.options = options;
  }

  /** Subscribes to changes; returns the unsubscribe function. */
  onChange(listener: (change: ViewChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setRegistration(cluster: string, revision: number, registration: ClusterRegistration | undefined): void {
    this.markSeen(`c:${cluster}`);
    if (!this.replace(this.registrations, cluster, revision, registration)) return;
    this.pending.clusters.add(cluster);
    this.flush();
  }

  setLease(cluster: string, revision: number, lease: LeaseState | undefined): void {
    this.markSeen(`l:${cluster}`);
    if (!this.replace(this.leases, cluster, revision, lease)) return;
    this.evaluateStaleness();
    this.flush();
  }

  setExport(key: string, revision: number, record: ClusterExport | undefined): void {
    this.markSeen(`e:${key}`);
    const before = this.exports.get(key)?.value;
    if (!this.replace(this.exports, key, revision, record)) return;
    if (before) {
      unindex(this.byService, serviceKey(before), key);
      unindex(this.byCluster, before.cluster, key);
      this.pending.services.add(serviceKey(before));
    }
    if (record) {
      index(this.byService, serviceKey(record), key);
      index(this.byCluster, record.cluster, key);
      this.pending.services.add(serviceKey(record));
    }
    this.flush();
  }

  /** The bus went away (keep everything) or came back (start the reconnect grace). */
  setBusHealthy(healthy: boolean): void {
    if (healthy === (this.healthySince !== undefined)) return;
    this.healthySince = healthy ? this.options.now() : undefined;
    this.evaluateStaleness();
    this.flush();
  }

  /** Re-evaluates time-based staleness; call periodically. */
  tick(): void {
    this.evaluateStaleness();
    this.flush();
  }

  /** Starts a full re-read of the bus; entries not seen again before `endResync` are removed. */
  beginResync(): void {
    this.resyncSeen = new Set();
  }

  endResync(): void {
    const seen = this.resyncSeen;
    this.resyncSeen = undefined;
    if (!seen) return;
    for (const cluster of [...this.registrations.keys()]) if (!seen.has(`c:${cluster}`)) this.setRegistration(cluster, 0, undefined);
    for (const cluster of [...this.leases.keys()]) if (!seen.has(`l:${cluster}`)) this.setLease(cluster, 0, undefined);
    for (const key of [...this.exports.keys()]) if (!seen.has(`e:${key}`)) this.setExport(key, 0, undefined);
  }

  cluster(name: string): ClusterView | undefined {
    if (!this.registrations.has(name) && !this.leases.has(name) && !this.byCluster.has(name)) return undefined;
    return { name, registration: this.registrations.get(name)?.value, leaseLive: this.leaseLive(name), stale: this.staleClusters.has(name) };
  }

  clusters(): ClusterView[] {
    const names = new Set([...this.registrations.keys(), ...this.leases.keys(), ...this.byCluster.keys()]);
    return [...names].sort().flatMap((n) => this.cluster(n) ?? []);
  }

  /** The routable exports of one service, or undefined when none is left. */
  service(key: string): MergedService | undefined {
    const [namespace, name] = key.split("/") as [string, string];
    const exports = [...(this.byService.get(key) ?? [])]
      .flatMap((k) => this.exports.get(k)?.value ?? [])
      .filter((e) => this.routable(e))
      .sort(byExportAge);
    return exports.length ? { key, namespace, name, exports } : undefined;
  }

  services(): MergedService[] {
    return [...this.byService.keys()].sort().flatMap((k) => this.service(k) ?? []);
  }

  private routable(e: ClusterExport): boolean {
    if (e.cluster === this.options.self) return true;
    if (this.staleClusters.has(e.cluster)) return false;
    return !e.consumers || e.consumers.includes(this.options.self);
  }

  /** A lease lives until its TTL passes on the server's clock; the server drops the message then, silently. */
  private leaseLive(cluster: string): boolean {
    const lease = this.leases.get(cluster)?.value;
    if (!lease) return false;
    const serverNow = this.options.serverNow();
    return serverNow === undefined || serverNow - lease.renewedAtMs <= lease.ttlMs;
  }

  private evaluateStaleness(): void {
    const since = this.healthySince;
    const graceOver = since !== undefined && this.options.now() - since >= this.options.reconnectGraceMs;
    const known = new Set([...this.registrations.keys(), ...this.leases.keys(), ...this.byCluster.keys()]);
    for (const cluster of known) {
      if (cluster === this.options.self) continue;
      const wasStale = this.staleClusters.has(cluster);
      // Only a healthy bus can prove silence; while we cannot see it, staleness is frozen.
      const stale = since === undefined ? wasStale : !this.leaseLive(cluster) && graceOver;
      if (stale === wasStale) continue;
      if (stale) this.staleClusters.add(cluster);
      else this.staleClusters.delete(cluster);
      this.pending.clusters.add(cluster);
      for (const k of this.byCluster.get(cluster) ?? []) {
        const e = this.exports.get(k);
        if (e) this.pending.services.add(serviceKey(e.value));
      }
    }
    for (const cluster of [...this.staleClusters]) if (!known.has(cluster)) this.staleClusters.delete(cluster);
  }

  private replace<T>(map: Map<string, Versioned<T>>, key: string, revision: number, value: T | undefined): boolean {
    const current = map.get(key);
    if (value === undefined) {
      if (!current) return false;
      map.delete(key);
      return true;
    }
    if (current?.revision === revision) return false;
    map.set(key, { revision, value });
    return true;
  }

  private markSeen(id: string): void {
    this.resyncSeen?.add(id);
  }

  private flush(): void {
    if (this.pending.services.size === 0 && this.pending.clusters.size === 0) return;
    const change = this.pending;
    this.pending = { services: new Set(), clusters: new Set() };
    for (const listener of this.listeners) listener(change);
  }
}

function index(map: Map<string, Set<string>>, key: string, member: string): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(member);
}

function unindex(map: Map<string, Set<string>>, key: string, member: string): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(member);
  if (set.size === 0) map.delete(key);
}

export function serviceKey(e: { namespace: string; name: string }): string {
  return `${e.namespace}/${e.name}`;
}

function byExportAge(a: ClusterExport, b: ClusterExport): number {
  return a.exportCreatedAt < b.exportCreatedAt ? -1 : a.exportCreatedAt > b.exportCreatedAt ? 1 : a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0;
}
