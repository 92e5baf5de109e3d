import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { ConnectionLoad, exchange, INBOUND, OUTBOUND, Topology, waitFor } from "../support/gateway-harness.ts";

const pki = await createClusterSetPki(["a", "b", "c"]);
const registry = ProtoRegistry.load();

interface Ctx {
  topology?: Topology;
}

const e2e = suite<Ctx>("gateway data plane: import -> peer export over mTLS", {});

e2e.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

e2e("a connection to A's import listener is served by B's backend through B's mTLS export listener", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await exchange(t.importPort("a")));
  assert.equal(ids, ["b-1", "b-1", "b-1", "b-1", "b-1"]);
  assert.is(t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: OUTBOUND }), 5);
  assert.is(t.metric("b", "fedgate_gateway_upstream_connections_total", { cluster: INBOUND }), 5);
  // The five connections travel as five streams in one fedgate-mux tunnel (one TCP connection to B).
  assert.is(t.metric("b", "fedgate_gateway_downstream_streams_total", { listener: "fedgate-export-15443" }), 5);
  assert.is(t.metric("b", "fedgate_gateway_downstream_connections_total", { listener: "fedgate-export-15443" }), 1);
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 1);
  await waitFor("bytes counted", () => t.metric("a", "fedgate_gateway_bytes_total", { cluster: OUTBOUND, direction: "upstream" }) === 5 * 4);
  await waitFor("bytes counted on B", () => t.metric("b", "fedgate_gateway_bytes_total", { cluster: INBOUND, direction: "upstream" }) === 5 * 4);
  assert.is(t.metric("b", "fedgate_gateway_bytes_total", { cluster: INBOUND, direction: "downstream" }), 5 * ("b-1\n".length + 4));
});

e2e("a 4 MiB payload crosses the mTLS pair both ways intact and in order (bulk writes coalesced)", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  // A pattern that does not repeat on 16 KiB boundaries, so a reordered or dropped chunk shows.
  const payload = Buffer.from(Array.from({ length: 4 << 20 }, (_, i) => 97 + ((i * 7_919) % 26))).toString("latin1");
  assert.is(await exchange(t.importPort("a"), payload, 60_000), "b-1");
  await waitFor("bytes counted", () => t.metric("a", "fedgate_gateway_bytes_total", { cluster: OUTBOUND, direction: "upstream" }) === payload.length);
  assert.is(t.metric("a", "fedgate_gateway_bytes_total", { cluster: OUTBOUND, direction: "downstream" }), "b-1\n".length + payload.length);
});

e2e("local endpoints first, weighted round robin among them; peers only after", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a", "b"], members: { a: 2, b: 1 } }));
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await exchange(t.importPort("a")));
  assert.equal([...new Set(ids)].sort(), ["a-1", "a-2"]);
  assert.is(ids.filter((id) => id === "a-1").length, 3);
});

e2e("endpoints killed under steady connection load: zero failed new connections, then traffic settles on the peer", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a", "b"], members: { a: 2, b: 1 } }));
  const [a1, a2] = t.get("a").backends;
  const load = new ConnectionLoad(() => t.importPort("a"));
  await waitFor("load on local endpoints", () => load.served.length >= 40);
  await a1!.kill();
  const atFirstKill = load.served.length;
  await waitFor("load after the first kill", () => load.served.length >= atFirstKill + 40);
  await a2!.kill();
  const atSecondKill = load.served.length;
  await waitFor("load after both local endpoints died", () => load.served.length >= atSecondKill + 40);
  await load.stop();
  assert.equal(load.newConnectionFailures, [], "no new connection failed");
  assert.ok(load.served.slice(0, atFirstKill).every((id) => id.startsWith("a-")), "served locally at first");
  assert.ok(load.served.slice(atSecondKill + 8).every((id) => id === "b-1"), "settled on the peer");
  assert.ok(t.metric("a", "fedgate_gateway_failovers_total", { cluster: OUTBOUND }) >= 1, "failovers counted");
  assert.ok(t.metric("a", "fedgate_gateway_outlier_ejections_total", { cluster: OUTBOUND }) >= 2, "both dead endpoints ejected");
  console.log(`    served ${load.served.length} connections; ${load.inFlightFailures.length} in-flight resets; failovers ${t.metric("a", "fedgate_gateway_failovers_total", { cluster: OUTBOUND })}`);
});

e2e("outlier detection ejects after consecutive connect failures, then stops trying the endpoint", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 2 }, policy: { outlierDetection: { consecutive5xx: 2, baseEjectionMs: 600_000 } } }));
  await t.get("a").backends[0]!.kill();
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) ids.push(await exchange(t.importPort("a")));
  assert.ok(ids.every((id) => id === "a-2"));
  assert.is(t.metric("a", "fedgate_gateway_outlier_ejections_total", { cluster: OUTBOUND }), 1);
  assert.is(t.metric("a", "fedgate_gateway_upstream_connect_failures_total", { cluster: OUTBOUND }), 2);
  assert.is(t.metric("a", "fedgate_gateway_failovers_total", { cluster: OUTBOUND }), 2);
});

e2e("active TCP health checks take a dead endpoint out before any client hits it, and bring it back", async (ctx) => {
  const policy = { healthCheck: { intervalMs: 100, timeoutMs: 1_000, unhealthyThreshold: 2, healthyThreshold: 1 } };
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 2 }, policy }));
  const [a1] = t.get("a").backends;
  await a1!.kill();
  await waitFor("a-1 marked unhealthy", () => t.metric("a", "fedgate_gateway_health_check_transitions_total", { cluster: OUTBOUND, state: "unhealthy" }) === 1);
  const failuresBefore = t.metric("a", "fedgate_gateway_upstream_connect_failures_total", { cluster: OUTBOUND });
  for (let i = 0; i < 6; i++) assert.is(await exchange(t.importPort("a")), "a-2");
  assert.is(t.metric("a", "fedgate_gateway_upstream_connect_failures_total", { cluster: OUTBOUND }), failuresBefore, "no client connection tried a-1");
  await a1!.listen();
  await waitFor("a-1 healthy again", () => t.metric("a", "fedgate_gateway_health_check_transitions_total", { cluster: OUTBOUND, state: "healthy" }) === 1);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await exchange(t.importPort("a")));
  assert.equal([...new Set(ids)].sort(), ["a-1", "a-2"]);
});

e2e.run();
