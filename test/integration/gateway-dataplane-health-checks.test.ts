import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry, probe } from "../../gateway/internal.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { waitFor } from "../support/gateway-harness.ts";
import { L7Topology, WEB_CLUSTER, WEB_HOST } from "../support/l7-harness.ts";

/**
 * HTTP active health checks on a live gateway: a ServicePolicy's
 * `healthCheck.http` goes through the control plane's translation to the
 * gateway's cluster, whose checks GET the path on each local endpoint. A
 * backend still accepting connections but answering its health path with 503
 * is taken out (so only an HTTP check can have seen it), and comes back when
 * it answers 200 again.
 */

const pki = await createClusterSetPki(["a"]);
const registry = ProtoRegistry.load();
const HEALTH_CHECK = { intervalMs: 300, timeoutMs: 300, unhealthyThreshold: 2, healthyThreshold: 1, http: { path: "/healthz" } };
const WAIT_MS = 30_000;

interface Ctx {
  topology: L7Topology;
  agent: Agent;
}

const hc = suite<Ctx>("gateway HTTP health checks: an endpoint whose health path answers 503 is taken out, then returns", {} as never);

hc.before(async (ctx) => {
  ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 2 }, policy: { healthCheck: HEALTH_CHECK } });
  ctx.agent = new Agent({ keepAlive: true, maxSockets: 2 });
});
hc.after(async (ctx) => {
  ctx.agent?.destroy();
  await ctx.topology?.close();
});

/** `n` GETs through the gateway's import listener; the backends that answered, counted. */
async function servedBy(ctx: Ctx, n: number): Promise<Record<string, number>> {
  const port = ctx.topology.importPort("a");
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const backend = await new Promise<string>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/work", agent: ctx.agent, headers: { host: WEB_HOST } }, (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve(String(res.headers["x-backend"])) : reject(new Error(`HTTP ${res.statusCode}`))));
      });
      req.on("error", reject);
      req.end();
    });
    counts[backend] = (counts[backend] ?? 0) + 1;
  }
  return counts;
}

hc("a 503 on the health path takes the endpoint out, traffic goes to the other, and a 200 brings it back", async (ctx) => {
  const t = ctx.topology;
  const [first, second] = t.get("a").web;
  assert.ok(first && second, "two web backends");
  const transitions = (state: string) => t.metric("a", "fedgate_gateway_health_check_transitions_total", { cluster: WEB_CLUSTER, state });
  await waitFor("both endpoints serve", async () => {
    const counts = await servedBy(ctx, 10);
    return Boolean(counts[first.id] && counts[second.id]);
  }, WAIT_MS);
  await waitFor("the gateway checks each endpoint over HTTP", () => first.healthChecks.length > 0 && second.healthChecks.length > 0, WAIT_MS);
  assert.is(first.healthChecks[0], WEB_HOST, "Host: the service's clusterset name");

  first.healthStatus = 503;
  await waitFor("the gateway marks the 503 endpoint unhealthy", () => transitions("unhealthy") >= 1, WAIT_MS);
  // It still accepts connections and answers other paths: only the HTTP check can have taken it out.
  assert.equal(await servedBy(ctx, 20), { [second.id]: 20 });

  first.healthStatus = 200;
  await waitFor("the gateway marks it healthy again", () => transitions("healthy") >= 1, WAIT_MS);
  const after = await servedBy(ctx, 20);
  assert.ok((after[first.id] ?? 0) > 0 && (after[second.id] ?? 0) > 0, JSON.stringify(after));
  assert.is(transitions("unhealthy"), 1);
});

hc("one HTTP check: an expected status passes; another status, no answer within the timeout, or a refused connect fails", async () => {
  const server = createServer((req, res) => {
    if (req.url === "/hang") return;
    res.writeHead(Number(req.url?.slice(1))).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = { host: "127.0.0.1", port: (server.address() as AddressInfo).port };
  const check = (path: string, expectedStatuses = [{ start: 200, end: 300 }]) => probe({ address, timeoutMs: 300, http: { path, host: "h", expectedStatuses } });
  try {
    assert.equal(await Promise.all([check("/204"), check("/299"), check("/300"), check("/503"), check("/418", [{ start: 418, end: 419 }]), check("/hang")]), [true, true, false, false, true, false]);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  assert.is(await probe({ address, timeoutMs: 300, http: { path: "/200", host: "", expectedStatuses: [{ start: 200, end: 201 }] } }), false, "nothing listens any more");
  assert.is(await probe({ address, timeoutMs: 300 }), false, "TCP: refused");
});

hc.run();
