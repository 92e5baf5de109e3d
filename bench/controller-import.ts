/**
 * Kubernetes federation controller benchmark, on 3 real kube-apiservers
 * (etcd each) and a real nats-server, with each cluster's controller in its
 * own child process.
 *
 * 1. Create-to-import latency: Service + EndpointSlice + ServiceExport created
 *    in cluster A; the clock starts when the ServiceExport create call's
 *    response has been received, and stops when B's watches have delivered
 *    both the ServiceImport and its derived EndpointSlice (and, separately,
 *    the ServiceImport carrying its ClusterSetIP). Sequential (one export at a
 *    time) and burst (all created at once). Interleaved with two baselines:
 *    the raw Kubernetes cost (ConfigMap create call issued in A → ADDED event
 *    on a watch in A) and the exchange alone (publishExport → the change at a
 *    peer's watchServices).
 * 2. Controller memory and CPU with 1k and 10k exports spread over the 3
 *    clusters: RSS and heap after convergence (after a forced GC), CPU spent
 *    converging, CPU over 30 s of idling.
 *
 * Run: node --import tsx bench/controller-import.ts [--quick] [--cpu-prof] [--deadline-min=N] [--only-scale=N] [--tsx-children]
 * (the controller children run the build in dist/, which the bench makes first with `npm run build`;
 * --tsx-children runs them from the TypeScript sources through tsx instead;
 * --cpu-prof writes the controller children's profiles to $TMPDIR/fedgate-bench-profiles/,
 * summarized by bench/support/cpu-profile-summary.ts;
 * --deadline-min bounds the wait for convergence of each scale, default 35).
 */
import * as k8s from "@kubernetes/client-node";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asError } from "../common/index.ts";
import type { ServiceChange } from "../federation/index.ts";
import { exportOf } from "../test/support/exchange-harness.ts";
import { BenchClusterSet, CLUSTERS, type BenchMember } from "./support/bench-clusterset.ts";
import type { ChildRuntime } from "./support/controller-child.ts";
import type { Usage } from "./support/controller-protocol.ts";
import { KeepAliveClient } from "./support/keep-alive-client.ts";
import { createExport, limited, percentile } from "./support/mcs-objects.ts";

const quick = process.argv.includes("--quick");
const runtime: ChildRuntime = process.argv.includes("--tsx-children") ? "tsx" : "compiled";
const cpuProfileDir = process.argv.includes("--cpu-prof") ? join(tmpdir(), "fedgate-bench-profiles") : undefined;
const LATENCY_SAMPLES = quick ? 50 : 200;
const WARM_UP_SAMPLES = 5;
const onlyScale = process.argv.find((a) => a.startsWith("--only-scale="))?.split("=")[1];
const SCALES = onlyScale ? [Number(onlyScale)] : quick ? [1_000] : [1_000, 10_000];
const CREATES_IN_FLIGHT_PER_CLUSTER = 16;
const IDLE_WINDOW_MS = 30_000;
const PROGRESS_EVERY_MS = 15_000;
/** A run that has not converged by then is reported as such, with how far it got. */
const CONVERGE_DEADLINE_MS = Number(process.argv.find((a) => a.startsWith("--deadline-min="))?.split("=")[1] ?? (quick ? 15 : 35)) * 60_000;
const MB = 1024 * 1024;

const loadavg = () => readFileSync("/proc/loadavg", "utf8").trim().split(" ").slice(0, 3).join(" ");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);

interface Stats {
  p50: number;
  p99: number;
  max: number;
}
function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN };
}

/** Resolves with the arrival time of the ADDED event for each ConfigMap name, on a watch in the cluster where it is created. */
class ConfigMapWatch {
  private readonly arrivals = new Map<string, (t: number) => void>();
  private abort: AbortController | undefined;

  async start(kubeConfig: k8s.KubeConfig, namespace: string): Promise<void> {
    this.abort = await new k8s.Watch(kubeConfig).watch(
      `/api/v1/namespaces/${namespace}/configmaps`,
      {},
      (phase: string, cm: k8s.V1ConfigMap) => {
        const now = performance.now();
        if (phase === "ADDED") this.arrivals.get(cm.metadata?.name ?? "")?.(now);
      },
      (err: unknown) => {
        if (err && !this.abort?.signal.aborted) log(`configmap watch ended: ${asError(err).message}`);
      },
    );
  }

  added(name: string): Promise<number> {
    return new Promise((resolve) => this.arrivals.set(name, resolve));
  }

  stop(): void {
    this.abort?.abort();
  }
}

/** Resolves when the change stream shows the probe export with ready count `ready`, with the arrival time. */
async function busVisible(changes: AsyncIterator<ServiceChange, undefined>, ready: number): Promise<number> {
  for (;;) {
    const { done, value } = await changes.next();
    if (done) throw new Error("change stream ended");
    if (value.service?.exports.some((e) => e.readyEndpoints[0]?.ready === ready)) return performance.now();
  }
}

interface LatencyResult {
  sequential: { present: Stats; withIps: Stats; raw: Stats; rawKeepAlive: Stats; bus: Stats };
  burst: { present: Stats; withIps: Stats; makespanMs: number };
  load: string[];
}

async function latencyPhase(): Promise<LatencyResult> {
  log(`latency: starting 3 clusters, NATS, 3 controller children (load ${loadavg()})`);
  const set = await BenchClusterSet.start({ namespaces: ["lat", "probe-kube"], extraExchanges: ["probe-pub", "probe-sub"], runtime, ...(cpuProfileDir ? { cpuProfileDir } : {}) });
  const stopChanges = new AbortController();
  const cms = new ConfigMapWatch();
  let keepAlive: KeepAliveClient | undefined;
  try {
    const a = set.member("cluster-a");
    const b = set.member("cluster-b");
    // The bus probe's namespace exists in no cluster, so the controllers leave it alone (they retry every 30 s).
    const pub = await set.harness.startExchange("probe-pub");
    const sub = await set.harness.startExchange("probe-sub");
    const changes = sub.watchServices({ signal: stopChanges.signal, currentState: false });
    await cms.start(a.kube.kubeConfig, "probe-kube");
    keepAlive = new KeepAliveClient(a.kube.kubeConfig);
    const reused = keepAlive;
    const load = [loadavg()];

    const sample = async (i: number) => {
      const cmSeen = cms.added(`cm-${i}`);
      const rawStart = performance.now();
      await a.core.createNamespacedConfigMap({ namespace: "probe-kube", body: { metadata: { name: `cm-${i}` }, data: { i: String(i) } } });
      const raw = (await cmSeen) - rawStart;

      const keptSeen = cms.added(`kept-${i}`);
      const keptStart = performance.now();
      const status = await reused.post("/api/v1/namespaces/probe-kube/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `kept-${i}` } });
      if (status !== 201) throw new Error(`ConfigMap create over the kept-alive connection answered ${status}`);
      const rawKeepAlive = (await keptSeen) - keptStart;

      const busSeen = busVisible(changes, 100 + i);
      const busStart = performance.now();
      await pub.publishExport(exportOf("probe-bus", "svc", { readyEndpoints: [{ zone: "zone-a", ready: 100 + i }] }));
      const bus = (await busSeen) - busStart;

      const t0 = await createExport(a, "lat", `seq-${i}`);
      const seen = await b.observer.whenImported(`lat/seq-${i}`);
      return { raw, rawKeepAlive, bus, present: seen.presentAt - t0, withIps: seen.withIpsAt - t0 };
    };
    for (let i = 0; i < WARM_UP_SAMPLES; i++) await sample(-1 - i);
    const seq = { raw: [] as number[], rawKeepAlive: [] as number[], bus: [] as number[], present: [] as number[], withIps: [] as number[] };
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      const s = await sample(i);
      for (const k of ["raw", "rawKeepAlive", "bus", "present", "withIps"] as const) seq[k].push(s[k]);
      if ((i + 1) % 50 === 0) log(`latency: ${i + 1}/${LATENCY_SAMPLES} sequential samples`);
    }
    load.push(loadavg());

    log(`latency: burst of ${LATENCY_SAMPLES} exports`);
    const burst = { present: [] as number[], withIps: [] as number[] };
    const burstStart = performance.now();
    let lastSeen = 0;
    await Promise.all(
      Array.from({ length: LATENCY_SAMPLES }, async (_, i) => {
        const t0 = await createExport(a, "lat", `burst-${i}`);
        const seen = await b.observer.whenImported(`lat/burst-${i}`);
        burst.present.push(seen.presentAt - t0);
        burst.withIps.push(seen.withIpsAt - t0);
        lastSeen = Math.max(lastSeen, seen.withIpsAt);
      }),
    );
    load.push(loadavg());
    return {
      sequential: { present: stats(seq.present), withIps: stats(seq.withIps), raw: stats(seq.raw), rawKeepAlive: stats(seq.rawKeepAlive), bus: stats(seq.bus) },
      burst: { present: stats(burst.present), withIps: stats(burst.withIps), makespanMs: lastSeen - burstStart },
      load,
    };
  } finally {
    stopChanges.abort();
    cms.stop();
    keepAlive?.close();
    await set.stop();
  }
}

interface ScaleRow {
  exports: number;
  cluster: string;
  own: number;
  imports: number;
  empty: Usage;
  converged: Usage;
  idle: Usage;
}

interface ScaleResult {
  exports: number;
  converged: boolean;
  /** ServiceImports complete (with ClusterSetIP and slice), summed over the clusters, when the wait ended. */
  importsDone: number;
  createMs: number;
  convergeMs: number;
  rows: ScaleRow[];
  load: string[];
}

async function scalePhase(exports: number): Promise<ScaleResult> {
  log(`scale ${exports}: starting 3 clusters, NATS, 3 controller children (load ${loadavg()})`);
  const set = await BenchClusterSet.start({ namespaces: ["load"], runtime, ...(cpuProfileDir ? { cpuProfileDir } : {}) });
  try {
    const load = [loadavg()];
    const own = (k: number) => Math.floor(exports / CLUSTERS.length) + (k < exports % CLUSTERS.length ? 1 : 0);
    const empty = await Promise.all(set.members.map((m) => m.controller.usage({ gc: true })));
    const start = performance.now();
    let createdAt = 0;
    const creating = Promise.all(
      set.members.map((m, k) => limited(own(k), CREATES_IN_FLIGHT_PER_CLUSTER, async (j) => void (await createExport(m, "load", `svc-${j * CLUSTERS.length + k}`)))),
    ).then(() => {
      createdAt = performance.now();
      log(`scale ${exports}: all ${exports * 3} objects created in ${((createdAt - start) / 1000).toFixed(1)} s`);
    });
    const done = (m: BenchMember, k: number) => {
      const c = m.observer.counts();
      return c.importsWithIps === exports && c.readyExports === own(k);
    };
    let lastProgress = performance.now();
    while (!createdAt || !set.members.every(done)) {
      if (performance.now() - start > CONVERGE_DEADLINE_MS) {
        log(`scale ${exports}: NOT converged after ${CONVERGE_DEADLINE_MS / 60_000} min; measuring as is`);
        break;
      }
      await sleep(200);
      if (performance.now() - lastProgress > PROGRESS_EVERY_MS) {
        lastProgress = performance.now();
        const counts = set.members.map((m) => m.observer.counts()).map((c, k) => `${CLUSTERS[k]}: ${c.readyExports}/${own(k)} ready, ${c.importsWithIps}/${exports} imported`);
        log(`scale ${exports}: ${counts.join("; ")} (load ${loadavg()})`);
      }
    }
    await creating;
    const allConverged = set.members.every(done);
    const importsDone = set.members.reduce((n, m) => n + m.observer.counts().importsWithIps, 0);
    const convergeMs = performance.now() - start;
    log(`scale ${exports}: ${allConverged ? "converged" : "stopped waiting"} in ${(convergeMs / 1000).toFixed(1)} s; idling ${IDLE_WINDOW_MS / 1000} s`);
    load.push(loadavg());
    const converged = await Promise.all(set.members.map((m) => m.controller.usage({ gc: true })));
    await sleep(IDLE_WINDOW_MS);
    const idle = await Promise.all(set.members.map((m) => m.controller.usage({ gc: false })));
    load.push(loadavg());
    return {
      exports,
      converged: allConverged,
      importsDone,
      createMs: createdAt - start,
      convergeMs,
      load,
      rows: set.members.map((m, k) => ({ exports, cluster: m.name, own: own(k), imports: exports, empty: empty[k] as Usage, converged: converged[k] as Usage, idle: idle[k] as Usage })),
    };
  } finally {
    await set.stop();
  }
}

if (runtime === "compiled") {
  log("building dist/ (npm run build) for the controller children");
  execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" });
}
if (cpuProfileDir) {
  mkdirSync(cpuProfileDir, { recursive: true });
  log(`controller CPU profiles go to ${cpuProfileDir} (one per cluster; each phase overwrites the previous one)`);
}
const ms = (v: number) => v.toFixed(1);

function printLatency(latency: LatencyResult): void {
  const s = latency.sequential;
  console.log(`\n### Create-to-import latency (${LATENCY_SAMPLES} exports; load average during the phase: ${latency.load.join(" → ")})\n`);
  console.log("| measurement | p50 ms | p99 ms | max ms | p50 ratio | p99 ratio |");
  console.log("|---|---:|---:|---:|---:|---:|");
  const row = (name: string, x: Stats, ratioTo?: Stats) =>
    console.log(`| ${name} | ${ms(x.p50)} | ${ms(x.p99)} | ${ms(x.max)} | ${ratioTo ? `${(x.p50 / ratioTo.p50).toFixed(1)}×` : "—"} | ${ratioTo ? `${(x.p99 / ratioTo.p99).toFixed(1)}×` : "—"} |`);
  row("baseline (i): ConfigMap create in A → ADDED on a watch in A (client-node: new TLS connection per call)", s.raw);
  row("baseline (i'): same, over one kept-alive TLS connection", s.rawKeepAlive);
  row("baseline (ii): publishExport → peer's watchServices", s.bus);
  row("sequential: SE created in A → SI + derived slice in B (ratio to i)", s.present, s.raw);
  row("sequential: same, ratio to (i')", s.present, s.rawKeepAlive);
  row("sequential: same, ratio to the exchange (ii)", s.present, s.bus);
  row("sequential: SE created in A → SI with ClusterSetIP + slice in B (ratio to i)", s.withIps, s.raw);
  row(`burst of ${LATENCY_SAMPLES}: SE created in A → SI + derived slice in B (ratio to i)`, latency.burst.present, s.raw);
  row(`burst of ${LATENCY_SAMPLES}: SE created in A → SI with ClusterSetIP + slice in B (ratio to i)`, latency.burst.withIps, s.raw);
  console.log(`\nBurst: first create issued → last import complete in B: ${(latency.burst.makespanMs / 1000).toFixed(2)} s (${(LATENCY_SAMPLES / (latency.burst.makespanMs / 1000)).toFixed(0)} exports/s).`);
}

function printScale(x: ScaleResult): void {
  console.log(`\n### Controller memory and CPU, ${x.exports} exports (one child process per cluster)\n`);
  console.log("| exports | cluster | own exports / ServiceImports | RSS empty MB | RSS converged MB | heap converged MB | RSS after idle MB | CPU converging s | CPU idle 30 s ms | apiserver writes | mean write ms | warn/error logs |");
  console.log("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of x.rows) {
    const writes = r.converged.writeRequests - r.empty.writeRequests;
    console.log(
      `| ${r.exports} | ${r.cluster} | ${r.own} / ${r.imports} | ${(r.empty.rssBytes / MB).toFixed(0)} | ${(r.converged.rssBytes / MB).toFixed(0)} | ${(r.converged.heapUsedBytes / MB).toFixed(0)} | ${(r.idle.rssBytes / MB).toFixed(0)} | ${((r.converged.cpuUs - r.empty.cpuUs) / 1e6).toFixed(1)} | ${((r.idle.cpuUs - r.converged.cpuUs) / 1e3).toFixed(0)} | ${writes} | ${((r.converged.writeRequestMs - r.empty.writeRequestMs) / Math.max(1, writes)).toFixed(1)} | ${r.idle.errorLogs} |`,
    );
  }
  console.log("\n| exports | objects created | create time s | convergence s (first create → every import complete everywhere) | ServiceImports complete | load average (start → converged → after idle) |");
  console.log("|---:|---:|---:|---:|---:|---|");
  console.log(
    `| ${x.exports} | ${x.exports * 3} | ${(x.createMs / 1000).toFixed(1)} | ${x.converged ? "" : "not converged, stopped at "}${(x.convergeMs / 1000).toFixed(1)} | ${x.importsDone} / ${x.exports * CLUSTERS.length} | ${x.load.join(" → ")} |`,
  );
}

// Each phase prints as soon as it is done, so a long 10k phase cannot lose the earlier figures.
if (!onlyScale) printLatency(await latencyPhase());
for (const n of SCALES) printScale(await scalePhase(n));
