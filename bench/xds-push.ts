/**
 * xDS push latency: time from a change in the merged view to the new config
 * ACKed by every concerned node, with N raw ADS clients (default 1, 10, 100).
 * Default debounce (10 ms quiet) included. Two scenarios:
 * - `endpoints`: a cluster's local endpoints withdrawn or restored; proxyless
 *   nodes, half watching the changed service's ClusterLoadAssignment and half
 *   another one's: the second half must receive no push at all.
 * - `export`: an export added or removed among 200; gateway nodes with
 *   wildcard CDS, so every node is sent all ~200 clusters each time.
 *
 * The nodes run in a child process (bench/xds-push-clients.ts), each on its
 * own connection, so this process is the server alone: its heap and RSS
 * growth per connected node, and its CPU per change, are the server's. The
 * child's CPU per change is what the simulated nodes cost (both share the
 * machine's cores).
 * Run: node --expose-gc --import tsx bench/xds-push.ts   (XDS_BENCH_N=100,1000 XDS_BENCH_ROUNDS=100)
 */
import { fork, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { XdsServer, type FederationSnapshotInput } from "../gateway/index.ts";
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
  dataplane: "gateway" | "proxyless";
  kind: "cluster" | "endpoint";
  names: string[];
}

interface Scenario {
  name: string;
  /** The snapshot of round `round` (-1: the initial one); consecutive rounds differ. */
  snapshot(round: number): FederationSnapshotInput;
  node(id: string, i: number): NodeSpec;
  /** Whether node `i` (-1: the warm-up node) must be pushed each change. */
  concerned(i: number): boolean;
}

const SCENARIOS: Scenario[] = [
  {
    name: "endpoints",
    snapshot(round) {
      const base = echoSnapshot({ localPort: round % 2 === 0 ? undefined : 9000, remotePort: 7001, tls: TLS });
      const echo = base.services[0]!;
      return { ...base, services: [echo, renamed(echo, "other")] };
    },
    node: (id, i) => ({ id, dataplane: "proxyless", kind: "endpoint", names: [i % 2 === 0 ? ECHO : OTHER] }),
    concerned: (i) => i % 2 === 0,
  },
  {
    name: "export",
    snapshot(round) {
      const base = echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS });
      const echo = base.services[0]!;
      const count = SERVICES_IN_EXPORT_SCENARIO + (round % 2 === 0 ? 1 : 0);
      return { ...base, services: [echo, ...Array.from({ length: count - 1 }, (_, i) => renamed(echo, `svc-${i}`))] };
    },
    node: (id) => ({ id, dataplane: "gateway", kind: "cluster", names: [] }),
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

async function run(scenario: Scenario, n: number) {
  const server = await XdsServer.start({});
  server.setSnapshot(scenario.snapshot(-1));
  server.flush();
  const nodes = new Nodes();
  await nodes.started();
  // A first node warms the lazily built gRPC and codec state, so it is not charged to the N.
  await nodes.connect(server.address, [scenario.node("warm-up", 0)]);
  const concerned = new Set(["warm-up"]);
  const kind = scenario.node("warm-up", 0).kind;
  const before = await settle();
  const batch = Array.from({ length: n }, (_, i) => scenario.node(`node-${i}`, i));
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
    const acked = new Map<string, number>();
    const pushed = new Map<string, string>();
    const t0 = performance.now();
    const done = new Promise<void>((resolve) => {
      const stop = server.onEvent((e) => {
        if (e.type === "push" && e.kind === kind) pushed.set(e.nodeId, e.version);
        if (e.type === "ack" && e.kind === kind && concerned.has(e.nodeId) && pushed.get(e.nodeId) === e.version) {
          acked.set(e.nodeId, performance.now() - t0);
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

const rows: string[] = [];
const wanted = (process.env.XDS_BENCH_SCENARIOS ?? "endpoints,export").split(",");
for (const scenario of SCENARIOS.filter((s) => wanted.includes(s.name))) {
  for (const n of (process.env.XDS_BENCH_N ?? "1,10,100").split(",").map(Number)) {
    const r = await run(scenario, n);
    const f = (v: number) => v.toFixed(1);
    const memory = (bytes: number) => (r.n >= MIN_NODES_FOR_MEMORY ? f(bytes / 1024) : "—");
    rows.push(
      `| ${r.scenario} | ${r.n} | ${r.concerned} | ${f(percentile(r.perNode, 50))} | ${f(percentile(r.perNode, 99))} | ${f(percentile(r.allAcked, 50))} | ${f(percentile(r.allAcked, 99))} | ${r.unconcernedPushes} | ${f(r.serverCpuPerChange)} | ${f(r.clientCpuPerChange)} | ${memory(r.heapPerNode)} | ${memory(r.rssPerNode)} |`,
    );
  }
}
console.log(`xDS push → ACK, ${ROUNDS} changes per row, debounce 10 ms included (node ${process.version}, ${process.platform}${global.gc ? "" : ", no --expose-gc: memory figures are rough"})\n`);
console.log("| change | nodes | concerned | per-node p50 ms | per-node p99 ms | all-ACKed p50 ms | all-ACKed p99 ms | pushes to unconcerned nodes | server CPU ms/change | node-process CPU ms/change | server heap KiB/node | server RSS KiB/node |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const row of rows) console.log(row);
