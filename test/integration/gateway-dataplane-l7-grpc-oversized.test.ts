import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { greeterClient, L7Topology } from "../support/l7-harness.ts";

const pki = await createClusterSetPki(["a"]);
const registry = ProtoRegistry.load();
const LISTENER = "fedgate-import-9000";
/** grpc/doc/statuscodes.md */
const RESOURCE_EXHAUSTED = 8;

interface Ctx {
  topology?: L7Topology;
}

const grpcLimits = suite<Ctx>("gateway HTTP import listener: a gRPC call with oversized metadata", {});

grpcLimits.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

grpcLimits("gets a trailers-only RESOURCE_EXHAUSTED that a real grpc-js client reads as such, counted as header_overflow; the next call on the same channel is served", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 } }));
  const client = greeterClient(t.importPort("a"));
  try {
    // Two 12 KiB values: over the gateway's 16 KiB header list, under the 64 KiB it advertises (so Node lets them in).
    const refused = await client.greet("big", 10_000, { "x-big-1": "x".repeat(12 * 1024), "x-big-2": "y".repeat(12 * 1024) }).then(
      () => undefined,
      (err: unknown) => err as { code?: number; details?: string },
    );
    assert.ok(refused, "the call failed");
    assert.is(refused.code, RESOURCE_EXHAUSTED, `grpc status ${refused.code} (${refused.details})`);
    assert.is(refused.details, "request metadata too large");
    assert.is(t.metric("a", "fedgate_gateway_http_downstream_errors_total", { listener: LISTENER, reason: "header_overflow" }), 1);
    const after = await client.greet("after");
    assert.is(after.reply, "a-1:after");
    assert.is(after.servedBy, "a");
  } finally {
    client.close();
  }
});

grpcLimits.run();
