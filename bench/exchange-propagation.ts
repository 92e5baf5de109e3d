/**
 * Exchange benchmark: export propagation latency (publish in A → visible in
 * B's merged view), bus bytes per change, and full catch-up time, on a real
 * nats-server with JWT auth. Run: `node --import tsx bench/exchange-propagation.ts`
 * (`--quick` for a smaller run).
 */
import type { Exchange, ServiceChange } from "../federation/index.ts";
import { ExchangeHarness, exportOf } from "../test/support/exchange-harness.ts";

const quick = process.argv.includes("--quick");
const SCENARIOS = quick
  ? [{ clusters: 3, exports: 1_000 }]
  : [
      { clusters: 3, exports: 1_000 },
      { clusters: 3, exports: 10_000 },
      { clusters: 20, exports: 1_000 },
      { clusters: 20, exports: 10_000 },
    ];
const SAMPLES = quick ? 50 : 200;

interface Row {
  clusters: number;
  exports: number;
  p50: number;
  p99: number;
  publishBytes: number;
  deliveredBytes: number;
  catchUpMs: number;
}

async function varzBytes(h: ExchangeHarness): Promise<{ in: number; out: number }> {
  const varz = (await (await fetch(`${h.nats.nodes[0]?.monitorUrl}/varz`)).json()) as { in_bytes: number; out_bytes: number };
  return { in: varz.in_bytes, out: varz.out_bytes };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Resolves when the change stream shows `name` with ready count `ready`. */
async function visible(changes: AsyncIterator<ServiceChange, undefined>, name: string, ready: number): Promise<void> {
  for (;;) {
    const { done, value } = await changes.next();
    if (done) throw new Error("change stream ended");
    if (value.key === `bench/${name}` && value.service?.exports.some((e) => e.readyEndpoints[0]?.ready === ready)) return;
  }
}

async function scenario(clusters: number, exports: number): Promise<Row> {
  const names = Array.from({ length: clusters }, (_, i) => `c${i}`);
  const h = await ExchangeHarness.start({ clusters: [...names, "late"], leaseTtlMs: 30_000 });
  try {
    const exchanges: Exchange[] = [];
    for (const n of names) exchanges.push(await h.startExchange(n));
    const [a, b] = exchanges as [Exchange, Exchange];
    // Preload: the state every watcher holds while we measure single changes.
    for (let i = 0; i < exports; i++) await (exchanges[i % clusters] as Exchange).publishExport(exportOf("bench", `svc-${i}`));
    await waitAll(b, exports);

    const latencies: number[] = [];
    const controller = new AbortController();
    const changes = b.watchServices({ signal: controller.signal, currentState: false });
    const before = await varzBytes(h);
    for (let i = 0; i < SAMPLES; i++) {
      const seen = visible(changes, "svc-0", 100 + i);
      const t0 = performance.now();
      await a.publishExport(exportOf("bench", "svc-0", { readyEndpoints: [{ zone: "zone-a", ready: 100 + i }] }));
      await seen;
      latencies.push(performance.now() - t0);
    }
    const after = await varzBytes(h);
    controller.abort();
    latencies.sort((x, y) => x - y);

    const t0 = performance.now();
    const late = await h.startExchange("late");
    const catchUpMs = performance.now() - t0;
    if (late.services().length !== exports) throw new Error(`late starter holds ${late.services().length} of ${exports}`);

    return {
      clusters,
      exports,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      publishBytes: (after.in - before.in) / SAMPLES,
      deliveredBytes: (after.out - before.out) / SAMPLES,
      catchUpMs,
    };
  } finally {
    await h.stop();
  }
}

async function waitAll(viewer: Exchange, count: number): Promise<void> {
  while (viewer.services().length < count) await new Promise((r) => setTimeout(r, 50));
}

const rows: Row[] = [];
for (const s of SCENARIOS) {
  process.stderr.write(`scenario: ${s.clusters} clusters, ${s.exports} exports\n`);
  rows.push(await scenario(s.clusters, s.exports));
}
console.log("| clusters | exports | p50 ms | p99 ms | bytes in per change | bytes out per change (all watchers) | catch-up ms |");
console.log("|---:|---:|---:|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(`| ${r.clusters} | ${r.exports} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${Math.round(r.publishBytes)} | ${Math.round(r.deliveredBytes)} | ${Math.round(r.catchUpMs)} |`);
}
