import { request as h1request, Agent } from "node:http";
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { gatewayLeaf, waitFor } from "../support/gateway-harness.ts";
import { greeterClient, GREETER_CLUSTER, L7Topology, WEB_CLUSTER, WEB_HOST } from "../support/l7-harness.ts";

const pki = await createClusterSetPki(["a", "b", "c"]);
const registry = ProtoRegistry.load();

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function get(port: number, path: string, options: { agent?: Agent; host?: string; method?: string; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = h1request({ host: "127.0.0.1", port, path, method: options.method ?? "GET", agent: options.agent, headers: { host: options.host ?? `${WEB_HOST}:9000` } }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

function h2get(session: ClientHttp2Session, path: string, authority = WEB_HOST): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path, ":authority": authority });
    let body = "";
    let headers: Record<string, string | string[] | undefined> = {};
    stream.on("response", (h) => (headers = h as typeof headers));
    stream.on("data", (c: Buffer) => (body += c.toString()));
    stream.on("end", () => resolve({ status: Number(headers[":status"]), body, headers }));
    stream.on("error", reject);
    stream.end();
  });
}

interface Ctx {
  topology?: L7Topology;
}

const l7 = suite<Ctx>("gateway data plane: HTTP/1.1, h2c and gRPC through an mTLS gateway pair", {});

l7.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

l7("HTTP/1.1 keep-alive requests to A's import port are served by B through B's mTLS export, with x-fedgate-cluster", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await get(t.importPort("a"), `/hello/${i}`, { agent });
      assert.is(r.status, 200);
      assert.is(r.body, `b-1 GET /hello/${i} `);
      assert.is(r.headers["x-fedgate-cluster"], "b");
    }
    const post = await get(t.importPort("a"), "/echo", { agent, method: "POST", body: "payload" });
    assert.is(post.body, "b-1 POST /echo payload");
  } finally {
    agent.destroy();
  }
  assert.is(t.metric("a", "fedgate_gateway_http_requests_total", { cluster: WEB_CLUSTER, served_by: "b", class: "2xx" }), 6);
  assert.is(t.metric("a", "fedgate_gateway_downstream_connections_total", { listener: "fedgate-import-9000" }), 1, "one keep-alive client connection");
  assert.is(t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: WEB_CLUSTER }), 1, "one pooled mTLS connection to B");
  const unknown = await get(t.importPort("a"), "/", { host: "nobody.example" });
  assert.is(unknown.status, 404);
});

l7("h2c with prior knowledge on the same port; one long-lived h2 connection is balanced per request", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 3 } }));
  const session = h2connect(`http://127.0.0.1:${t.importPort("a")}`);
  try {
    const served: string[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await h2get(session, `/h2/${i}`);
      assert.is(r.status, 200);
      assert.is(r.headers["x-fedgate-cluster"], "a");
      served.push(r.body.split(" ")[0]!);
    }
    assert.equal([...new Set(served)].sort(), ["a-1", "a-2", "a-3"], "every backend served some of one connection's requests");
    assert.is(served.filter((s) => s === "a-1").length, 3, "weighted round robin per request");
  } finally {
    session.close();
  }
  assert.is(t.metric("a", "fedgate_gateway_downstream_connections_total", { listener: "fedgate-import-9000" }), 1);
});

l7("gRPC through the pair: unary calls served by B, trailers (status) preserved, UNAVAILABLE retried elsewhere", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a", "b"], members: { a: 1, b: 1 } }));
  const client = greeterClient(t.importPort("a"));
  try {
    const local = await client.greet("x");
    assert.equal(local, { reply: "a-1:x", servedBy: "a" });
    t.get("a").grpc[0]!.fail = true;
    const retried = await client.greet("y");
    assert.equal(retried, { reply: "b-1:y", servedBy: "b" }, "UNAVAILABLE from a-1 retried on the peer");
    assert.ok(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: GREETER_CLUSTER, reason: "grpc_unavailable" }) >= 1);
    t.get("b").grpc[0]!.fail = true;
    const err = await client.greet("z").then(
      () => undefined,
      (e: { code?: number }) => e,
    );
    assert.is(err?.code, 14, "UNAVAILABLE everywhere reaches the client as UNAVAILABLE");
  } finally {
    client.close();
  }
});

/** Steady HTTP/1.1 keep-alive load: `workers` loops of GET until stopped; records who served each and every failure. */
class RequestLoad {
  readonly served: string[] = [];
  readonly failures: string[] = [];
  private running = true;
  private readonly loops: Promise<void>[];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 4 });

  constructor(port: number, workers = 4) {
    this.loops = Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; this.running; i++) {
        try {
          const r = await get(port, `/load/${w}/${i}`, { agent: this.agent });
          if (r.status !== 200) this.failures.push(`${r.status} ${r.body}`);
          else this.served.push(String(r.headers["x-fedgate-cluster"]));
        } catch (err) {
          this.failures.push(String(err));
        }
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.agent.destroy();
  }
}

l7("local backends killed under steady HTTP load: zero failed requests, served by the peer; restored: back to local", async (ctx) => {
  // Short ejections, so the restored endpoints are tried again soon.
  const policy = { outlierDetection: { baseEjectionMs: 2_000 } };
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a", "b"], members: { a: 2, b: 1 }, policy }));
  const [a1, a2] = t.get("a").web;
  const load = new RequestLoad(t.importPort("a"));
  await waitFor("load on local endpoints", () => load.served.length >= 40);
  await a1!.kill();
  await a2!.kill();
  const atKill = load.served.length;
  await waitFor("load after both local endpoints died", () => load.served.length >= atKill + 80);
  await a1!.listen();
  await a2!.listen();
  // Ejected endpoints come back when their ejection ends; a fresh assignment is not needed.
  await waitFor("traffic back on the local cluster", () => load.served.slice(-20).every((c) => c === "a") && load.served.length > atKill + 100, 60_000);
  await load.stop();
  assert.equal(load.failures, [], "no request failed");
  assert.ok(load.served.slice(0, atKill).every((c) => c === "a"), "served locally at first");
  assert.ok(load.served.slice(atKill + 10, atKill + 80).every((c) => c === "b"), "served by the peer while local endpoints were down");
  assert.ok(t.metric("a", "fedgate_gateway_http_failovers_total", { cluster: WEB_CLUSTER }) >= 1, "failovers counted");
  assert.ok(t.metric("a", "fedgate_gateway_http_requests_total", { cluster: WEB_CLUSTER, served_by: "b", class: "2xx" }) >= 70);
  console.log(`    served ${load.served.length} requests, ${load.served.filter((c) => c === "b").length} by the peer; retries ${JSON.stringify(t.get("a").gateway.metrics.registry.render().split("\n").filter((l) => l.startsWith("fedgate_gateway_http_retries_total{")))}`);
});

l7("route timeout answers 504 (gRPC: DEADLINE_EXCEEDED); a 5xx of an idempotent request is retried on another endpoint", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 2 }, policy: { timeoutMs: 1_000 } }));
  // 1 s: long enough for two quick 503 answers on a loaded machine, short of the slow paths below.
  const slow = await get(t.importPort("a"), "/slow/5000");
  assert.is(slow.status, 504);
  assert.is(t.metric("a", "fedgate_gateway_http_timeouts_total", { cluster: WEB_CLUSTER }), 1);
  const fast = await get(t.importPort("a"), "/slow/10");
  assert.is(fast.status, 200, "the next request is served");
  const failing = await get(t.importPort("a"), "/status/503");
  assert.is(failing.status, 503, "both endpoints answered 503: the last answer is passed on");
  assert.is(failing.headers["x-fedgate-attempts"], "2", "tried on the other endpoint");
  const post = await get(t.importPort("a"), "/status/503", { method: "POST", body: "x" });
  assert.is(post.headers["x-fedgate-attempts"], "2", "a small POST body is buffered whole, so it is replayed too");
  for (const b of t.get("a").grpc) b.delayMs = 5_000;
  const client = greeterClient(t.importPort("a"));
  try {
    const err = await client.greet("late").then(
      () => undefined,
      (e: { code?: number; details?: string }) => e,
    );
    assert.is(err?.code, 4, "the gateway's route timeout (1 s, well before the client's 10 s deadline) ends the call with DEADLINE_EXCEEDED");
    assert.is(t.metric("a", "fedgate_gateway_http_timeouts_total", { cluster: GREETER_CLUSTER }), 1);
  } finally {
    client.close();
  }
  await waitFor("no request left in flight", () => t.metric("a", "fedgate_gateway_upstream_active_requests", { cluster: WEB_CLUSTER }) === 0 && t.metric("a", "fedgate_gateway_upstream_active_requests", { cluster: GREETER_CLUSTER }) === 0);
});

l7.run();

const EXPORT_LISTENER = "fedgate-export-15443";
const tunnels = suite<Ctx>("gateway data plane: L7 upstream connections to peer gateways as fedgate-mux streams", {});

tunnels.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

/** `count` concurrent keep-alive requests on `agent`; each must be answered 200 by `cluster`. */
async function burst(port: number, agent: Agent, count: number, cluster: string, path = "/slow/100"): Promise<void> {
  const replies = await Promise.all(Array.from({ length: count }, (_, i) => get(port, `${path}?${i}`, { agent })));
  for (const r of replies) {
    assert.is(r.status, 200, r.body);
    assert.is(r.headers["x-fedgate-cluster"], cluster);
  }
}

tunnels("pooled HTTP/1.1 connections and the h2 session to a peer gateway are streams of one tunnel, reused across requests", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const agent = new Agent({ keepAlive: true, maxSockets: 20 });
  try {
    await burst(t.importPort("a"), agent, 20, "b");
    await burst(t.importPort("a"), agent, 20, "b");
  } finally {
    agent.destroy();
  }
  const pooled = t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: WEB_CLUSTER });
  assert.ok(pooled >= 2, `concurrent requests used several pooled connections (${pooled})`);
  assert.ok(pooled < 40, `pooled connections carried several requests each (${pooled} for 40)`);
  const client = greeterClient(t.importPort("a"));
  try {
    assert.equal(await client.greet("x"), { reply: "b-1:x", servedBy: "b" }, "gRPC over the h2 session's stream");
  } finally {
    client.close();
  }
  const h2 = t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: GREETER_CLUSTER });
  assert.is(h2, 1);
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 1, "one tunnel from A to B");
  assert.is(t.metric("b", "fedgate_gateway_downstream_connections_total", { listener: EXPORT_LISTENER }), 1, "one TCP connection reached B");
  assert.is(t.metric("b", "fedgate_gateway_downstream_streams_total", { listener: EXPORT_LISTENER }), pooled + h2, "every pooled connection was a stream");
});

tunnels("with mux_tunnels: false each pooled connection is its own mTLS connection to the peer, as before", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, muxTunnels: false }));
  const agent = new Agent({ keepAlive: true, maxSockets: 5 });
  try {
    await burst(t.importPort("a"), agent, 5, "b");
  } finally {
    agent.destroy();
  }
  const pooled = t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: WEB_CLUSTER });
  assert.ok(pooled >= 1);
  assert.is(t.metric("b", "fedgate_gateway_downstream_connections_total", { listener: EXPORT_LISTENER }), pooled);
  assert.is(t.metric("b", "fedgate_gateway_mux_tunnels_total", { side: "accepted" }), 0);
});

tunnels("a killed peer gateway: pooled connections on its tunnel are dropped, not reused, and requests fail over to the next priority", async (ctx) => {
  const policy = { failover: { clusterOrder: ["b", "c"] } };
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy }));
  const agent = new Agent({ keepAlive: true, maxSockets: 3 });
  try {
    await burst(t.importPort("a"), agent, 3, "b");
    assert.ok(t.metric("a", "fedgate_gateway_upstream_active_connections", { cluster: WEB_CLUSTER }) >= 1, "idle pooled connections to B");
    await t.get("b").gateway.close();
    await waitFor("the tunnel and its pooled connections are gone", () => t.metric("a", "fedgate_gateway_mux_active_tunnels", { side: "dialled" }) === 0 && t.metric("a", "fedgate_gateway_upstream_active_connections", { cluster: WEB_CLUSTER }) === 0);
    await burst(t.importPort("a"), agent, 3, "c");
  } finally {
    agent.destroy();
  }
  assert.is(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "refused_stream" }), 0, "no request was sent on a stale pooled connection");
  assert.ok(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "connect_failure" }) >= 1, "B's gateway refused the dial");
  assert.ok(t.metric("a", "fedgate_gateway_http_failovers_total", { cluster: WEB_CLUSTER }) >= 1);
});

tunnels("a peer that accepts TCP but never finishes the handshake: the dial counts against the per-try timeout, and the request is served by the next priority", async (ctx) => {
  // The connect timeout outlasts the route timeout: without the per-try bound on the dial, the request would end in a 504.
  const policy = { failover: { clusterOrder: ["b", "c"] }, retries: { perTryTimeoutMs: 300 }, connectTimeoutMs: 60_000, timeoutMs: 10_000 };
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy }));
  const held: Socket[] = [];
  const silent = createNetServer((socket) => held.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  try {
    t.exportPorts.set("b", (silent.address() as AddressInfo).port);
    t.push("a");
    await waitFor("A dials B at the silent port", () => t.get("a").gateway.configSummary().endpoints.some((e) => e.localities.some((l) => l.endpoints.some((x) => x.address.port === (silent.address() as AddressInfo).port))));
    for (let i = 0; i < 2; i++) {
      const r = await get(t.importPort("a"), `/silent/${i}`);
      assert.is(r.status, 200, r.body);
      assert.is(r.headers["x-fedgate-cluster"], "c");
    }
    assert.ok(held.length >= 1, "A's dial reached the silent peer");
    assert.ok(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "connect_failure" }) >= 1);
  } finally {
    for (const socket of held) socket.destroy();
    silent.close();
  }
});

tunnels("a peer whose backend is down refuses the stream: a connect failure, retried on the next priority", async (ctx) => {
  const policy = { failover: { clusterOrder: ["b", "c"] } };
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy }));
  for (const b of t.get("b").web) await b.kill();
  for (let i = 0; i < 3; i++) {
    const r = await get(t.importPort("a"), `/after-kill/${i}`);
    assert.is(r.status, 200, r.body);
    assert.is(r.headers["x-fedgate-cluster"], "c");
  }
  assert.ok(t.metric("a", "fedgate_gateway_mux_stream_refusals_total", { reason: "no_healthy_upstream" }) >= 1, "B's refusal reached A as a reset");
  assert.ok(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "connect_failure" }) >= 1);
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 2, "the tunnel to B stayed up (one to B, one to C)");
});

tunnels("drain of the peer gateway (GOAWAY): idle pooled connections and the h2 session on its tunnel end at once, new requests go to the next priority, nothing is cut", async (ctx) => {
  const policy = { failover: { clusterOrder: ["b", "c"] } };
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy }));
  const agent = new Agent({ keepAlive: true, maxSockets: 3 });
  const client = greeterClient(t.importPort("a"));
  try {
    await burst(t.importPort("a"), agent, 3, "b");
    assert.equal(await client.greet("before"), { reply: "b-1:before", servedBy: "b" }, "an h2 session on the tunnel too");
    const drained = t.get("b").gateway.drain();
    await waitFor("A's pooled connections and h2 session to B ended", () => t.metric("b", "fedgate_gateway_downstream_active_streams", { listener: EXPORT_LISTENER }) === 0);
    await burst(t.importPort("a"), agent, 3, "c");
    assert.equal(await client.greet("after"), { reply: "c-1:after", servedBy: "c" });
    assert.is(await drained, 0, "the drain ended with the tunnel's last stream, nothing had to be cut");
  } finally {
    agent.destroy();
    client.close();
  }
  assert.is(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "refused_stream" }), 0, "no request was sent on a retired pooled connection");
});

tunnels("SDS rotation of the dialling gateway's certificate: pooled connections and the h2 session retire, new ones go on a new tunnel, the old tunnel closes", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const agent = new Agent({ keepAlive: true, maxSockets: 3 });
  const client = greeterClient(t.importPort("a"));
  try {
    await burst(t.importPort("a"), agent, 3, "b");
    assert.equal(await client.greet("before"), { reply: "b-1:before", servedBy: "b" });
    const acks = t.metric("a", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" });
    t.get("a").leaf = await gatewayLeaf(pki, "a");
    t.push("a");
    await waitFor("A installed its new certificate", () => t.metric("a", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" }) > acks);
    await burst(t.importPort("a"), agent, 3, "b");
    assert.equal(await client.greet("after"), { reply: "b-1:after", servedBy: "b" });
  } finally {
    agent.destroy();
    client.close();
  }
  assert.is(t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: GREETER_CLUSTER }), 2, "a new h2 session after the rotation");
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 2, "a second tunnel, with the new identity");
  await waitFor("the old tunnel closes once its pooled connections retired", () => t.metric("a", "fedgate_gateway_mux_active_tunnels", { side: "dialled" }) === 1);
});

tunnels("A's cluster revoked at B: B cuts the tunnel and its pooled connections, requests fail over to the next priority", async (ctx) => {
  const policy = { failover: { clusterOrder: ["b", "c"] } };
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy }));
  const agent = new Agent({ keepAlive: true, maxSockets: 3 });
  try {
    await burst(t.importPort("a"), agent, 3, "b");
    const crl = await pki.root.issueRevocationList({ intermediates: [pki.identity("a").intermediate.certificate], crlNumber: 1 });
    const acks = t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" });
    t.get("b").revocationsPem = crl.pem;
    t.push("b");
    await waitFor("B installed the revocation list", () => t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" }) > acks);
    await waitFor("A's tunnel and its pooled connections are cut", () => t.metric("a", "fedgate_gateway_upstream_active_connections", { cluster: WEB_CLUSTER }) === 0);
    await burst(t.importPort("a"), agent, 3, "c");
  } finally {
    agent.destroy();
  }
  assert.ok(t.metric("b", "fedgate_gateway_downstream_refused_total", { listener: EXPORT_LISTENER, reason: "revoked" }) >= 1, "the cut is counted at B");
  assert.is(t.metric("a", "fedgate_gateway_http_retries_total", { cluster: WEB_CLUSTER, reason: "refused_stream" }), 0, "no request was sent on a cut pooled connection");
});

tunnels("a peer without fedgate-mux/1 (a TLS-terminating stand-in, as Envoy would be) gets one mTLS connection per pooled connection", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const b = t.get("b");
  let handshakes = 0;
  // B's identity, client certificates verified, no ALPN: it never selects fedgate-mux/1.
  const standIn = createTlsServer({ cert: b.leaf.chainPem, key: b.leaf.keyPem, ca: pki.bundle.caPems(), requestCert: true, rejectUnauthorized: true }, (tls) => {
    handshakes += 1;
    const up = netConnect({ host: "127.0.0.1", port: b.web[0]!.port });
    tls.on("error", () => up.destroy());
    up.on("error", () => tls.destroy());
    tls.pipe(up).pipe(tls);
  });
  await new Promise<void>((resolve) => standIn.listen(0, "127.0.0.1", resolve));
  const agent = new Agent({ keepAlive: true, maxSockets: 5 });
  try {
    const acks = t.metric("a", "fedgate_gateway_xds_updates_total", { type: "endpoint", result: "ack" });
    t.exportPorts.set("b", (standIn.address() as AddressInfo).port);
    t.push("a");
    await waitFor("A has B's endpoint at the stand-in", () => t.metric("a", "fedgate_gateway_xds_updates_total", { type: "endpoint", result: "ack" }) > acks);
    await burst(t.importPort("a"), agent, 5, "b");
  } finally {
    agent.destroy();
    standIn.close();
  }
  const pooled = t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: WEB_CLUSTER });
  assert.ok(pooled >= 1);
  assert.is(handshakes, pooled, "one TLS connection per pooled connection");
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 0, "no tunnel without the peer's ALPN");
  assert.is(t.metric("b", "fedgate_gateway_downstream_connections_total", { listener: EXPORT_LISTENER }), 0, "B's own gateway was not used");
});

tunnels.run();
