import { request } from "node:http";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { sleep } from "../../common/index.ts";
import { ProtoRegistry } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { L7Topology, WEB_CLUSTER, WEB_HOST } from "../support/l7-harness.ts";

const pki = await createClusterSetPki(["a", "b"]);
const registry = ProtoRegistry.load();

interface Ctx {
  topology?: L7Topology;
}

const stale = suite<Ctx>("gateway data plane: a pooled HTTP/1.1 connection the backend closed while idle", {});

stale.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

/** One request on its own client connection; the status, who served it, and the body. */
function call(port: number, method = "GET", body?: string): Promise<{ status: number; servedBy: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/x", method, agent: false, headers: { host: `${WEB_HOST}:9000` } }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, servedBy: String(res.headers["x-fedgate-cluster"] ?? ""), body: text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

stale("a request that crosses the backend's close of its idle pooled connection goes again on a fresh connection to the same backend: no endpoint failure, no other cluster", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a", "b"], members: { a: 1, b: 1 } }));
  const backend = t.get("a").web[0]!;
  backend.dropReused = true;
  const port = t.importPort("a");
  const replies = [];
  for (let i = 0; i < 10; i++) replies.push(await call(port, i % 2 ? "POST" : "GET", i % 2 ? `body-${i}` : undefined));
  assert.equal(
    replies.map((r) => `${r.status} ${r.servedBy}`),
    Array.from({ length: 10 }, () => "200 a"),
  );
  assert.is(replies[1]!.body, "a-1 POST /x body-1", "the replayed POST body arrived whole");
  assert.is(backend.dropped, 9, "every request after the first went out on a pooled connection the backend then dropped");
  assert.is(t.metric("a", "fedgate_gateway_http_stale_connection_retries_total", { cluster: WEB_CLUSTER }), 9);
  assert.is(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "refused_stream" }), 0, "not a retry on another endpoint");
  assert.is(t.metric("a", "fedgate_gateway_outlier_ejections_total", { cluster: WEB_CLUSTER }), 0);
  assert.is(t.get("b").web[0]!.hits, 0, "nothing went to the other cluster");
});

stale("against a backend with a short keep-alive timeout, requests spaced around it are all served locally", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a", "b"], members: { a: 1, b: 1 } }));
  const backend = t.get("a").web[0]!;
  await backend.kill();
  backend.keepAliveTimeoutMs = 150;
  await backend.listen();
  const port = t.importPort("a");
  const gapsMs = [0, 100, 140, 150, 160, 200, 120, 145, 155, 170, 130, 150, 148, 152, 250];
  const served: string[] = [];
  for (const gap of gapsMs) {
    await sleep(gap);
    const r = await call(port);
    served.push(`${r.status} ${r.servedBy}`);
  }
  assert.equal(
    served,
    gapsMs.map(() => "200 a"),
  );
  assert.is(backend.hits, gapsMs.length);
  assert.is(t.get("b").web[0]!.hits, 0);
  assert.is(t.metric("a", "fedgate_gateway_outlier_ejections_total", { cluster: WEB_CLUSTER }), 0);
});

stale.run();
