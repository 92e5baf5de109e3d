import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { silentLogger, type Logger } from "../../common/index.ts";
import { Gateway, parseBootstrap, XdsServer, type Bootstrap, type ProtoRegistry, type FederationSnapshotInput, type ServicePolicyInput } from "../../gateway/index.ts";
import type { ClusterSetPki } from "./clusterset-pki.ts";

/**
 * Loopback fixtures for the gateway data plane: echo backends that announce
 * who they are, a control plane (XdsServer) and a gateway per simulated
 * cluster, and a client that makes one short TCP exchange.
 */

export const SERVICE_PORT = 9000;
export const SERVICE = { key: "demo/echo", namespace: "demo", name: "echo" } as const;

/** A TCP backend: sends `<id>\n` on connect, then echoes. Can be stopped and restarted on the same port. */
export class EchoBackend {
  port = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly id: string,
    readonly host = "127.0.0.1",
  ) {}

  static async start(id: string, port = 0, host = "127.0.0.1"): Promise<EchoBackend> {
    const b = new EchoBackend(id, host);
    await b.listen(port);
    return b;
  }

  async listen(port = this.port): Promise<void> {
    const server = createServer((s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => s.destroy());
      s.write(`${this.id}\n`);
      s.pipe(s);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, this.host, () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Connections the backend holds open now. */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** Stops listening and resets open connections (a dead pod). */
  async kill(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** An exchange that failed; `established` says whether a backend had already answered (an in-flight, not a new-connection, failure). */
export class ExchangeError extends Error {
  constructor(
    message: string,
    readonly established: boolean,
  ) {
    super(message);
  }
}

/** A client connection through A that stays open: what it received, whether it closed. */
export function openConnection(port: number): { socket: Socket; received: () => string; closed: () => boolean } {
  const socket = connect({ host: "127.0.0.1", port });
  let received = "";
  let closed = false;
  socket.on("data", (c: Buffer) => (received += c.toString()));
  socket.on("error", () => socket.destroy());
  socket.on("close", () => (closed = true));
  return { socket, received: () => received, closed: () => closed };
}

/** Connects, reads the backend id, checks one echo round trip, closes. Resolves with the id or rejects with ExchangeError. */
export function exchange(port: number, payload = "ping", timeoutMs = 10_000, host = "127.0.0.1"): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = "";
    const fail = (why: string) => reject(new ExchangeError(`exchange on ${port}: ${why}; got ${JSON.stringify(data)}`, data.includes("\n")));
    const timer = setTimeout(() => {
      socket.destroy();
      fail("timed out");
    }, timeoutMs);
    socket.on("connect", () => socket.write(payload));
    socket.on("data", (chunk) => {
      data += chunk.toString();
      const nl = data.indexOf("\n");
      if (nl >= 0 && data.slice(nl + 1) === payload) {
        clearTimeout(timer);
        socket.end();
        resolve(data.slice(0, nl));
      }
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      fail(err.message);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      fail("closed early");
    });
  });
}

/** Steady connection load: `workers` loops of `exchange` until stopped. */
export class ConnectionLoad {
  readonly served: string[] = [];
  readonly newConnectionFailures: string[] = [];
  readonly inFlightFailures: string[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(port: () => number, workers = 4) {
    this.loops = Array.from({ length: workers }, async () => {
      while (this.running) {
        try {
          this.served.push(await exchange(port()));
        } catch (err) {
          if (!(err instanceof ExchangeError)) throw err;
          (err.established ? this.inFlightFailures : this.newConnectionFailures).push(err.message);
        }
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

export interface SimCluster {
  name: string;
  xds: XdsServer;
  gateway: Gateway;
  backends: EchoBackend[];
  leafPem: { chainPem: string; keyPem: string };
  /** Revocation lists (PEM) the control plane hands this gateway in its bundle secret. */
  revocationsPem?: string;
}

export async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface TopologyOptions {
  pki: ClusterSetPki;
  registry: ProtoRegistry;
  /** Exporting clusters (in export order) and their backends. */
  exporters: readonly string[];
  policy?: ServicePolicyInput;
  consumers?: readonly string[];
  handshakeTimeoutMs?: number;
  /** Where the gateways log (each as a child with `cluster`); silent by default. */
  logger?: Logger;
  /** false: gateways dial one mTLS connection per relayed connection (no fedgate-mux tunnels). */
  muxTunnels?: boolean;
  /** The tunnels' keep-alive (bootstrap `mux_keepalive_*`); the gateway's defaults when absent. */
  keepAlive?: { intervalMs: number; timeoutMs: number };
  /** The gateways' ADS protocol (bootstrap `xds_protocol`); the gateway's default when absent. */
  xdsProtocol?: "delta" | "sotw";
}

/** Snapshot for `self`: demo/echo (L4 port 9000) exported by `exporters`, peers reached at their gateways' bound export ports. */
export function topologySnapshot(options: {
  self: string;
  pki: ClusterSetPki;
  exporters: readonly string[];
  exportPorts: ReadonlyMap<string, number>;
  backends: readonly { port: number }[];
  leaf: { chainPem: string; keyPem: string };
  revocationsPem?: string;
  policy?: ServicePolicyInput;
  consumers?: readonly string[];
  extraServices?: FederationSnapshotInput["services"];
}): FederationSnapshotInput {
  const zone = (c: string) => `z-${c}`;
  const exports = options.exporters.map((cluster) => ({
    cluster,
    namespace: SERVICE.namespace,
    name: SERVICE.name,
    ports: [{ name: "tcp", protocol: "TCP" as const, port: SERVICE_PORT }],
    type: "ClusterSetIP" as const,
    sessionAffinity: "None" as const,
    readyEndpoints: [{ zone: zone(cluster), ready: 1 }],
    gateway: { host: "127.0.0.1", port: options.exportPorts.get(cluster) ?? 15443 },
    ...(options.consumers ? { consumers: [...options.consumers] } : {}),
  }));
  const clusters = [...new Set([options.self, ...options.exporters])];
  return {
    self: { cluster: options.self, region: `r-${options.self}`, zone: zone(options.self) },
    services: [{ ...SERVICE, exports }, ...(options.extraServices ?? [])],
    clusters: clusters.map((name) => ({ name, leaseLive: true, stale: false })),
    localEndpoints: new Map([[SERVICE.key, options.backends.map((b) => ({ address: "127.0.0.1", port: b.port, zone: zone(options.self), ready: true }))]]),
    policies: new Map([[SERVICE.key, options.policy ?? {}]]),
    tls: { trustDomain: options.pki.trustDomain, gatewayCertChainPem: options.leaf.chainPem, gatewayKeyPem: options.leaf.keyPem, trustBundlePems: options.pki.bundle.caPems(), revocationsPem: options.revocationsPem ?? "" },
  };
}

export async function gatewayLeaf(pki: ClusterSetPki, cluster: string): Promise<{ chainPem: string; keyPem: string }> {
  const leaf = await pki.identity(cluster).intermediate.issueLeaf({ spiffeId: `spiffe://${pki.trustDomain}/cluster/${cluster}/gateway` });
  return { chainPem: leaf.chainPem, keyPem: leaf.privateKeyPem ?? "" };
}

export function gatewayBootstrap(name: string, xds: XdsServer, handshakeTimeoutMs = 5_000, importPort = SERVICE_PORT) {
  return parseBootstrap({
    node: { id: `gw-${name}`, cluster: name },
    xds_servers: [{ server_uri: xds.address }],
    admin: { address: "127.0.0.1", port: 0 },
    fedgate: { bind_address: "127.0.0.1", port_overrides: { "15443": 0, [String(importPort)]: 0 }, handshake_timeout_ms: handshakeTimeoutMs, drain_timeout_ms: 2_000, reconnect_initial_ms: 50, reconnect_max_ms: 500 },
  });
}

/** The bootstrap with the tests' tunnel settings: tunnels on or off, and a keep-alive (the gateway's defaults when absent). */
export function withTunnelOptions(bootstrap: Bootstrap, options: { muxTunnels?: boolean; keepAlive?: { intervalMs: number; timeoutMs: number } }): Bootstrap {
  const keepAlive = options.keepAlive ? { mux_keepalive_interval_ms: options.keepAlive.intervalMs, mux_keepalive_timeout_ms: options.keepAlive.timeoutMs } : {};
  return { ...bootstrap, fedgate: { ...bootstrap.fedgate, mux_tunnels: options.muxTunnels ?? bootstrap.fedgate.mux_tunnels, ...keepAlive } };
}

/**
 * Wires simulated clusters to each other once every gateway is up: records
 * each exporter's bound export port, re-pushes every snapshot with them, and
 * waits until each gateway is ready and reaches every peer.
 */
export async function wireExportPorts(
  clusters: ReadonlyMap<string, { name: string; gateway: Gateway }>,
  exporters: readonly string[],
  exportPorts: Map<string, number>,
  push: (name: string) => void,
): Promise<void> {
  for (const [name, sim] of clusters) {
    if (!exporters.includes(name)) continue;
    await waitFor(`${name}'s export listener`, () => sim.gateway.listenerAddresses()["fedgate-export-15443"] !== undefined);
    exportPorts.set(name, sim.gateway.listenerAddresses()["fedgate-export-15443"]!.port);
  }
  for (const name of clusters.keys()) push(name);
  const peersWired = (sim: { name: string; gateway: Gateway }) => {
    const ports = new Set(sim.gateway.configSummary().endpoints.flatMap((e) => e.localities.flatMap((l) => l.endpoints.map((x) => x.address.port))));
    return [...exportPorts].every(([peer, port]) => peer === sim.name || ports.has(port));
  };
  for (const sim of clusters.values()) await waitFor(`${sim.name} ready with peers`, () => sim.gateway.ready() && peersWired(sim));
}

/**
 * Simulated clusters, each with a control plane and a gateway; `backendsPer`
 * backends per cluster. Peers' export ports are wired in once every gateway is up.
 */
/** What the L4 and L7 test topologies share: simulated clusters by name, each a gateway fed by its own xDS server. */
export abstract class GatewayTopology<C extends { xds: XdsServer; gateway: Gateway }> {
  readonly clusters = new Map<string, C>();
  readonly exportPorts = new Map<string, number>();
  /** The service port whose import listener `importPort` finds. */
  protected abstract readonly servicePort: number;

  get(name: string): C {
    const sim = this.clusters.get(name);
    if (!sim) throw new RangeError(`no cluster ${name}`);
    return sim;
  }

  importPort(name: string): number {
    const port = this.get(name).gateway.listenerAddresses()[`fedgate-import-${this.servicePort}`]?.port;
    if (!port) throw new Error(`${name} has no import listener`);
    return port;
  }

  metric(name: string, metric: string, labels: Record<string, string> = {}): number {
    return this.get(name).gateway.metrics.registry.value(metric, labels);
  }

  async close(): Promise<void> {
    for (const sim of this.clusters.values()) {
      await sim.gateway.close();
      await sim.xds.close();
      await this.killBackends(sim);
    }
  }

  protected abstract killBackends(sim: C): Promise<void>;
}

export class Topology extends GatewayTopology<SimCluster> {
  protected readonly servicePort = SERVICE_PORT;
  private readonly options: TopologyOptions;
  policy: ServicePolicyInput | undefined;
  consumers: readonly string[] | undefined;
  extraServices: FederationSnapshotInput["services"] = [];

  private constructor(options: TopologyOptions) {
    super();
    this.options = options;
    this.policy = options.policy;
    this.consumers = options.consumers;
  }

  static async start(options: TopologyOptions & { members: Record<string, number> }): Promise<Topology> {
    const t = new Topology(options);
    for (const [name, count] of Object.entries(options.members)) {
      const backends = await Promise.all(Array.from({ length: count }, (_, i) => EchoBackend.start(`${name}-${i + 1}`)));
      const xds = await XdsServer.start({});
      const leafPem = await gatewayLeaf(options.pki, name);
      const sim: SimCluster = { name, xds, backends, leafPem, gateway: undefined as unknown as Gateway };
      t.clusters.set(name, sim);
      t.push(name);
      const tunnelled = withTunnelOptions(gatewayBootstrap(name, xds, options.handshakeTimeoutMs), options);
      const bootstrap = { ...tunnelled, fedgate: { ...tunnelled.fedgate, xds_protocol: options.xdsProtocol ?? tunnelled.fedgate.xds_protocol } };
      sim.gateway = await Gateway.start({ bootstrap, logger: options.logger?.child({ cluster: name }) ?? silentLogger, registry: options.registry });
    }
    await wireExportPorts(t.clusters, options.exporters, t.exportPorts, (name) => t.push(name));
    return t;
  }

  /**
   * Closes `name`'s control plane and runs `whileDown` once its gateway saw
   * the stream drop; then a new control plane on the same port serves one new
   * echo backend, `backendId`, and the gateway reconnects. Returns the
   * backends it replaced, for the caller to kill once done with them.
   */
  async restartControlPlane(name: string, backendId: string, whileDown: () => Promise<void>): Promise<EchoBackend[]> {
    const sim = this.get(name);
    const port = sim.xds.port;
    await sim.xds.close();
    await waitFor("stream down", () => this.metric(name, "fedgate_gateway_xds_connected") === 0);
    await whileDown();
    const replaced = sim.backends;
    sim.backends = [await EchoBackend.start(backendId)];
    sim.xds = await XdsServer.start({ port });
    this.push(name);
    await waitFor("reconnected", () => this.metric(name, "fedgate_gateway_xds_connected") === 1);
    return replaced;
  }

  /** Re-publishes `name`'s snapshot from the current state (backends, ports, policy, leaf). */
  push(name: string): void {
    const sim = this.get(name);
    sim.xds.setSnapshot(
      topologySnapshot({
        self: name,
        pki: this.options.pki,
        exporters: this.options.exporters,
        exportPorts: this.exportPorts,
        backends: sim.backends,
        leaf: sim.leafPem,
        ...(sim.revocationsPem ? { revocationsPem: sim.revocationsPem } : {}),
        policy: this.policy,
        consumers: this.consumers,
        extraServices: this.extraServices,
      }),
    );
    sim.xds.flush();
  }

  protected async killBackends(sim: SimCluster): Promise<void> {
    for (const b of sim.backends) await b.kill();
  }
}

export const OUTBOUND = `outbound|${SERVICE_PORT}||echo.demo.svc.clusterset.local`;
export const INBOUND = `inbound|${SERVICE_PORT}||echo.demo.svc.cluster.local`;
export const EXPORT_SNI = `outbound_.${SERVICE_PORT}_._.echo.demo.svc.clusterset.local`;
