import { request } from "node:http";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { waitFor } from "../support/gateway-harness.ts";
import { L7Topology, WEB_CLUSTER, WEB_HOST } from "../support/l7-harness.ts";

/**
 * HTTP health checks of peer gateways: A's check of B's gateway goes through
 * B's export (a tunnel stream, or an mTLS connection of its own) to one of
 * B's endpoints. A peer that still accepts connections but whose endpoints
 * fail their health path is taken out of A's rotation, where a TCP connect to
 * its port would have kept it in.
 */

const pki = await createClusterSetPki(["a", "b", "c"]);
const registry = ProtoRegistry.load();
const HEALTH_CHECK = { intervalMs: 300, timeoutMs: 1_000, unhealthyThreshold: 2, healthyThreshold: 1, http: { path: "/healthz" } };
const WAIT_MS = 30_000;

interface Ctx {
  topology?: L7Topology;
}

const peers = suite<Ctx>("gateway HTTP health checks of peer gateways", {});

peers.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

/** `n` GETs through A's import listener on their own connections; the clusters that served them, counted. */
async function servedBy(t: L7Topology, n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const cluster = await new Promise<string>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: t.importPort("a"), path: "/work", agent: false, headers: { host: WEB_HOST } }, (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve(String(res.headers["x-fedgate-cluster"])) : reject(new Error(`HTTP ${res.statusCode}`))));
      });
      req.on("error", reject);
      req.end();
    });
    counts[cluster] = (counts[cluster] ?? 0) + 1;
  }
  return counts;
}

for (const muxTunnels of [true, false]) {
  peers(`a peer whose endpoint fails its health path is taken out by the caller's HTTP check through it, then returns (${muxTunnels ? "through a tunnel stream" : "mTLS connection per check"})`, async (ctx) => {
    const t = (ctx.topology = await L7Topology.start({
      pki,
      registry,
      exporters: ["b", "c"],
      members: { a: 0, b: 1, c: 1 },
      policy: { failover: { clusterOrder: ["b", "c"] }, healthCheck: HEALTH_CHECK },
      muxTunnels,
    }));
    const transitions = (state: string) => t.metric("a", "fedgate_gateway_health_check_transitions_total", { cluster: WEB_CLUSTER, state });
    assert.equal(await servedBy(t, 5), { b: 5 }, "B is preferred");
    const b = t.get("b").web[0]!;
    const checksBefore = b.healthChecks.length;
    await waitFor("checks reach B's endpoint", () => b.healthChecks.length > checksBefore + 2, WAIT_MS);

    // Checks made while the gateways were still being wired may have failed: count from here.
    const unhealthy = transitions("unhealthy");
    const healthy = transitions("healthy");
    b.healthStatus = 503;
    await waitFor("A marks B's gateway unhealthy", () => transitions("unhealthy") > unhealthy, WAIT_MS);
    // B's gateway still accepts connections and its endpoint still answers other paths: only a check through B sees it.
    assert.equal(await servedBy(t, 10), { c: 10 });
    assert.is(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "refused_stream" }), 0);

    b.healthStatus = 200;
    await waitFor("A marks B healthy again", () => transitions("healthy") > healthy, WAIT_MS);
    assert.equal(await servedBy(t, 5), { b: 5 }, "traffic is back on B");
    assert.is(transitions("unhealthy"), unhealthy + 1, "taken out once");
  });
}

peers.run();
