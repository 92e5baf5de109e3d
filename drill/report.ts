import type { DrillReport } from "./failover-drill.ts";
import type { Shift } from "./steady-load.ts";

/** The drill's report for a terminal. */
export function formatDrillReport(r: DrillReport): string {
  const lines: string[] = [];
  lines.push(`fedgate failover drill: ${r.service}, exported by ${r.clusters.exporters.join(" and ")}, called from ${r.clusters.callers.join(" and ")}`);
  lines.push("  (L4: a new TCP connection per request; L7: HTTP/1.1 requests over kept-alive connections and h2 streams of long-lived sessions, taking turns)");
  lines.push("");
  lines.push("Steady state");
  for (const s of r.steadyState) lines.push(`  from ${s.caller}: served by ${servedBy(s.servedBy)}; ${s.failures} failed`);
  lines.push("");
  lines.push("Faults and repairs");
  lines.push(`  ${"".padEnd(3)}${"event".padEnd(40)} ${"caller".padEnd(10)} ${"moves to".padEnd(10)} ${"requests".padStart(8)} ${"failed".padStart(6)} ${"cut".padStart(4)} ${"first (ms)".padStart(10)} ${"settled (ms)".padStart(12)}  bystander`);
  for (const leg of r.legs) {
    const s = leg.shift;
    const by = leg.bystander;
    lines.push(
      `  ${leg.protocol.padEnd(3)}${leg.name.padEnd(40)} ${leg.caller.padEnd(10)} ${leg.expected.padEnd(10)} ${String(s.requests).padStart(8)} ${String(s.failedNewConnections + s.failedRequests).padStart(6)} ${String(s.failedInFlight).padStart(4)} ${ms(s.firstOnTargetMs).padStart(10)} ${ms(s.settledMs).padStart(12)}  ${by.caller}: ${bystander(by.shift)}`,
    );
  }
  lines.push("");
  lines.push("  caller's gateway meanwhile: upstream connect failures / retried on another endpoint or priority / ejections");
  for (const leg of r.legs) lines.push(`  ${leg.protocol.padEnd(3)}${leg.name.padEnd(40)} ${leg.gateway.connectFailures} / ${leg.gateway.failovers} / ${leg.gateway.ejections}`);
  lines.push("  (failed: L4 connections closed before the backend's greeting arrived, L7 requests without a 200; cut: L4, closed after the greeting;");
  lines.push("   first: until the first reply from the new cluster; settled: until the reply from it after which nothing else served)");
  const errors = r.legs.flatMap((leg) => [
    ...leg.shift.errors.map((e) => `  ${leg.name}, ${leg.caller}: ${e}`),
    ...leg.bystander.shift.errors.map((e) => `  ${leg.name}, ${leg.bystander.caller} (bystander): ${e}`),
  ]);
  if (errors.length) lines.push("", "Failures as the clients saw them (first few per event)", ...errors);
  lines.push("");
  lines.push(`After revoking ${r.revocation.revoked}, the callers' ServiceImports list`);
  for (const [caller, byService] of Object.entries(r.revocation.importsAfter)) {
    lines.push(`  ${caller}: ${Object.entries(byService).map(([service, clusters]) => `${service} from ${clusters.join(", ") || "nobody"}`).join("; ")}`);
  }
  lines.push("");
  lines.push("Export listener admission");
  for (const c of r.security) lines.push(`  ${c.outcome === c.expected ? "ok  " : "FAIL"} ${c.name}: ${c.outcome} (${c.detail})`);
  lines.push("");
  lines.push(
    `Total: ${r.totals.requests} requests, ${r.totals.failedNewConnections} failed new L4 connections, ${r.totals.failedInFlight} L4 connections cut in flight, ${r.totals.failedRequests} failed L7 requests`,
  );
  return lines.join("\n");
}

const ms = (v: number | undefined) => (v === undefined ? "never" : v.toFixed(0));
const servedBy = (m: Record<string, number>) =>
  Object.entries(m)
    .map(([cluster, n]) => `${cluster} ×${n}`)
    .join(", ") || "nobody";
const bystander = (s: Shift) => `${s.requests} requests, ${s.failedNewConnections + s.failedInFlight + s.failedRequests} failed, served by ${servedBy(s.servedBy)}`;
