import { runLoadgen, type LoadgenReport } from "./loadgen-runner.ts";

/*
 * The fixed-rate part of bench/gateway-throughput.ts: every path gets the
 * same offered rates from loadgen, in several interleaved rounds, and the
 * p99 of each round is compared with HAProxy's (d) row of the same round.
 * One open-loop window on a shared 2-core machine can be off by 10x (a GC
 * pause or a descheduled process lands in it or not), so the verdict is the
 * median ratio over rounds, with every round printed beside it.
 */

/** The unmeasured loadgen run per path before the rows. */
const WARMUP_MS = 1_000;
/** A path "kept up" when it completed at least this share of the offered rate. */
export const KEPT_UP_SHARE = 0.97;

export interface FixedRatePath {
  name: string;
  port: number;
}

export interface FixedRateRow {
  rate: number;
  /** 1-based. */
  round: number;
  name: string;
  r: LoadgenReport;
}

export interface FixedRatePlan {
  paths: readonly FixedRatePath[];
  /** Absolute offered rates, req/s. */
  rates: readonly number[];
  rounds: number;
  durationMs: number;
  connections: number;
  host: string;
}

/**
 * Runs the plan: per rate, round after round, each path once. The path order
 * rotates by one each round, so no path always follows the same neighbour
 * (whose backlog or GC could leak into the next window).
 */
export async function runFixedRate(plan: FixedRatePlan): Promise<FixedRateRow[]> {
  const rows: FixedRateRow[] = [];
  // One unmeasured second per path first: the first loadgen run of a process tree measured a stall
  // (p99 9-43x (d)) on whichever path came first, the old code and the new alike when their order was swapped.
  for (const p of plan.paths) await runLoadgen({ target: `127.0.0.1:${p.port}`, host: plan.host, rate: Math.min(...plan.rates), durationMs: WARMUP_MS, connections: plan.connections });
  for (const rate of plan.rates) {
    for (let round = 1; round <= plan.rounds; round++) {
      for (const p of rotate(plan.paths, round - 1)) {
        const r = await runLoadgen({ target: `127.0.0.1:${p.port}`, host: plan.host, rate, durationMs: plan.durationMs, connections: plan.connections });
        rows.push({ rate, round, name: p.name, r });
      }
    }
  }
  return rows;
}

export function rotate<T>(items: readonly T[], by: number): T[] {
  if (!items.length) return [];
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function keptUp(row: FixedRateRow): boolean {
  return row.r.achievedRate >= row.rate * KEPT_UP_SHARE;
}

/** Per rate and path: p99 and its ratio to the (d) row of the same rate and round, for every round, and their medians. */
export interface FixedRateSummary {
  rate: number;
  name: string;
  p99Ms: number[];
  p99Ratios: number[];
  medianP99Ms: number;
  medianP99Ratio: number;
  medianP50Ms: number;
  roundsKeptUp: number;
  rounds: number;
}

/** `reference` picks the row every ratio is against (HAProxy's pair). */
export function summarizeFixedRate(rows: readonly FixedRateRow[], reference: (name: string) => boolean): FixedRateSummary[] {
  const out: FixedRateSummary[] = [];
  const keys = [...new Map(rows.map((r) => [`${r.rate}|${r.name}`, { rate: r.rate, name: r.name }])).values()];
  for (const { rate, name } of keys) {
    const mine = rows.filter((r) => r.rate === rate && r.name === name);
    const ratios = mine.map((row) => {
      const ref = rows.find((x) => x.rate === rate && x.round === row.round && reference(x.name));
      return ref ? row.r.latencyMs.p99 / ref.r.latencyMs.p99 : NaN;
    });
    out.push({
      rate,
      name,
      p99Ms: mine.map((r) => r.r.latencyMs.p99),
      p99Ratios: ratios,
      medianP99Ms: median(mine.map((r) => r.r.latencyMs.p99)),
      medianP99Ratio: median(ratios.filter((x) => !Number.isNaN(x))),
      medianP50Ms: median(mine.map((r) => r.r.latencyMs.p50)),
      roundsKeptUp: mine.filter(keptUp).length,
      rounds: mine.length,
    });
  }
  return out;
}

/** Prints every round's row, then the per-path medians. */
export function printFixedRate(options: { layer: string; haproxyRps: number; fractions: readonly number[]; seconds: number; connections: number; rows: readonly FixedRateRow[] }): void {
  const { layer, rows } = options;
  const isRef = (name: string) => name.includes("(d)");
  const rounds = Math.max(0, ...rows.map((r) => r.round));
  console.log(
    `\n${layer} at fixed offered rates (loadgen, open loop, ${options.connections} connections, ${options.seconds} s each, ${rounds} interleaved round(s); rates are ${options.fractions.map((f) => `${f * 100} %`).join(", ")} of ${layer} (d)'s wrk ${Math.round(options.haproxyRps).toLocaleString("en")} req/s; ratios against (d) in the same round)\n`,
  );
  console.log("| offered req/s | round | path | achieved req/s | kept up | p50 ms | p50 × (d) | p99 ms | p99 × (d) | p99.9 ms | max ms | errors c/w/r/t/parse/status |");
  console.log("|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const row of rows) {
    const d = rows.find((x) => x.rate === row.rate && x.round === row.round && isRef(x.name))?.r;
    const { r } = row;
    const kept = keptUp(row) ? "yes" : `**no** (sent ${r.sent.toLocaleString("en")} of ${r.scheduled.toLocaleString("en")})`;
    const e = r.errors;
    const l = r.latencyMs;
    const ratio = (x: number, y: number | undefined) => (y ? (x / y).toFixed(2) : "–");
    console.log(
      `| ${row.rate.toLocaleString("en")} | ${row.round} | ${row.name} | ${Math.round(r.achievedRate).toLocaleString("en")} | ${kept} | ${l.p50.toFixed(2)} | ${ratio(l.p50, d?.latencyMs.p50)} | ${l.p99.toFixed(2)} | ${ratio(l.p99, d?.latencyMs.p99)} | ${l["p99.9"].toFixed(2)} | ${l.max.toFixed(1)} | ${[e.connect, e.write, e.read, e.timeout, e.parse, e.status].join("/")} |`,
    );
  }
  console.log(`\n${layer} medians over the rounds (p99 × (d) is the median of each round's ratio)\n`);
  console.log("| offered req/s | path | rounds kept up | median p50 ms | median p99 ms | p99 × (d) per round | **median p99 × (d)** |");
  console.log("|---:|---|---:|---:|---:|---|---:|");
  for (const s of summarizeFixedRate(rows, isRef)) {
    console.log(
      `| ${s.rate.toLocaleString("en")} | ${s.name} | ${s.roundsKeptUp}/${s.rounds} | ${s.medianP50Ms.toFixed(2)} | ${s.medianP99Ms.toFixed(2)} | ${s.p99Ratios.map((x) => x.toFixed(2)).join(", ")} | **${s.medianP99Ratio.toFixed(2)}** |`,
    );
  }
}
