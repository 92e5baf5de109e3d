import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { exchange, INBOUND, OUTBOUND, Topology, waitFor } from "../support/gateway-harness.ts";

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
  assert.is(t.metric("b", "fedgate_gateway_downstream_connections_total", { listener: "fedgate-export-15443" }), 5);
  await waitFor("bytes counted", () => t.metric("a", "fedgate_gateway_bytes_total", { cluster: OUTBOUND, direction: "upstream" }) === 5 * 4);
});

e2e("local endpoints first, weighted round robin among them; peers only after", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a", "b"], members: { a: 2, b: 1 } }));
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await exchange(t.importPort("a")));
  assert.equal([...new Set(ids)].sort(), ["a-1", "a-2"]);
  assert.is(ids.filter((id) => id === "a-1").length, 3);
});

e2e.run();
