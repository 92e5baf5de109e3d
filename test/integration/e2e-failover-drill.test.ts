import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { DRILL_SERVICE, DRILL_WEB_SERVICE, LocalClusterSet, formatDrillReport, runFailoverDrill, type DrillReport } from "../../drill/index.ts";
import { isAlive } from "../env/index.ts";

/**
 * End to end, with real processes: NATS, three kube-apiservers, and per
 * cluster a `fedgate controller` and a `fedgate gateway` process, echo
 * workloads as Services + EndpointSlices. Behaviour is asserted; failed
 * requests and times are reported (stdout and a JSON file), never asserted.
 */

interface Ctx {
  set: LocalClusterSet;
  report: DrillReport;
}

const e2e = suite<Ctx>("end to end: failover drill on a local ClusterSet of real processes", {} as never);

e2e.before(async (ctx) => {
  ctx.set = await LocalClusterSet.start({ clusters: 3 });
});
e2e.after(async (ctx) => {
  await ctx.set?.stop();
});

e2e("runs the drill and reports failed requests and settle times", async (ctx) => {
  ctx.report = await runFailoverDrill(ctx.set, (line) => process.stdout.write(`    ${line}\n`));
  const file = join(ctx.set.dir, "drill-report.json");
  writeFileSync(file, JSON.stringify(ctx.report, null, 2));
  process.stdout.write(`\n${formatDrillReport(ctx.report)}\n(JSON: ${file})\n`);
  assert.is(ctx.report.legs.length, 9);
});

e2e("from A, S is served by A; from C, by B, the first of C's preference order", (ctx) => {
  const [a, c] = ctx.report.steadyState;
  assert.equal(Object.keys(a?.servedBy ?? {}), ["cluster-a"]);
  assert.equal(Object.keys(c?.servedBy ?? {}), ["cluster-b"]);
  assert.is(a?.failures, 0);
  assert.is(c?.failures, 0);
});

e2e("every fault and repair moves the caller's traffic to the expected cluster, where it stays", (ctx) => {
  const moves = ctx.report.legs.map((l) => `${l.caller} -> ${l.expected}: ${l.shift.settledMs === undefined ? "not settled" : "settled"}`);
  assert.equal(moves, [
    "cluster-a -> cluster-b: settled",
    "cluster-a -> cluster-a: settled",
    "cluster-c -> cluster-a: settled",
    "cluster-c -> cluster-b: settled",
    "cluster-a -> cluster-b: settled",
    "cluster-a -> cluster-a: settled",
    "cluster-c -> cluster-a: settled",
    "cluster-c -> cluster-b: settled",
    "cluster-c -> cluster-a: settled",
  ]);
  assert.equal(
    ctx.report.legs.map((l) => l.protocol),
    ["L4", "L4", "L4", "L4", "L7", "L7", "L7", "L7", "L7"],
  );
});

e2e("L7: killing B's gateway fails no request (replay-safe requests go to the next priority), and C's traffic moves to A", (ctx) => {
  const leg = ctx.report.legs.find((l) => l.protocol === "L7" && l.name === "cluster-b's gateway is killed");
  assert.ok(leg, "the L7 gateway-kill leg ran");
  assert.is(leg.shift.failedRequests, 0, leg.shift.errors.join("; "));
  assert.ok((leg.shift.servedBy["cluster-a"] ?? 0) > 0, "C's requests were served by A");
});

e2e("a revoked cluster drops out of the others' imports, while they keep serving each other", (ctx) => {
  assert.is(ctx.report.revocation.revoked, "cluster-b");
  assert.equal(ctx.report.revocation.importsAfter, {
    "cluster-a": { [DRILL_SERVICE]: ["cluster-a"], [DRILL_WEB_SERVICE]: ["cluster-a"] },
    "cluster-c": { [DRILL_SERVICE]: ["cluster-a"], [DRILL_WEB_SERVICE]: ["cluster-a"] },
  });
  const leg = ctx.report.legs.find((l) => l.name === "cluster-b is revoked");
  assert.ok(leg, "the revocation leg ran");
  assert.equal(Object.keys(leg.bystander.shift.servedBy), ["cluster-a"], "A kept being served by A");
  assert.ok((leg.shift.servedBy["cluster-a"] ?? 0) > 0, "C was served by A");
});

/** The share of the bystander's requests its own cluster must serve: a retry of a request that
 * failed on a local endpoint (a kept-alive connection closed under it) may go to the next priority. */
const BYSTANDER_HOME_SHARE = 0.95;

e2e("the other caller stays where it was while a fault hits the first", (ctx) => {
  // Where it is served is asserted; its failures, like every count here, are reported.
  for (const leg of ctx.report.legs) {
    const by = leg.bystander;
    const home = by.caller === "cluster-a" ? "cluster-a" : "cluster-b";
    const served = Object.values(by.shift.servedBy).reduce((sum, n) => sum + n, 0);
    assert.ok(served > 0, `${leg.name}: the bystander was served`);
    assert.ok((by.shift.servedBy[home] ?? 0) >= BYSTANDER_HOME_SHARE * served, `${leg.name}: ${by.caller} served by ${JSON.stringify(by.shift.servedBy)}`);
  }
});

e2e("restored, traffic is back where it started: A local, C on its preferred peer", (ctx) => {
  const byName = new Map(ctx.report.legs.map((l) => [l.name, l]));
  assert.is(byName.get("cluster-a's endpoints come back")?.expected, "cluster-a");
  assert.is(byName.get("cluster-b's gateway restarts")?.expected, "cluster-b");
  assert.is(byName.get("cluster-a's HTTP endpoints come back")?.expected, "cluster-a");
});

e2e("A's export listener refuses another trust domain's and the revoked cluster's certificates and serves a ClusterSet member", async (ctx) => {
  const outcomes = ctx.report.security.map((s) => [s.expected, s.outcome]);
  assert.equal(outcomes, [
    ["served", "served"],
    ["refused", "refused"],
    ["refused", "refused"],
  ]);
  const metrics = await ctx.set.gatewayMetrics("cluster-a");
  assert.match(metrics, /reason="fedgate_trust_wrong_trust_domain"[^\n]* [1-9]/);
  assert.match(metrics, /fedgate_gateway_tls_handshake_failures_total\{(?=[^}]*side="downstream")(?=[^}]*reason="revoked")[^}]*\} [1-9]/);
});

e2e("the HTTP service's policy reached the gateways as an HTTP health check, the TCP service's as a TCP one", async (ctx) => {
  for (const cluster of ["cluster-a", "cluster-c"]) {
    const config = (await ctx.set.gatewayConfig(cluster)) as { clusters: { name: string; healthCheck?: { http?: unknown } }[] };
    const imports = config.clusters.filter((c) => c.name.startsWith("outbound|"));
    const checks = Object.fromEntries(imports.map((c) => [c.name.split("||")[1]?.split(".")[0] ?? c.name, c.healthCheck?.http ?? (c.healthCheck ? "tcp" : "none")]));
    assert.equal(checks, { [DRILL_SERVICE]: "tcp", [DRILL_WEB_SERVICE]: { path: "/healthz", host: `${DRILL_WEB_SERVICE}.demo.svc.clusterset.local`, expectedStatuses: [{ start: 200, end: 201 }] } }, cluster);
  }
});

e2e("the port in the derived EndpointSlice is the port the gateway listens on", async (ctx) => {
  for (const cluster of ["cluster-a", "cluster-c"]) {
    for (const service of [DRILL_SERVICE, DRILL_WEB_SERVICE]) {
      const port = await ctx.set.importPort(cluster, service);
      const listeners = await ctx.set.gatewayListeners(cluster);
      assert.equal(listeners[`fedgate-import-${port}`], { host: ctx.set.host, port }, `${cluster} ${service}`);
    }
  }
});

e2e("teardown leaves no fedgate process running", async (ctx) => {
  const pids = ctx.set.fedgatePids();
  assert.is(pids.length, 6, "a controller and a gateway per cluster");
  const processes = ctx.set.clusterNames.flatMap((name) => [...ctx.set.member(name).controllers, ctx.set.member(name).gateway]);
  await ctx.set.stop();
  // SIGTERM drains: every controller and gateway exits 0 on its own, before the SIGKILL grace runs out.
  assert.equal(await Promise.all(processes.map((p) => p.exited)), [0, 0, 0, 0, 0, 0]);
  assert.equal(
    pids.filter((pid) => isAlive(pid)),
    [],
  );
});

e2e.run();
