import { suite } from "uvu";
import * as assert from "uvu/assert";
import { setFlagsFromString } from "node:v8";
import { PermissionViolationError } from "@nats-io/transport-node";
import { runInNewContext } from "node:vm";
import { DEFAULT_BUCKETS, type Exchange } from "../../federation/index.ts";
import { encodeRecord } from "../../federation/internal.ts";
import { waitFor } from "../env/index.ts";
import { ExchangeHarness, exportOf } from "../support/exchange-harness.ts";

const LEASE_TTL_MS = 2_000;
const until = (what: string, probe: () => boolean, timeoutMs = 10_000) => waitFor(what, async () => (probe() ? true : undefined), { timeoutMs, intervalMs: 20 });

const exchange = suite<{ h: ExchangeHarness; a: Exchange; b: Exchange }>("exchange over a real nats-server with per-cluster credentials", {} as never);

exchange.before(async (ctx) => {
  ctx.h = await ExchangeHarness.start({ clusters: ["cluster-a", "cluster-b", "cluster-c"], leaseTtlMs: LEASE_TTL_MS });
  ctx.a = await ctx.h.startExchange("cluster-a");
  ctx.b = await ctx.h.startExchange("cluster-b");
});
exchange.after(async (ctx) => {
  await ctx.h?.stop();
});

exchange("an export published in A appears in B's merged view with its fields", async ({ a, b }) => {
  await a.publishExport(exportOf("shop", "web", { ports: [{ name: "grpc", protocol: "TCP", port: 9090, appProtocol: "grpc" }] }));
  await until("B to see shop/web", () => b.service("shop", "web") !== undefined);
  const merged = b.service("shop", "web");
  assert.equal(merged?.exports.map((e) => [e.cluster, e.ports[0]?.port, e.ports[0]?.appProtocol]), [["cluster-a", 9090, "grpc"]]);
});

exchange("watchServices delivers the current state first, then changes", async ({ a, b }) => {
  const controller = new AbortController();
  const stream = b.watchServices({ signal: controller.signal });
  const first = await stream.next();
  assert.is(first.done, false);
  assert.is(first.value?.key, "shop/web");
  await a.publishExport(exportOf("shop", "cart"));
  const next = await stream.next();
  assert.equal([next.value?.key, next.value?.service?.exports[0]?.cluster], ["shop/cart", "cluster-a"]);
  controller.abort();
  assert.equal(await stream.next(), { done: true, value: undefined });
});

exchange("a withdrawn export leaves no residue on the bus or in any view", async ({ h, a, b }) => {
  await a.withdrawExport("shop", "cart");
  await until("B to drop shop/cart", () => b.service("shop", "cart") === undefined);
  const kv = await h.rawKv("admin");
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  assert.not.ok(keys.includes("cluster-a.shop.cart"), `keys left: ${keys.join(", ")}`);
  const history: string[] = [];
  for await (const e of await kv.history({ key: "cluster-a.shop.cart" })) history.push(e.operation);
  assert.equal(history, ["DEL"], "only the delete marker, which the server expires, remains");
});

exchange("a cluster that starts late converges from KV state alone", async ({ h }) => {
  const c = await h.startExchange("cluster-c");
  assert.is(c.service("shop", "web")?.exports[0]?.cluster, "cluster-a", "present as soon as start() resolves");
  assert.equal(c.clusters().map((x) => x.name), ["cluster-a", "cluster-b", "cluster-c"]);
  await h.stopExchange("cluster-c");
});

exchange("rejects forged, malformed and wrongly-attributed records without losing the last good value", async ({ h, a, b }) => {
  const kv = await h.rawKv("cluster-a");
  const signer = h.pki.identity("cluster-a").signer;
  const before = b.stats().rejected;
  const good = b.service("shop", "web");
  const signed = (key: string, body: unknown) => encodeRecord({ signer, bucket: DEFAULT_BUCKETS.exports, key, kind: "export", generation: Date.now(), body: body as never });
  const forged = JSON.parse(Buffer.from(signed("cluster-a.shop.web", exportOf("shop", "web"))).toString()) as { body: { gateway: unknown } };
  forged.body.gateway = { host: "6.6.6.6", port: 15443 };
  await kv.put("cluster-a.shop.web", JSON.stringify(forged));
  await kv.put("cluster-a.shop.web", signed("cluster-a.shop.web", { ...exportOf("shop", "web"), type: "LoadBalancer" }));
  const otherOrigin = JSON.parse(Buffer.from(signed("cluster-a.shop.web", exportOf("shop", "web"))).toString()) as { origin: string };
  otherOrigin.origin = "cluster-b";
  await kv.put("cluster-a.shop.web", JSON.stringify(otherOrigin));
  await kv.put("cluster-a.shop.web", "definitely not json");
  await until("B to reject all four", () => {
    const r = b.stats().rejected;
    return r.signature - before.signature === 2 && r.schema - before.schema === 1 && r.malformed - before.malformed === 1;
  });
  assert.equal(b.service("shop", "web"), good, "the last good export is kept");
  await a.publishExport(exportOf("shop", "web", { readyEndpoints: [{ zone: "zone-a", ready: 7 }] }));
  await until("B to apply A's next good write", () => b.service("shop", "web")?.exports[0]?.readyEndpoints[0]?.ready === 7);
});

exchange("the server refuses cluster A's credentials writing cluster B's export", async ({ h, b }) => {
  const kv = await h.rawKv("cluster-a");
  const signer = h.pki.identity("cluster-a").signer;
  let refused: unknown;
  try {
    await kv.put("cluster-b.shop.evil", encodeRecord({ signer, bucket: DEFAULT_BUCKETS.exports, key: "cluster-b.shop.evil", kind: "export", generation: 1, body: exportOf("shop", "evil") }));
  } catch (err) {
    refused = err;
  }
  assert.instance(refused, Error);
  assert.instance((refused as Error).cause, PermissionViolationError, "the server refused the publish");
  const admin = await h.rawKv("admin");
  assert.is(await admin.get("cluster-b.shop.evil"), null);
  assert.is(b.service("shop", "evil"), undefined);
});

exchange("keeps watching through 1,000 junk records with flat memory", async ({ h, a, b }) => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const kv = await h.rawKv("cluster-a");
  const junk = async (round: number) => {
    for (let i = 0; i < 500; i++) await kv.put(`cluster-a.junk.j${round}-${i}`, `{"v":1,"kind":"export","junk":${i}}`);
  };
  const rejected = () => b.stats().rejected.schema;
  const start = rejected();
  await junk(1);
  await until("first 500 rejected", () => rejected() - start === 500);
  gc();
  const heapAfterFirst = process.memoryUsage().heapUsed;
  await junk(2);
  await until("second 500 rejected", () => rejected() - start === 1_000);
  gc();
  const growth = process.memoryUsage().heapUsed - heapAfterFirst;
  assert.ok(growth < 2 * 1024 * 1024, `heap grew ${growth} bytes over 500 more junk records`);
  await a.publishExport(exportOf("shop", "after-junk"));
  await until("B to still apply good records", () => b.service("shop", "after-junk") !== undefined);
  assert.not.ok(b.clusters().some((c) => c.stale));
});

exchange("a cluster whose lease lapses is withdrawn everywhere, and restored when it returns", async ({ h, b }) => {
  const c = await h.startExchange("cluster-c");
  await c.publishExport(exportOf("shop", "from-c"));
  await until("B to see C's export", () => b.service("shop", "from-c") !== undefined);
  await h.stopExchange("cluster-c"); // stops renewing; the server expires the lease after its TTL
  await until("B to mark C stale", () => b.clusters().find((x) => x.name === "cluster-c")?.stale === true, LEASE_TTL_MS * 5);
  assert.is(b.service("shop", "from-c"), undefined, "C's exports are withdrawn from routing");
  await h.startExchange("cluster-c");
  await until("B to restore C", () => b.service("shop", "from-c") !== undefined);
  assert.not.ok(b.clusters().find((x) => x.name === "cluster-c")?.stale);
  await h.stopExchange("cluster-c");
});

exchange.run();
