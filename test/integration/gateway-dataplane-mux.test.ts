import { createHash, randomBytes } from "node:crypto";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { encodeFrame, encodeOpen, FrameDecoder, FrameType, MUX_ALPN, type Frame } from "../../gateway/internal.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { EXPORT_SNI, exchange, gatewayLeaf, INBOUND, openConnection, OUTBOUND, Topology, waitFor } from "../support/gateway-harness.ts";

const pki = await createClusterSetPki(["a", "b", "c"]);
const registry = ProtoRegistry.load();
const EXPORT_LISTENER = "fedgate-export-15443";

interface Ctx {
  topology?: Topology;
}

const mux = suite<Ctx>("gateway data plane: fedgate-mux tunnels between gateways", {});

mux.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

mux("many concurrent connections travel as streams of one tunnel, each counted as a connection per upstream cluster", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => exchange(t.importPort("a"), `payload-${i}`)));
  assert.equal(new Set(ids), new Set(["b-1"]));
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 1, "one tunnel from A to B");
  assert.is(t.metric("b", "fedgate_gateway_mux_tunnels_total", { side: "accepted" }), 1);
  assert.is(t.metric("b", "fedgate_gateway_downstream_connections_total", { listener: EXPORT_LISTENER }), 1, "one TCP connection reached B");
  assert.is(t.metric("b", "fedgate_gateway_downstream_streams_total", { listener: EXPORT_LISTENER }), 50);
  assert.is(t.metric("a", "fedgate_gateway_upstream_connections_total", { cluster: OUTBOUND }), 50);
  assert.is(t.metric("b", "fedgate_gateway_upstream_connections_total", { cluster: INBOUND }), 50);
  await waitFor("every stream closed on B", () => t.metric("b", "fedgate_gateway_upstream_active_connections", { cluster: INBOUND }) === 0);
  assert.is(t.metric("b", "fedgate_gateway_downstream_active_streams", { listener: EXPORT_LISTENER }), 0);
  assert.is(t.metric("a", "fedgate_gateway_mux_active_tunnels", { side: "dialled" }), 1, "the tunnel outlives its streams");
});

mux("a large body both ways with a slow reader arrives whole, and does not hold up another stream of the tunnel", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const body = randomBytes(16 * 1024 * 1024);
  const slow = netConnect({ host: "127.0.0.1", port: t.importPort("a") });
  const chunks: Buffer[] = [];
  let received = 0;
  slow.on("data", (c: Buffer) => {
    chunks.push(c);
    received += c.length;
  });
  const ended = new Promise<void>((resolve) => slow.once("end", resolve));
  await waitFor("the slow client is connected to B's backend", () => received >= "b-1\n".length);
  slow.pause();
  slow.end(body);
  // While the slow client reads nothing, other connections through the same tunnel are served.
  for (let i = 0; i < 3; i++) assert.is(await exchange(t.importPort("a")), "b-1");
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 1, "all on one tunnel");
  slow.resume();
  await ended;
  const all = Buffer.concat(chunks);
  assert.is(all.subarray(0, 4).toString(), "b-1\n");
  assert.is(all.length - 4, body.length);
  assert.is(createHash("sha256").update(all.subarray(4)).digest("hex"), createHash("sha256").update(body).digest("hex"), "echoed byte for byte");
  assert.is(t.metric("a", "fedgate_gateway_mux_protocol_errors_total", { side: "dialled", reason: "window_exceeded" }), 0);
  slow.destroy();
});

mux("half-close: the client's FIN reaches the backend through the tunnel, the rest of the answer still arrives, then END comes back", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const c = openConnection(t.importPort("a"));
  await waitFor("connected", () => c.received() === "b-1\n");
  c.socket.end("last words");
  await waitFor("the echo and the backend's FIN came back", () => c.closed());
  assert.is(c.received(), "b-1\nlast words");
  await waitFor("the stream is gone on B", () => t.metric("b", "fedgate_gateway_downstream_active_streams", { listener: EXPORT_LISTENER }) === 0);
  assert.is(t.metric("a", "fedgate_gateway_mux_active_tunnels", { side: "dialled" }), 1, "a finished stream leaves the tunnel open");
});

mux("a peer whose backend is down refuses the stream before the client sent anything: the connection fails over to the next priority", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy: { failover: { clusterOrder: ["b", "c"] } } }));
  assert.is(await exchange(t.importPort("a")), "b-1", "B is the first priority");
  await t.get("b").backends[0]!.kill();
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await exchange(t.importPort("a")));
  assert.equal(ids, ["c-1", "c-1", "c-1", "c-1"], "every new connection served by C, none failed");
  assert.ok(t.metric("a", "fedgate_gateway_mux_stream_refusals_total", { reason: "no_healthy_upstream" }) >= 1, "B's refusal reached A as a reset");
  assert.ok(t.metric("b", "fedgate_gateway_downstream_refused_total", { listener: EXPORT_LISTENER, reason: "no_healthy_upstream" }) >= 1);
  assert.ok(t.metric("a", "fedgate_gateway_failovers_total", { cluster: OUTBOUND }) >= 1);
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 2, "the tunnel to B stayed up (one to B, one to C)");
});

mux("a killed peer gateway: its tunnel's open connections fail at once and new connections go to the next priority", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy: { failover: { clusterOrder: ["b", "c"] } } }));
  const open = [openConnection(t.importPort("a")), openConnection(t.importPort("a"))];
  await waitFor("both connections reached B", () => open.every((c) => c.received() === "b-1\n"));
  const killedAt = Date.now();
  await t.get("b").gateway.close();
  await waitFor("the open connections are cut", () => open.every((c) => c.closed()));
  console.log(`    open connections cut ${Date.now() - killedAt} ms after B's gateway went away`);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await exchange(t.importPort("a")));
  assert.equal(ids, ["c-1", "c-1", "c-1", "c-1"]);
  assert.is(t.metric("a", "fedgate_gateway_mux_active_tunnels", { side: "dialled" }), 1, "only the tunnel to C is left");
});

mux("drain (SIGTERM): B sends GOAWAY; its open stream carries on, new connections go to C, and the drain ends with the last stream", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b", "c"], members: { a: 0, b: 1, c: 1 }, policy: { failover: { clusterOrder: ["b", "c"] } } }));
  const open = openConnection(t.importPort("a"));
  await waitFor("connected to B", () => open.received() === "b-1\n");
  const drained = t.get("b").gateway.drain();
  assert.is(await exchange(t.importPort("a")), "c-1", "a new connection goes to C");
  open.socket.write("still here");
  await waitFor("the open stream still echoes", () => open.received() === "b-1\nstill here");
  open.socket.end();
  assert.is(await drained, 0, "nothing had to be cut");
  assert.ok(open.closed() || (await waitFor("closed", () => open.closed()).then(() => true)));
});

mux("SDS rotation of the dialling gateway's certificate: new connections go on a new tunnel; the old one finishes its stream, then closes", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const open = openConnection(t.importPort("a"));
  await waitFor("connected", () => open.received() === "b-1\n");
  const acks = t.metric("a", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" });
  t.get("a").leafPem = await gatewayLeaf(pki, "a");
  t.push("a");
  await waitFor("A installed its new certificate", () => t.metric("a", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" }) > acks);
  assert.is(await exchange(t.importPort("a")), "b-1");
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 2, "a second tunnel, with the new identity");
  open.socket.write("old tunnel");
  await waitFor("the stream on the old tunnel still works", () => open.received() === "b-1\nold tunnel");
  open.socket.end();
  await waitFor("the old tunnel closes after its last stream", () => t.metric("a", "fedgate_gateway_mux_active_tunnels", { side: "dialled" }) === 1);
});

mux("new secrets on the exporting side: streams on an admitted tunnel are checked against the new bundle and still served", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  assert.is(await exchange(t.importPort("a")), "b-1");
  const acks = t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" });
  t.get("b").leafPem = await gatewayLeaf(pki, "b");
  t.push("b");
  await waitFor("B installed its new secrets", () => t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" }) > acks);
  for (let i = 0; i < 3; i++) assert.is(await exchange(t.importPort("a")), "b-1");
  assert.is(t.metric("b", "fedgate_gateway_mux_tunnels_total", { side: "accepted" }), 1, "the re-verified tunnel was kept");
  assert.is(t.metric("b", "fedgate_gateway_downstream_streams_total", { listener: EXPORT_LISTENER }), 4);
});

mux("a caller cluster that is not a consumer is refused per stream (counted as today's unauthorized_cluster); consumers are served", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1, c: 0 }, consumers: ["c"] }));
  let refused: unknown;
  await exchange(t.importPort("a"), "ping", 5_000).catch((err: unknown) => (refused = err));
  assert.ok(refused, "A is not a consumer");
  assert.is(t.metric("b", "fedgate_gateway_tls_handshake_failures_total", { side: "downstream", reason: "unauthorized_cluster" }), 1);
  assert.is(t.metric("a", "fedgate_gateway_mux_stream_refusals_total", { reason: "unauthorized_cluster" }), 1);
  assert.is(await exchange(t.importPort("c")), "b-1");
  assert.is(t.metric("b", "fedgate_gateway_upstream_connections_total", { cluster: INBOUND }), 1, "only C reached the backend");
});

mux("with tunnels turned off (mux_tunnels: false) A dials one mTLS connection per client connection, as before", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, muxTunnels: false }));
  for (let i = 0; i < 3; i++) assert.is(await exchange(t.importPort("a")), "b-1");
  assert.is(t.metric("b", "fedgate_gateway_downstream_connections_total", { listener: EXPORT_LISTENER }), 3);
  assert.is(t.metric("b", "fedgate_gateway_mux_tunnels_total", { side: "accepted" }), 0);
});

/** A raw TLS client at B's export listener with A's identity, offering `alpn`. */
async function rawPeer(t: Topology, alpn: string[] | undefined): Promise<{ socket: TLSSocket; frames: Frame[]; closed: () => boolean; text: () => string }> {
  const leaf = await pki.identity("a").intermediate.issueLeaf({ spiffeId: `spiffe://${pki.trustDomain}/cluster/a/gateway` });
  const socket = tlsConnect({
    host: "127.0.0.1",
    port: t.exportPorts.get("b")!,
    servername: EXPORT_SNI,
    ca: pki.bundle.caPems(),
    cert: leaf.chainPem,
    key: leaf.privateKeyPem ?? "",
    checkServerIdentity: () => undefined,
    ...(alpn ? { ALPNProtocols: alpn } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  const frames: Frame[] = [];
  const raw: Buffer[] = [];
  const decoder = new FrameDecoder();
  let closed = false;
  socket.on("data", (c: Buffer) => {
    raw.push(c);
    if (socket.alpnProtocol === MUX_ALPN) frames.push(...decoder.push(c));
  });
  socket.on("error", () => socket.destroy());
  socket.on("close", () => (closed = true));
  return { socket, frames, closed: () => closed, text: () => Buffer.concat(raw).toString() };
}

mux("peers that do not offer fedgate-mux (Envoy, older gateways, other ALPN) get today's per-connection SNI relay", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const cases = [
    { alpn: undefined, selected: false },
    { alpn: ["h2", "http/1.1"], selected: "http/1.1" },
    { alpn: ["h2"], selected: "h2" },
  ];
  for (const { alpn, selected } of cases) {
    const p = await rawPeer(t, alpn);
    assert.is(p.socket.alpnProtocol, selected, `ALPN offered ${JSON.stringify(alpn)}`);
    p.socket.write("hello");
    await waitFor("relayed", () => p.text() === "b-1\nhello");
    p.socket.destroy();
  }
  assert.is(t.metric("b", "fedgate_gateway_mux_tunnels_total", { side: "accepted" }), 0);
});

const junk: { name: string; frames: () => Buffer[]; reason: string }[] = [
  { name: "bytes that are not frames", frames: () => [Buffer.from("GET / HTTP/1.1\r\n\r\n")], reason: "unknown_frame_type" },
  { name: "an oversized frame", frames: () => [Buffer.from([FrameType.DATA, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff])], reason: "frame_too_large" },
  { name: "data on a stream never opened", frames: () => [encodeFrame(FrameType.DATA, 7, Buffer.from("x"))], reason: "unknown_stream" },
  { name: "data before the stream was acknowledged", frames: () => [encodeOpen(1, EXPORT_SNI), encodeFrame(FrameType.DATA, 1, Buffer.from("too early"))], reason: "data_before_ack" },
  { name: "a stream id used twice", frames: () => [encodeOpen(3, EXPORT_SNI), encodeOpen(3, EXPORT_SNI)], reason: "stream_id_reused" },
];

mux("bad input on a tunnel closes that tunnel with a counted reason; an unknown service is a stream reset; the gateway keeps serving", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  // An unknown service: that stream is reset (counted as today's unknown SNI), the tunnel stays.
  const p = await rawPeer(t, [MUX_ALPN]);
  assert.is(p.socket.alpnProtocol, MUX_ALPN);
  p.socket.write(encodeOpen(1, "outbound_.9999_._.secret.kube-system.svc.clusterset.local"));
  await waitFor("a reset for stream 1", () => p.frames.some((f) => f.type === FrameType.RESET && f.stream === 1));
  assert.is(p.frames.find((f) => f.stream === 1)!.payload[0], 1, "reason unknown_service");
  assert.is(t.metric("b", "fedgate_gateway_tls_handshake_failures_total", { side: "downstream", reason: "unknown_sni" }), 1);
  assert.not.ok(p.closed());
  p.socket.destroy();

  for (const j of junk) {
    const peer = await rawPeer(t, [MUX_ALPN]);
    peer.socket.write(Buffer.concat(j.frames()));
    await waitFor(`B closed the tunnel on ${j.name}`, () => peer.closed());
    assert.is(t.metric("b", "fedgate_gateway_mux_protocol_errors_total", { side: "accepted", reason: j.reason }), 1, j.name);
    assert.is(await exchange(t.importPort("a")), "b-1", `A is still served after ${j.name}`);
  }
});

mux.run();
