/**
 * Summarizes a V8 .cpuprofile (from node --cpu-prof): the functions with the
 * most inclusive time, optionally only over a window of seconds before the
 * profile's end (e.g. the idle window of bench/controller-import.ts).
 * Run: node --import tsx bench/support/cpu-profile-summary.ts <file> [top=40] [fromSecondsBeforeEnd toSecondsBeforeEnd]
 */
import { readFileSync } from "node:fs";
import { z } from "zod";

const CpuProfile = z.object({
  nodes: z.array(z.object({ id: z.number(), callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }), children: z.array(z.number()).optional() })),
  startTime: z.number(),
  endTime: z.number(),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});

const [file, topArg = "40", fromArg, toArg] = process.argv.slice(2);
if (!file) throw new Error("usage: cpu-profile-summary.ts <file.cpuprofile> [top] [fromSecondsBeforeEnd toSecondsBeforeEnd]");
const profile = CpuProfile.parse(JSON.parse(readFileSync(file, "utf8")));
const windowUs = fromArg && toArg ? { from: Number(fromArg) * 1e6, to: Number(toArg) * 1e6 } : undefined;

const label = new Map<number, string>();
const parent = new Map<number, number>();
for (const n of profile.nodes) {
  const where = n.callFrame.url.replace(/.*node_modules\//, "").replace(/^file:\/\/.*?\/(federation|common|bench|test)\//, "$1/");
  label.set(n.id, `${n.callFrame.functionName || "(anonymous)"} ${where}:${n.callFrame.lineNumber + 1}`);
  for (const c of n.children ?? []) parent.set(c, n.id);
}

const inclusive = new Map<string, number>();
let total = 0;
let busy = 0;
let t = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i] ?? 0;
  const weight = profile.timeDeltas[i + 1] ?? 0;
  const age = profile.endTime - t;
  if (windowUs && (age > windowUs.from || age < windowUs.to)) continue;
  total += weight;
  const leaf = profile.samples[i] as number;
  if (label.get(leaf)?.startsWith("(idle)")) continue;
  busy += weight;
  const counted = new Set<string>();
  for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
    const name = label.get(id) ?? "?";
    if (!counted.has(name)) inclusive.set(name, (inclusive.get(name) ?? 0) + weight);
    counted.add(name);
  }
}

console.log(`profiled ${(total / 1e6).toFixed(1)} s, on CPU ${(busy / 1e6).toFixed(1)} s (${((100 * busy) / total).toFixed(0)} %)`);
for (const [name, us] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) {
  console.log(`${(us / 1e3).toFixed(0).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)} % of on-CPU  ${name}`);
}
