import type { Logger } from "../../common/index.ts";
import { probe, probeThroughPeer } from "./health-probe.ts";
import type { GatewayMetrics, MetricSeries } from "./metrics.ts";
import type { PeerLink } from "./tunnel-pool.ts";
import type { ClusterSpec, EndpointSpec, HealthCheckSpec, LoadAssignmentSpec, TlsMatchSpec } from "./resources.ts";

/** Attempts per downstream connection: the first choice plus retries on other endpoints/priorities. */
export const MAX_CONNECT_ATTEMPTS = 8;

/** One endpoint of an upstream cluster and what the gateway has learnt about it. */
export class UpstreamHost {
  readonly key: string;
  spec: EndpointSpec;
  priority: number;
  /** Smooth weighted round robin state (nginx's algorithm). */
  weight: number;
  currentWeight = 0;
  /** Active health check verdict; hosts start healthy and are checked at once. */
  hcFailing = false;
  hcFailures = 0;
  hcSuccesses = 0;
  consecutiveFailures = 0;
  ejectedUntil = 0;
  /** Ejection multiplier: each ejection lasts base × this, capped; decays while the host behaves. */
  ejectionMultiplier = 0;
  lastEjectionEndAt = 0;

  constructor(spec: EndpointSpec, priority: number, weight: number) {
    this.key = `${spec.address.host}:${spec.address.port}`;
    this.spec = spec;
    this.priority = priority;
    this.weight = weight;
  }

  ejected(now: number): boolean {
    return now < this.ejectedUntil;
  }
}

export interface UpstreamClusterOptions {
  spec: ClusterSpec;
  metrics: GatewayMetrics;
  logger: Logger;
  now?: () => number;
  /** A link to a peer gateway endpoint, as a client connection gets one: HTTP health checks of peers go through it. */
  linkToPeer?: (cluster: UpstreamCluster, host: UpstreamHost) => Promise<PeerLink>;
}

/**
 * The running state of one xDS cluster: its endpoints by priority, weighted
 * choice within a priority, active TCP or HTTP health checks and passive outlier
 * detection on connect failures.
 *
 * `candidates()` gives the order in which one downstream connection tries
 * endpoints: the weighted pick first, then the rest of that priority, then the
 * next priorities; usable endpoints before ejected or failing ones, which are
 * kept last so that a connection still has somewhere to go when everything
 * looks down (Envoy's panic mode, in spirit).
 */
export class UpstreamCluster {
  spec: ClusterSpec;
  private hosts = new Map<string, UpstreamHost>();
  private assigned = false;
  private hcTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly logger: Logger;
  private readonly linkToPeer: UpstreamClusterOptions["linkToPeer"];
  readonly series: {
    connections: MetricSeries;
    active: MetricSeries;
    connectFailures: MetricSeries;
    noHealthy: MetricSeries;
    bytesUp: MetricSeries;
    bytesDown: MetricSeries;
    failovers: MetricSeries;
    ejections: MetricSeries;
    hcUnhealthy: MetricSeries;
    hcHealthy: MetricSeries;
    activeRequests: MetricSeries;
    staleRetries: MetricSeries;
  };

  constructor(options: UpstreamClusterOptions) {
    this.spec = options.spec;
    this.now = options.now ?? Date.now;
    this.linkToPeer = options.linkToPeer;
    this.logger = options.logger.child({ upstream: options.spec.name });
    const m = options.metrics;
    const cluster = options.spec.name;
    this.series = {
      connections: m.upstreamConnections.labels({ cluster }),
      active: m.upstreamActive.labels({ cluster }),
      connectFailures: m.upstreamConnectFailures.labels({ cluster }),
      noHealthy: m.noHealthyUpstream.labels({ cluster }),
      bytesUp: m.bytes.labels({ cluster, direction: "upstream" }),
      bytesDown: m.bytes.labels({ cluster, direction: "downstream" }),
      failovers: m.failovers.labels({ cluster }),
      ejections: m.ejections.labels({ cluster }),
      hcUnhealthy: m.healthTransitions.labels({ cluster, state: "unhealthy" }),
      hcHealthy: m.healthTransitions.labels({ cluster, state: "healthy" }),
      activeRequests: m.upstreamActiveRequests.labels({ cluster }),
      staleRetries: m.httpStaleRetries.labels({ cluster }),
    };
    this.restartHealthChecks();
  }

  /** Whether an assignment (CLA) has arrived. */
  get hasAssignment(): boolean {
    return this.assigned;
  }

  updateSpec(spec: ClusterSpec): void {
    const hcChanged = JSON.stringify(spec.healthCheck) !== JSON.stringify(this.spec.healthCheck);
    this.spec = spec;
    if (hcChanged) this.restartHealthChecks();
  }

  /** Replaces the endpoint set; hosts that stay keep their health and ejection state. */
  setAssignment(cla: LoadAssignmentSpec): void {
    const next = new Map<string, UpstreamHost>();
    for (const locality of cla.localities) {
      const perHost = locality.weight / Math.max(1, locality.endpoints.length);
      for (const e of locality.endpoints) {
        const key = `${e.address.host}:${e.address.port}`;
        if (next.has(key)) continue;
        const host = this.hosts.get(key) ?? new UpstreamHost(e, locality.priority, perHost);
        host.spec = e;
        host.priority = locality.priority;
        host.weight = perHost;
        next.set(key, host);
      }
    }
    this.hosts = next;
    this.assigned = true;
    this.restartHealthChecks();
  }

  /** The TLS origination settings for a host: the first transport_socket_match its metadata satisfies. */
  tlsFor(host: UpstreamHost): TlsMatchSpec | undefined {
    return this.spec.tlsMatches.find((m) => Object.entries(m.match).every(([k, v]) => host.spec.tlsMatchFields[k] === v));
  }

  allHosts(): UpstreamHost[] {
    return [...this.hosts.values()];
  }

  /** The order in which one downstream connection tries endpoints (at most MAX_CONNECT_ATTEMPTS). */
  candidates(): UpstreamHost[] {
    const now = this.now();
    const byPriority = new Map<number, UpstreamHost[]>();
    const fallback: UpstreamHost[] = [];
    for (const h of this.hosts.values()) {
      if (!h.spec.healthy) continue;
      if (h.hcFailing || h.ejected(now)) {
        fallback.push(h);
        continue;
      }
      const list = byPriority.get(h.priority) ?? [];
      list.push(h);
      byPriority.set(h.priority, list);
    }
    const out: UpstreamHost[] = [];
    for (const p of [...byPriority.keys()].sort((a, b) => a - b)) {
      const list = byPriority.get(p)!;
      const first = pickWeighted(list);
      out.push(first, ...list.filter((h) => h !== first));
    }
    fallback.sort((a, b) => a.priority - b.priority || a.ejectedUntil - b.ejectedUntil);
    out.push(...fallback);
    return out.slice(0, MAX_CONNECT_ATTEMPTS);
  }

  reportSuccess(host: UpstreamHost): void {
    host.consecutiveFailures = 0;
    const od = this.spec.outlier;
    const now = this.now();
    if (od && host.ejectionMultiplier > 0 && host.lastEjectionEndAt > 0 && now - host.lastEjectionEndAt >= od.intervalMs) {
      host.ejectionMultiplier -= 1;
      host.lastEjectionEndAt = now;
    }
  }

  /**
   * A connect failure, or (L7) a 5xx, reset or timeout: counts towards ejection
   * (Envoy counts local-origin failures as 5xx unless split).
   */
  reportFailure(host: UpstreamHost, kind: "connect" | "response" = "connect"): void {
    if (kind === "connect") this.series.connectFailures.add();
    const od = this.spec.outlier;
    if (!od) return;
    const now = this.now();
    if (host.ejected(now)) return;
    host.consecutiveFailures += 1;
    if (host.consecutiveFailures < od.consecutiveFailures) return;
    const total = this.hosts.size;
    const ejected = [...this.hosts.values()].filter((h) => h.ejected(now)).length;
    const allowed = Math.max(od.maxEjectionPercent > 0 ? 1 : 0, Math.floor((total * od.maxEjectionPercent) / 100));
    if (ejected >= allowed) return;
    host.ejectionMultiplier += 1;
    const durationMs = Math.min(od.baseEjectionMs * host.ejectionMultiplier, od.maxEjectionMs);
    host.ejectedUntil = now + durationMs;
    host.lastEjectionEndAt = host.ejectedUntil;
    host.consecutiveFailures = 0;
    this.series.ejections.add();
    this.logger.warn("endpoint ejected", { endpoint: host.key, durationMs, ejections: host.ejectionMultiplier });
  }

  close(): void {
    if (this.hcTimer) clearInterval(this.hcTimer);
    this.hcTimer = undefined;
  }

  private restartHealthChecks(): void {
    this.close();
    const hc = this.spec.healthCheck;
    if (!hc) {
      // Without active checks, no host stays out on an old verdict.
      for (const host of this.hosts.values()) host.hcFailing = false;
      return;
    }
    if (this.hosts.size === 0) return;
    const run = () => {
      for (const host of this.hosts.values()) if (host.spec.healthy) this.checkHost(host);
    };
    this.hcTimer = setInterval(run, hc.intervalMs);
    this.hcTimer.unref();
    run();
  }

  private checkHost(host: UpstreamHost): void {
    const hc = this.spec.healthCheck;
    if (!hc) return;
    const peer = this.tlsFor(host) !== undefined;
    // A peer gateway is reachable without being able to serve (its endpoints down or failing): the HTTP
    // check goes through it to one of its endpoints. Without a way to reach it, a TCP connect is the check.
    const verdict =
      peer && hc.http && this.linkToPeer
        ? probeThroughPeer({ open: () => this.linkToPeer!(this, host), http: hc.http, host: host.key, timeoutMs: hc.timeoutMs })
        : probe({ address: host.spec.address, timeoutMs: hc.timeoutMs, ...(hc.http && !peer ? { http: hc.http } : {}) });
    void verdict.then((ok) => this.recordCheck(host, hc, ok));
  }

  private recordCheck(host: UpstreamHost, hc: HealthCheckSpec, ok: boolean): void {
    if (this.hosts.get(host.key) !== host) return;
    if (ok) {
      host.hcFailures = 0;
      host.hcSuccesses += 1;
      if (host.hcFailing && host.hcSuccesses >= hc.healthyThreshold) {
        host.hcFailing = false;
        this.series.hcHealthy.add();
        this.logger.info("endpoint passed health checks", { endpoint: host.key });
      }
    } else {
      host.hcSuccesses = 0;
      host.hcFailures += 1;
      if (!host.hcFailing && host.hcFailures >= hc.unhealthyThreshold) {
        host.hcFailing = true;
        this.series.hcUnhealthy.add();
        this.logger.warn("endpoint failed health checks", { endpoint: host.key });
      }
    }
  }
}

/** Smooth weighted round robin: deterministic, spreads picks evenly by weight. */
function pickWeighted(hosts: UpstreamHost[]): UpstreamHost {
  let total = 0;
  let best = hosts[0]!;
  for (const h of hosts) {
    h.currentWeight += h.weight;
    total += h.weight;
    if (h.currentWeight > best.currentWeight) best = h;
  }
  best.currentWeight -= total;
  return best;
}
