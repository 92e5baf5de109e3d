/**
 * xDS push latency, state of the world and delta side by side: time from a
 * change in the merged view to the new config ACKed by every concerned node,
 * with N raw ADS clients (default 1, 10, 100) of each protocol. Default
 * debounce (10 ms quiet) included. Three scenarios:
 * - `endpoints`: a cluster's local endpoints withdrawn or restored; proxyless
 *   nodes, half watching the changed service's ClusterLoadAssignment and half
 *   another one's: the second half must receive no push at all.
 * - `export`: an export added or removed among 200 services; gateway nodes
 *   with wildcard CDS and EDS (what an export adds: its clusters and their
 *   ClusterLoadAssignments). State of the world resends all ~400 clusters.
 * - `export-gateway`: the same change to nodes subscribed like a gateway
 *   (CDS, EDS, LDS, the import RDS, SDS): the export listener and the import
 *   RouteConfiguration list every service, so they change with every export.
 * - `export-gateway-ports`: as `export-gateway`, but with a gateway port
 *   allocated per imported service port, as the controller's data-plane feed
 *   always supplies: each service gets its own import listener and route, so
 *   only the export listener (a filter chain per local export) still lists
 *   every service.
 *
 * The nodes run in a child process (bench/xds-push-clients.ts), each on its
 * own connection, so this process is the server alone: its heap and RSS
 * growth per connected node, and its CPU per change, are the server's. The
 * child's CPU per change is what the simulated nodes cost (both share the
 * machine's cores, as does anything else running: the load average is
 * printed with the table).
 * Run: node --initial-old-space-size=128 --expose-gc --import tsx bench/xds-push.ts
 *   (the V8 heap flag of the controller's Deployment, manifests/deploy/20-controller.yaml: this
 *   process is the xDS server; the header prints the flags it ran with)
 *   (XDS_BENCH_N=100,1000 XDS_BENCH_ROUNDS=100 XDS_BENCH_SCENARIOS=export XDS_BENCH_PROTOCOLS=sotw,delta
 *   XDS_BENCH_WINDOW_BYTES=…: the nodes' HTTP/2 receive window, default the gateway ADS client's ADS_RECEIVE_WINDOW_BYTES; 0: grpc-js's 64 KiB)
 */
import { fork, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { XdsServer, xdsNames, type FederationSnapshotInput, type ResourceKind, type XdsProtocolKind } from "../gateway/index.ts";
import { echoSnapshot } from "../test/support/xds-harness.ts";

const ROUNDS = Number(process.env.XDS_BENCH_ROUNDS ?? 100);
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TLS = { trustDomain: "fedgate.test", gatewayCertChainPem: PEM, gatewayKeyPem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", trustBundlePems: [PEM] };
const ECHO = "outbound|50051||echo.demo.svc.clusterset.local";
const OTHER = "outbound|50051||other.demo.svc.clusterset.local";
const SERVICES_IN_EXPORT_SCENARIO = 200;
const CLIENTS = path.join(path.dirname(fileURLToPath(import.meta.url)), "xds-push-clients.ts");

type Service = FederationSnapshotInput["services"][number];

function renamed(service: Service, name: string): Service {
  return { ...service, key: `demo/${name}`, name, exports: service.exports.map((e) => ({ ...e, name })) };
}

interface NodeSpec {
  id: string;
  protocol: XdsProtocolKind;
  dataplane: "gateway" | "proxyless";
  subscriptions: { kind: ResourceKind; names: string[] }[];
}

interface Scenario {
  name: string;
  /** The snapshot of round `round` (-1: the initial one); consecutive rounds differ. */
  snapshot(round: number): FederationSnapshotInput;
  node(id: string, i: number, protocol: XdsProtocolKind): NodeSpec;
  /** Whether node `i` (-1: the warm-up node) must be pushed each change. */
  concerned(i: number): boolean;
}

function exportSnapshot(round: number): FederationSnapshotInput {
  const base = echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  const count = SERVICES_IN_EXPORT_SCENARIO + (round % 2 === 0 ? 1 : 0);
  return { ...base, services: [echo, ...Array.from({ length: count - 1 }, (_, i) => renamed(echo, `svc-${i}`))] };
}

/** The controller's allocation: a gateway port per imported service port (federation/kube/import-ports.ts). */
const FIRST_IMPORT_PORT = 20000;

function exportSnapshotWithImportPorts(round: number): FederationSnapshotInput {
  const snapshot = exportSnapshot(round);
  const importPorts = new Map(snapshot.services.map((s, i) => [s.key, [{ port: 50051, gatewayPort: FIRST_IMPORT_PORT + i }]]));
  return { ...snapshot, importPorts };
}

const GATEWAY_SUBSCRIPTIONS: NodeSpec["subscriptions"] = [
  { kind: "cluster", names: [] },
  { kind: "endpoint", names: ["*"] },
  { kind: "listener", names: [] },
  { kind: "route", names: [xdsNames.importListenerName(50051)] },
  { kind: "secret", names: [xdsNames.GATEWAY_CERT_SECRET, xdsNames.TRUST_BUNDLE_SECRET] },
];

const SCENARIOS: Scenario[] = [
  {
    name: "endpoints",
    snapshot(round) {
      const base = echoSnapshot({ localPort: round % 2 === 0 ? undefined : 9000, remotePort: 7001, tls: TLS });
      const echo = base.services[0]!;
      return { ...base, services: [echo, renamed(echo, "other")] };
    },
    node: (id, i, protocol) => ({ id, protocol, dataplane: "proxyless", subscriptions: [{ kind: "endpoint", names: [i % 2 === 0 ? ECHO : OTHER] }] }),
    concerned: (i) => i % 2 === 0,
  },
  {
    name: "export",
    snapshot: exportSnapshot,
    node: (id, _i, protocol) => ({ id, protocol, dataplane: "gateway", subscriptions: GATEWAY_SUBSCRIPTIONS.slice(0, 2) }),
    concerned: () => true,
  },
  {
    name: "export-gateway",
    snapshot: exportSnapshot,
    node: (id, _i, protocol) => ({ id, protocol, dataplane: "gateway", subscriptions: GATEWAY_SUBSCRIPTIONS }),
    concerned: () => true,
  },
  {
    name: "export-gateway-ports",
    snapshot: exportSnapshotWithImportPorts,
    node: (id, _i, protocol) => ({
      id,
      protocol,
      dataplane: "gateway",
      // Every route name up front: a gateway subscribes to a new listener's route once LDS names it.
      subscriptions: GATEWAY_SUBSCRIPTIONS.map((s) =>
        s.kind === "route" ? { kind: s.kind, names: Array.from({ length: SERVICES_IN_EXPORT_SCENARIO + 1 }, (_, i) => xdsNames.importListenerName(FIRST_IMPORT_PORT + i)) } : s,
      ),
    }),
    concerned: () => true,
  },
];

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** The child process holding the simulated nodes. */
class Nodes {
  private readonly child: ChildProcess;
  private readonly replies: { type: string; [k: string]: unknown }[] = [];
  private readonly waiters = new Set<() => void>();

  constructor() {
    this.child = fork(CLIENTS, [], { execArgv: ["--import", "tsx"], stdio: "inherit" });
    this.child.on("message", (m: { type: string }) => {
      this.replies.push(m);
      for (const w of [...this.waiters]) w();
    });
  }

  private next(type: string): Promise<{ [k: string]: unknown }> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.replies.findIndex((r) => r.type === type || r.type === "failed");
        if (i < 0) return;
        const [r] = this.replies.splice(i, 1);
        this.waiters.delete(check);
        if (r?.type === "failed") reject(new Error(String(r.error)));
        else resolve(r ?? {});
      };
      this.waiters.add(check);
      check();
    });
  }

  async started(): Promise<void> {
    await this.next("started");
  }

  async connect(address: string, nodes: NodeSpec[]): Promise<void> {
    this.child.send({ cmd: "connect", address, nodes });
    await this.next("connected");
  }

  async cpuMs(): Promise<number> {
    this.child.send({ cmd: "cpu" });
    const { usage } = (await this.next("cpu")) as { usage: NodeJS.CpuUsage };
    return (usage.user + usage.system) / 1000;
  }

  async close(): Promise<void> {
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.send({ cmd: "close" });
    await exited;
  }
}

async function settle(): Promise<{ heap: number; rss: number }> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 200));
    global.gc?.();
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

/** Below this many nodes the growth is lost in GC and allocator noise. */
const MIN_NODES_FOR_MEMORY = 100;

async function run(scenario: Scenario, n: number, protocol: XdsProtocolKind) {
  const server = await XdsServer.start({});
  server.setSnapshot(scenario.snapshot(-1));
  server.flush();
  const nodes = new Nodes();
  await nodes.started();
  // A first node warms the lazily built gRPC and codec state, so it is not charged to the N.
  await nodes.connect(server.address, [scenario.node("warm-up", 0, protocol)]);
  const concerned = new Set(["warm-up"]);
  const before = await settle();
  const batch = Array.from({ length: n }, (_, i) => scenario.node(`node-${i}`, i, protocol));
  batch.forEach((b, i) => {
    if (scenario.concerned(i)) concerned.add(b.id);
  });
  await nodes.connect(server.address, batch);
  const after = await settle();

  const perNode: number[] = [];
  const allAcked: number[] = [];
  let unconcernedPushes = 0;
  const off = server.onEvent((e) => {
    if (e.type === "push" && !concerned.has(e.nodeId)) unconcernedPushes += 1;
  });
  const serverCpu0 = process.cpuUsage();
  const clientCpu0 = await nodes.cpuMs();
  for (let round = 0; round < ROUNDS; round++) {
    // A change's pushes to one node (one per type it concerns) go out in one flush; the node is
    // done when it has ACKed each of them.
    const pushed = new Map<string, Map<ResourceKind, string>>();
    const ackedKinds = new Map<string, Set<ResourceKind>>();
    const acked = new Map<string, number>();
    const t0 = performance.now();
    const done = new Promise<void>((resolve) => {
      const stop = server.onEvent((e) => {
        if (!concerned.has(e.nodeId)) return;
        if (e.type === "push") {
          const kinds = pushed.get(e.nodeId) ?? new Map<ResourceKind, string>();
          kinds.set(e.kind, e.version);
          pushed.set(e.nodeId, kinds);
        }
        if (e.type === "ack" && pushed.get(e.nodeId)?.get(e.kind) === e.version) {
          const kinds = ackedKinds.get(e.nodeId) ?? new Set<ResourceKind>();
          kinds.add(e.kind);
          ackedKinds.set(e.nodeId, kinds);
          if (kinds.size === pushed.get(e.nodeId)?.size) acked.set(e.nodeId, performance.now() - t0);
          if (acked.size === concerned.size) {
            stop();
            resolve();
          }
        }
      });
    });
    server.setSnapshot(scenario.snapshot(round));
    await done;
    perNode.push(...acked.values());
    allAcked.push(Math.max(...acked.values()));
  }
  const serverCpu = process.cpuUsage(serverCpu0);
  const clientCpuMs = (await nodes.cpuMs()) - clientCpu0;
  off();
  await nodes.close();
  await server.close();
  return {
    scenario: scenario.name,
    protocol,
    n,
    concerned: concerned.size,
    perNode,
    allAcked,
    unconcernedPushes,
    heapPerNode: (after.heap - before.heap) / n,
    rssPerNode: (after.rss - before.rss) / n,
    serverCpuPerChange: (serverCpu.user + serverCpu.system) / 1000 / ROUNDS,
    clientCpuPerChange: clientCpuMs / ROUNDS,
  };
}

type Result = Awaited<ReturnType<typeof run>>;

function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

const f = (v: number) => v.toFixed(1);
const results: Result[] = [];
const loadBefore = loadAverage();
const startedAt = new Date().toISOString().slice(11, 16);
const wanted = (process.env.XDS_BENCH_SCENARIOS ?? "endpoints,export,export-gateway,export-gateway-ports").split(",");
const protocols = (process.env.XDS_BENCH_PROTOCOLS ?? "sotw,delta").split(",") as XdsProtocolKind[];
for (const scenario of SCENARIOS.filter((s) => wanted.includes(s.name))) {
  for (const n of (process.env.XDS_BENCH_N ?? "1,10,100").split(",").map(Number)) {
    // The two protocols back to back, so they meet the same machine load.
    for (const protocol of protocols) results.push(await run(scenario, n, protocol));
  }
}
const loadAfter = loadAverage();
console.log(
  `xDS push → ACK, ${ROUNDS} changes per row, debounce 10 ms included (node ${process.version}, ${process.platform}, flags: ${process.execArgv.filter((a) => a.startsWith("--") && a !== "--import").join(" ") || "none"}${global.gc ? "" : ", no --expose-gc: memory figures are rough"}); ` +
    `${startedAt}–${new Date().toISOString().slice(11, 16)} UTC, load average (1/5/15 min) ${loadBefore} before, ${loadAfter} after\n`,
);
console.log("| change | protocol | nodes | concerned | per-node p50 ms | per-node p99 ms | all-ACKed p50 ms | all-ACKed p99 ms | pushes to unconcerned nodes | server CPU ms/change | node-process CPU ms/change | server heap KiB/node | server RSS KiB/node |");
console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of results) {
  const memory = (bytes: number) => (r.n >= MIN_NODES_FOR_MEMORY ? f(bytes / 1024) : "—");
  console.log(
    `| ${r.scenario} | ${r.protocol} | ${r.n} | ${r.concerned} | ${f(percentile(r.perNode, 50))} | ${f(percentile(r.perNode, 99))} | ${f(percentile(r.allAcked, 50))} | ${f(percentile(r.allAcked, 99))} | ${r.unconcernedPushes} | ${f(r.serverCpuPerChange)} | ${f(r.clientCpuPerChange)} | ${memory(r.heapPerNode)} | ${memory(r.rssPerNode)} |`,
  );
}
const pairs = results.filter((r) => r.protocol === "delta").map((d) => [results.find((s) => s.protocol === "sotw" && s.scenario === d.scenario && s.n === d.n), d] as const);
if (pairs.some(([s]) => s)) {
  console.log("\nRatios, delta ÷ state of the world (below 1: delta is cheaper or faster)\n");
  console.log("| change | nodes | all-ACKed p50 | all-ACKed p99 | server CPU/change | node-process CPU/change | server heap/node |");
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? (a / b).toFixed(2) : "—");
  for (const [s, d] of pairs) {
    if (!s) continue;
    const heap = d.n >= MIN_NODES_FOR_MEMORY ? ratio(d.heapPerNode, s.heapPerNode) : "—";
    console.log(
      `| ${d.scenario} | ${d.n} | ${ratio(percentile(d.allAcked, 50), percentile(s.allAcked, 50))} | ${ratio(percentile(d.allAcked, 99), percentile(s.allAcked, 99))} | ${ratio(d.serverCpuPerChange, s.serverCpuPerChange)} | ${ratio(d.clientCpuPerChange, s.clientCpuPerChange)} | ${heap} |`,
    );
  }
}
