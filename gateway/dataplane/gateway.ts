import type { Server } from "node:http";
import { asError, createLogger, type Logger, type Problem } from "../../common/index.ts";
import { ProtoRegistry } from "../xds/proto-registry.ts";
import type { ResourceKind } from "../xds/type-urls.ts";
import { startAdmin } from "./admin-http.ts";
import { AdsClient } from "./ads-client.ts";
import type { AdsConnection, AdsClientOptions, DecodedResource } from "./ads-stream.ts";
import { DeltaAdsClient } from "./delta-ads-client.ts";
import type { Bootstrap } from "./bootstrap.ts";
import { ConnectionSet } from "./connection-set.ts";
import { ListenFailedError } from "./errors.ts";
import { ExportListener } from "./export-listener.ts";
import { HttpListener } from "./http-listener.ts";
import { ImportListener } from "./import-listener.ts";
import type { MuxKeepAlive } from "./mux-session.ts";
import type { ListenerContext } from "./listener-context.ts";
import { gatewayMetrics, MetricsRegistry, type GatewayMetrics } from "./metrics.ts";
import {
  parseCluster,
  parseListener,
  parseLoadAssignment,
  parseRouteConfiguration,
  parseSecret,
  type ClusterSpec,
  type ListenerSpec,
  type LoadAssignmentSpec,
  type Parsed,
  type RouteConfigSpec,
  type SecretSpec,
} from "./resources.ts";
import { SecretStore } from "./secret-store.ts";
import { TunnelPool } from "./tunnel-pool.ts";
import { UpstreamCluster } from "./upstream-cluster.ts";
import { dial, linkTo } from "./upstream-connect.ts";

export interface GatewayOptions {
  bootstrap: Bootstrap;
  logger?: Logger;
  /** Share one across gateways in a process (loading the protos takes ~150 ms). */
  registry?: ProtoRegistry;
}

interface RunningListener {
  spec: ListenerSpec;
  bound: { host: string; port: number };
  impl: ImportListener | ExportListener | HttpListener;
}

/**
 * fedgate's gateway data plane: an xDS client of the control plane that runs
 * the import listeners (L4 or HTTP, one per imported service port) and the mTLS
 * export listener, with their upstream clusters, SDS secrets, an admin
 * endpoint (readiness, Prometheus metrics) and graceful draining.
 *
 * Config changes apply to new connections; open connections keep the
 * listener, cluster and TLS context they were made with until they end.
 */
export class Gateway {
  readonly metrics: GatewayMetrics;
  readonly adminPort: number;
  private readonly bootstrap: Bootstrap;
  private readonly logger: Logger;
  private readonly secrets = new SecretStore();
  private readonly connections = new ConnectionSet();
  private readonly listeners = new Map<string, RunningListener>();
  private readonly clusters = new Map<string, UpstreamCluster>();
  private listenerSpecs = new Map<string, ListenerSpec>();
  private clusterSpecs = new Map<string, ClusterSpec>();
  private assignments = new Map<string, LoadAssignmentSpec>();
  private secretSpecs = new Map<string, SecretSpec>();
  private routeSpecs = new Map<string, RouteConfigSpec>();
  /** Types whose config was applied at least once (a listener response also when some listener could not bind). */
  private readonly received = new Set<ResourceKind>();
  /** Listeners the control plane asked for that could not bind: why (`EADDRINUSE on 127.0.0.1:8080`). */
  private readonly bindFailures = new Map<string, string>();
  /** What `noteReadiness` saw last, so the log says when readiness changes, not on every update. */
  private wasReady = false;
  /** Ready once: from then on only listeners not serving and draining take readiness away (see `notReadyReasons`). */
  private warmedUp = false;
  private readonly ads: AdsConnection;
  private readonly admin: Server;
  private readonly ctx: ListenerContext;
  private readonly tunnels: TunnelPool | undefined;
  private readonly keepAlive: MuxKeepAlive;
  private draining = false;

  private constructor(init: { options: GatewayOptions; admin: { server: Server; port: number }; metrics: GatewayMetrics; registry: ProtoRegistry }) {
    this.bootstrap = init.options.bootstrap;
    this.logger = (init.options.logger ?? createLogger()).child({ component: "gateway", node: this.bootstrap.node.id });
    this.metrics = init.metrics;
    this.metrics.ready.labels().value = 0;
    this.admin = init.admin.server;
    this.adminPort = init.admin.port;
    const fedgate = this.bootstrap.fedgate;
    const keepAlive = (this.keepAlive = { intervalMs: fedgate.mux_keepalive_interval_ms, timeoutMs: fedgate.mux_keepalive_timeout_ms });
    this.tunnels = fedgate.mux_tunnels ? new TunnelPool({ metrics: this.metrics, logger: this.logger.child({ component: "tunnels" }), dial, keepAlive }) : undefined;
    this.ctx = {
      cluster: (name) => this.clusters.get(name),
      route: (name) => this.routeSpecs.get(name),
      secrets: this.secrets,
      metrics: this.metrics,
      logger: this.logger,
      connections: this.connections,
      handshakeTimeoutMs: this.bootstrap.fedgate.handshake_timeout_ms,
      tunnels: this.tunnels,
    };
    const node = this.bootstrap.node;
    const adsOptions: AdsClientOptions = {
      address: this.bootstrap.xds_servers[0]!.server_uri,
      registry: init.registry,
      node: { id: node.id, cluster: node.cluster, userAgentName: "fedgate-gateway", dataplane: "gateway" },
      logger: this.logger.child({ component: "ads-client" }),
      reconnect: { initialMs: this.bootstrap.fedgate.reconnect_initial_ms, maxMs: this.bootstrap.fedgate.reconnect_max_ms },
      onResponse: (kind, resources) => this.apply(kind, resources),
      onResult: (kind, accepted) => this.metrics.xdsUpdates.labels({ type: kind, result: accepted ? "ack" : "nack" }).add(),
      onStreamState: (up) => (this.metrics.xdsConnected.labels().value = up ? 1 : 0),
    };
    this.ads = this.bootstrap.fedgate.xds_protocol === "delta" ? new DeltaAdsClient(adsOptions) : new AdsClient(adsOptions);
  }

  static async start(options: GatewayOptions): Promise<Gateway> {
    const metrics = gatewayMetrics(new MetricsRegistry());
    const registry = options.registry ?? ProtoRegistry.load();
    const holder: { gateway?: Gateway } = {};
    const admin = await startAdmin({
      host: options.bootstrap.admin.address,
      port: options.bootstrap.admin.port,
      source: {
        notReadyReasons: () => holder.gateway?.notReadyReasons() ?? ["starting"],
        metricsText: () => metrics.registry.render(),
        listenerAddresses: () => holder.gateway?.listenerAddresses() ?? {},
        configSummary: () => holder.gateway?.configSummary() ?? {},
      },
    });
    const gateway = new Gateway({ options, admin, metrics, registry });
    holder.gateway = gateway;
    gateway.ads.start();
    return gateway;
  }

  /** Ready: no reason not to be (`notReadyReasons`). */
  ready(): boolean {
    return this.notReadyReasons().length === 0;
  }

  /**
   * Why the gateway is not ready, one line each (the body of `GET /ready`'s
   * 503); empty when ready. Until it was first ready: the first clusters and
   * listeners, and the endpoints, secrets and routes they reference. After
   * that, what a push adds is warming for the moment until its EDS/SDS/RDS
   * follows, which must not flap readiness on every new import (Envoy's
   * `/ready` likewise reflects only initialization and draining); what does
   * take it away: a listener the control plane asked for that is not serving
   * (it could not bind, until a later listener push binds it), and draining.
   */
  notReadyReasons(): string[] {
    const reasons: string[] = [];
    if (this.draining) reasons.push("draining");
    if (!this.warmedUp) reasons.push(...this.warmingReasons());
    for (const name of this.listenerSpecs.keys()) if (!this.listeners.has(name)) reasons.push(`listener ${name}: ${this.bindFailures.get(name) ?? "not bound"}`);
    return reasons;
  }

  private warmingReasons(): string[] {
    const reasons: string[] = [];
    if (!this.received.has("cluster")) reasons.push("no cluster config (CDS) applied yet");
    if (!this.received.has("listener")) reasons.push("no listener config (LDS) applied yet");
    for (const [name, c] of this.clusters) if (!c.hasAssignment) reasons.push(`cluster ${name}: no endpoints (EDS) yet`);
    for (const name of this.referencedSecrets()) if (!this.secrets.has(name)) reasons.push(`secret ${name}: not received (SDS) yet`);
    for (const name of this.referencedRoutes()) if (!this.routeSpecs.has(name)) reasons.push(`route ${name}: not received (RDS) yet`);
    return reasons;
  }

  /** Where each listener is bound (after port overrides). */
  listenerAddresses(): Record<string, { host: string; port: number }> {
    return Object.fromEntries([...this.listeners].map(([name, l]) => [name, l.bound]));
  }

  /** Stops accepting, waits for open connections (up to the bootstrap's drain timeout), then stops. Returns connections cut. */
  async drain(): Promise<number> {
    this.draining = true;
    this.noteReadiness();
    this.logger.info("draining", { open: this.connections.size });
    for (const l of this.listeners.values()) l.impl.close();
    this.ads.close();
    const cut = await this.connections.drain(this.bootstrap.fedgate.drain_timeout_ms);
    this.closeUpstreams();
    for (const c of this.clusters.values()) c.close();
    return cut;
  }

  /** Closes everything at once (tests; SIGTERM uses `drain`). */
  async close(): Promise<void> {
    this.draining = true;
    for (const l of this.listeners.values()) l.impl.close();
    this.ads.close();
    await this.connections.drain(0);
    this.closeUpstreams();
    for (const c of this.clusters.values()) c.close();
    this.admin.closeAllConnections();
    await new Promise<void>((resolve) => this.admin.close(() => resolve()));
  }

  /** The parsed running config and per-endpoint state (no private keys); `GET /config` serves it. */
  configSummary() {
    return {
      listeners: [...this.listenerSpecs.values()],
      clusters: [...this.clusterSpecs.values()],
      endpoints: [...this.assignments.values()],
      routes: [...this.routeSpecs.values()].map((r) => ({ ...r, virtualHosts: r.virtualHosts.map((v) => ({ ...v, routes: v.routes.map((x) => ({ ...x, retry: x.retry && { ...x.retry, retryOn: [...x.retry.retryOn] } })) })) })),
      secrets: [...this.secretSpecs.values()].map((s) => ({ name: s.name, kind: s.kind })),
      hosts: Object.fromEntries(
        [...this.clusters].map(([name, c]) => [name, c.allHosts().map((h) => ({ endpoint: h.key, priority: h.priority, healthy: h.spec.healthy, hcFailing: h.hcFailing, ejectedUntil: h.ejectedUntil }))]),
      ),
    };
  }

  private closeUpstreams(): void {
    this.tunnels?.close();
    for (const l of this.listeners.values()) if (l.impl instanceof HttpListener) l.impl.closeUpstreams();
  }

  private referencedRoutes(): string[] {
    return [...this.listenerSpecs.values()].flatMap((l) => (l.kind === "http" ? [l.routeConfig] : []));
  }

  private referencedSecrets(): Set<string> {
    const names = new Set<string>();
    for (const l of this.listenerSpecs.values()) if (l.kind === "sni-mtls") for (const c of l.chains) names.add(c.tls.certSecret).add(c.tls.bundleSecret);
    for (const c of this.clusterSpecs.values()) for (const m of c.tlsMatches) names.add(m.tls.certSecret).add(m.tls.bundleSecret);
    return names;
  }

  private async apply(kind: ResourceKind, resources: readonly DecodedResource[]): Promise<Problem[]> {
    if (this.draining) return [];
    switch (kind) {
      case "listener": {
        const parsed = parseAll(resources, parseListener);
        if (parsed.problems.length) return parsed.problems;
        // Listeners bind best-effort: what bound runs (and needs its routes and secrets) even when the rest is NACKed.
        const problems = await this.applyListeners(parsed.values);
        this.applied(kind);
        return problems;
      }
      case "cluster": {
        const parsed = parseAll(resources, parseCluster);
        if (parsed.problems.length) return parsed.problems;
        this.applyClusters(parsed.values);
        break;
      }
      case "endpoint": {
        const parsed = parseAll(resources, parseLoadAssignment);
        if (parsed.problems.length) return parsed.problems;
        this.assignments = parsed.values;
        this.assignEndpoints();
        break;
      }
      case "secret": {
        const parsed = parseAll(resources, parseSecret);
        if (parsed.problems.length) return parsed.problems;
        const prepared = this.secrets.prepare([...parsed.values.values()]);
        if (prepared.problems.length) return prepared.problems;
        prepared.install();
        this.secretSpecs = parsed.values;
        for (const l of this.listeners.values()) if (l.impl instanceof ExportListener) l.impl.enforceRevocations();
        this.logger.info("secrets installed", { names: [...parsed.values.keys()] });
        break;
      }
      case "route": {
        const parsed = parseAll(resources, parseRouteConfiguration);
        if (parsed.problems.length) return parsed.problems;
        this.routeSpecs = parsed.values;
        break;
      }
    }
    this.applied(kind);
    return [];
  }

  /** After a type's config ran: subscribe to what it references, and say whether readiness changed. */
  private applied(kind: ResourceKind): void {
    this.received.add(kind);
    this.ads.subscribe("endpoint", [...this.clusterSpecs.values()].map((c) => c.edsName));
    this.ads.subscribe("secret", [...this.referencedSecrets()]);
    this.ads.subscribe("route", this.referencedRoutes());
    this.noteReadiness();
  }

  /** Readiness as a gauge, and a log line when it changes (with the reasons when it is lost). */
  private noteReadiness(): void {
    const reasons = this.notReadyReasons();
    const ready = reasons.length === 0;
    this.warmedUp ||= ready;
    this.metrics.ready.labels().value = ready ? 1 : 0;
    if (ready === this.wasReady) return;
    this.wasReady = ready;
    if (ready) this.logger.info("ready");
    else this.logger.warn("not ready", { reasons });
  }

  private applyClusters(specs: Map<string, ClusterSpec>): void {
    for (const [name, c] of this.clusters) {
      if (specs.has(name)) continue;
      c.close();
      this.clusters.delete(name);
    }
    for (const [name, spec] of specs) {
      const existing = this.clusters.get(name);
      if (existing) existing.updateSpec(spec);
      else this.clusters.set(name, new UpstreamCluster({ spec, metrics: this.metrics, logger: this.logger, linkToPeer: (cluster, host) => linkTo(cluster, host, this.secrets, this.tunnels) }));
    }
    this.clusterSpecs = specs;
    this.assignEndpoints();
  }

  private assignEndpoints(): void {
    for (const c of this.clusters.values()) {
      const cla = this.assignments.get(c.spec.edsName);
      if (cla) c.setAssignment(cla);
    }
  }

  private bindAddress(spec: ListenerSpec): { host: string; port: number } {
    const override = this.bootstrap.fedgate.port_overrides[String(spec.address.port)];
    return { host: this.bootstrap.fedgate.bind_address ?? spec.address.host, port: override ?? spec.address.port };
  }

  /** Opens, updates in place, or closes listeners; a listener that cannot bind makes the update a NACK (and the gateway unready). */
  private async applyListeners(specs: Map<string, ListenerSpec>): Promise<Problem[]> {
    const problems: Problem[] = [];
    for (const name of this.bindFailures.keys()) {
      if (specs.has(name)) continue;
      this.bindFailures.delete(name);
      this.metrics.listenerNotServing.labels({ listener: name }).value = 0;
    }
    for (const [name, running] of this.listeners) {
      const next = specs.get(name);
      const want = next && this.bindAddress(next);
      const sameSocket = next && next.kind === running.spec.kind && want?.host === running.bound.host && (want.port === 0 || want.port === running.bound.port);
      if (next && sameSocket) {
        // Same socket: swap the config under it; open connections are untouched.
        running.spec = next;
        if (running.impl instanceof ExportListener && next.kind === "sni-mtls") running.impl.update(next);
        if (running.impl instanceof ImportListener && next.kind === "tcp") running.impl.spec = next;
        if (running.impl instanceof HttpListener && next.kind === "http") running.impl.spec = next;
        continue;
      }
      running.impl.close();
      this.listeners.delete(name);
    }
    for (const [name, spec] of specs) {
      if (this.listeners.has(name)) continue;
      const want = this.bindAddress(spec);
      try {
        const impl =
          spec.kind === "tcp"
            ? await ImportListener.start({ spec, ...want, ctx: this.ctx })
            : spec.kind === "http"
              ? await HttpListener.start({ spec, ...want, ctx: this.ctx })
              : await ExportListener.start({ spec, ...want, ctx: this.ctx, keepAlive: this.keepAlive });
        this.listeners.set(name, { spec, bound: { host: want.host, port: impl.port }, impl });
        if (this.bindFailures.delete(name)) this.metrics.listenerNotServing.labels({ listener: name }).value = 0;
        this.logger.info("listener up", { listener: name, host: want.host, port: impl.port });
      } catch (err) {
        if (!(err instanceof ListenFailedError)) throw err;
        const why = `${bindFailureCode(err)} on ${want.host}:${want.port}`;
        this.bindFailures.set(name, why);
        this.metrics.listenerNotServing.labels({ listener: name }).value = 1;
        this.logger.warn("listener cannot bind; not serving until a later listener push binds it", { listener: name, host: want.host, port: want.port, err });
        problems.push({ path: `listener ${name}`, message: `${err.message}: ${String((err.cause as Error | undefined)?.message)}` });
      }
    }
    this.listenerSpecs = specs;
    return problems;
  }
}

/** The system error code of a failed bind (EADDRINUSE, EACCES, EADDRNOTAVAIL, ...), else the cause's message. */
function bindFailureCode(err: ListenFailedError): string {
  const cause = err.cause;
  if (cause instanceof Error && "code" in cause && typeof cause.code === "string") return cause.code;
  return asError(cause).message;
}

function parseAll<T extends { name: string }>(resources: readonly DecodedResource[], parse: (raw: unknown, at: string) => Parsed<T>): { values: Map<string, T>; problems: Problem[] } {
  const values = new Map<string, T>();
  const problems: Problem[] = [];
  resources.forEach((r, i) => {
    if (!r.ok) return void problems.push(r.problem);
    const name = typeof r.value.name === "string" ? r.value.name : typeof r.value.cluster_name === "string" ? r.value.cluster_name : `resources[${i}]`;
    const parsed = parse(r.value, name);
    if (!parsed.ok) return void problems.push(...parsed.problems);
    if (values.has(parsed.value.name)) problems.push({ path: name, message: "listed twice" });
    values.set(parsed.value.name, parsed.value);
  });
  return { values, problems };
}
