import { suite } from "uvu";
import * as assert from "uvu/assert";
import { median, rotate, summarizeFixedRate, type FixedRateRow } from "../../bench/support/fixed-rate.ts";
import type { LoadgenReport } from "../../bench/support/loadgen-runner.ts";

function report(p99: number, achievedRate: number): LoadgenReport {
  return {
    target: "127.0.0.1:1",
    path: "/",
    connections: 32,
    offeredRate: 1000,
    durationSeconds: 1,
    scheduled: 1000,
    sent: 1000,
    completed: 1000,
    errors: { connect: 0, write: 0, read: 0, timeout: 0, parse: 0, status: 0 },
    achievedRate,
    bytesRead: 0,
    latencyMs: { p50: p99 / 4, p90: p99 / 2, p99, "p99.9": p99, max: p99, mean: p99 / 4 },
  };
}

const FixedRate = suite("bench fixed-rate rounds");

FixedRate("median takes the middle value, or the mean of the two middle ones", () => {
  const cases = [
    { input: [3], expect: 3 },
    { input: [5, 1, 3], expect: 3 },
    { input: [4, 1, 3, 2], expect: 2.5 },
  ];
  for (const c of cases) assert.is(median(c.input), c.expect, c.input.join(","));
  assert.ok(Number.isNaN(median([])));
});

FixedRate("rotate moves the path order by one per round, wrapping", () => {
  assert.equal(rotate(["c", "cb", "d"], 0), ["c", "cb", "d"]);
  assert.equal(rotate(["c", "cb", "d"], 1), ["cb", "d", "c"]);
  assert.equal(rotate(["c", "cb", "d"], 4), ["cb", "d", "c"]);
  assert.equal(rotate([], 2), []);
});

FixedRate("each round's p99 is compared with (d) of the same round, and the verdict is the median ratio", () => {
  const rows: FixedRateRow[] = [
    { rate: 1000, round: 1, name: "(c) pair", r: report(4, 1000) },
    { rate: 1000, round: 1, name: "(d) HAProxy", r: report(2, 1000) },
    // An outlier round: (d) stalls, (c) does not; a mean would hide the other rounds.
    { rate: 1000, round: 2, name: "(c) pair", r: report(3, 1000) },
    { rate: 1000, round: 2, name: "(d) HAProxy", r: report(30, 1000) },
    { rate: 1000, round: 3, name: "(c) pair", r: report(6, 900) },
    { rate: 1000, round: 3, name: "(d) HAProxy", r: report(4, 1000) },
    { rate: 2000, round: 1, name: "(c) pair", r: report(10, 2000) },
    { rate: 2000, round: 1, name: "(d) HAProxy", r: report(5, 2000) },
  ];
  const summary = summarizeFixedRate(rows, (name) => name.includes("(d)"));
  const c1000 = summary.find((s) => s.rate === 1000 && s.name === "(c) pair")!;
  assert.equal(c1000.p99Ratios, [2, 0.1, 1.5]);
  assert.is(c1000.medianP99Ratio, 1.5);
  assert.is(c1000.medianP99Ms, 4);
  assert.is(c1000.roundsKeptUp, 2, "900 of 1000 req/s is below the kept-up share");
  assert.is(c1000.rounds, 3);
  const d1000 = summary.find((s) => s.rate === 1000 && s.name === "(d) HAProxy")!;
  assert.is(d1000.medianP99Ratio, 1);
  assert.is(summary.find((s) => s.rate === 2000 && s.name === "(c) pair")!.medianP99Ratio, 2);
  assert.is(summary.length, 4);
});

FixedRate.run();
