import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import path from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { sleep } from "../../common/index.ts";
import { ProtoRegistry, XdsServer } from "../../gateway/index.ts";
import { encodeFrame, FrameDecoder, FrameType, MUX_ALPN, MUX_ALPN_PING, MUX_ALPNS, MuxSession, type Frame } from "../../gateway/internal.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { ConnectionLoad, EXPORT_SNI, exchange, gatewayLeaf, INBOUND, openConnection, OUTBOUND, SERVICE_PORT, topologySnapshot, Topology, waitFor } from "../support/gateway-harness.ts";
import { L7Topology, WEB_CLUSTER, WEB_HOST } from "../support/l7-harness.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

const pki = await createClusterSetPki(["a", "b", "c"]);
const registry = ProtoRegistry.load();
const KEEPALIVE = { intervalMs: 200, timeoutMs: 400 };
const bin = new URL("../../bin/fedgate.js", import.meta.url).pathname;

interface Ctx {
  topology?: Topology | L7Topology;
  proxy?: TcpProxy;
}

const keepalive = suite<Ctx>("gateway data plane: fedgate-mux/2 keep-alive pings between gateways", {});

keepalive.after.each(async (ctx) => {
  await ctx.topology?.close();
  await ctx.proxy?.close();
  ctx.topology = undefined;
  ctx.proxy = undefined;
});

/** A, preferring B then C, reaches B through a proxy the test can black-hole. */
async function behindProxy(ctx: Ctx): Promise<{ t: Topology; proxy: TcpProxy }> {
  const t = (ctx.topology = await Topology.start({
    pki,
    registry,
    exporters: ["b", "c"],
    members: { a: 0, b: 1, c: 1 },
    policy: { failover: { clusterOrder: ["b", "c"] }, connectTimeoutMs: 1_000 },
    keepAlive: KEEPALIVE,
  }));
  const proxy = (ctx.proxy = await TcpProxy.start({ host: "127.0.0.1", port: t.exportPorts.get("b")! }));
  t.exportPorts.set("b", proxy.port);
  t.push("a");
  await waitFor("A reaches B through the proxy", () => t.get("a").gateway.configSummary().endpoints.some((e) => e.localities.some((l) => l.endpoints.some((x) => x.address.port === proxy.port))));
  return { t, proxy };
}

keepalive("an idle tunnel to a live peer is kept by PING/PONG: the same tunnel serves again after many keep-alive intervals", async (ctx) => {
  const { t } = await behindProxy(ctx);
  assert.is(await exchange(t.importPort("a")), "b-1");
  // Idle for several keep-alive rounds: PINGs go out and are answered.
  await sleep(KEEPALIVE.intervalMs * 6);
  assert.is(await exchange(t.importPort("a")), "b-1");
  assert.is(t.metric("a", "fedgate_gateway_mux_tunnels_total", { side: "dialled" }), 1, "still the first tunnel");
  assert.is(t.metric("a", "fedgate_gateway_mux_keepalive_timeouts_total"), 0);
  assert.is(t.metric("b", "fedgate_gateway_mux_protocol_errors_total", { side: "accepted", reason: "unexpected_frame" }), 0);
  assert.is(t.metric("b", "fedgate_gateway_mux_accepted_keepalive_timeouts_total"), 0, "B's own PINGs were answered");
});

keepalive("the exporting side PINGs too: an importing gateway frozen with SIGSTOP (no FIN, its kernel still ACKs) has its tunnel closed by B after the keep-alive timeout, with its streams and their backend connections; resumed, it dials afresh", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { b: 1 }, keepAlive: KEEPALIVE }));
  const backend = t.get("b").backends[0]!;
  // A is a gateway process of its own, so it can be frozen while B (in this process) runs on.
  const xdsA = await XdsServer.start({});
  xdsA.setSnapshot(topologySnapshot({ self: "a", pki, exporters: ["b"], exportPorts: t.exportPorts, backends: [], leaf: await gatewayLeaf(pki, "a") }));
  xdsA.flush();
  const dir = await mkdtemp(path.join(tmpdir(), "fedgate-gw-frozen-"));
  const bootstrap = {
    node: { id: "gw-a", cluster: "a" },
    xds_servers: [{ server_uri: xdsA.address }],
    admin: { address: "127.0.0.1", port: 0 },
    fedgate: { bind_address: "127.0.0.1", port_overrides: { "15443": 0, [String(SERVICE_PORT)]: 0 }, mux_keepalive_interval_ms: KEEPALIVE.intervalMs, mux_keepalive_timeout_ms: KEEPALIVE.timeoutMs },
  };
  await writeFile(path.join(dir, "bootstrap.json"), JSON.stringify(bootstrap));
  const child = spawn(process.execPath, [bin, "gateway", "--bootstrap", path.join(dir, "bootstrap.json")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  try {
    // A process of its own starts slowly on a loaded machine (tsx, protos): a generous deadline.
    await waitFor("A to log its admin address", () => /"gateway started"/.test(stderr), 60_000);
    const started = JSON.parse(stderr.split("\n").find((l) => l.includes('"gateway started"')) ?? "{}") as { admin?: string };
    const admin = `http://${started.admin}`;
    await waitFor("A ready", async () => (await fetch(`${admin}/ready`)).status === 200, 60_000);
    const listeners = (await (await fetch(`${admin}/listeners`)).json()) as Record<string, { port: number }>;
    const port = listeners[`fedgate-import-${SERVICE_PORT}`]!.port;
    const held = [openConnection(port), openConnection(port)];
    await waitFor("both connections reach B's backend through one tunnel", () => held.every((c) => c.received() === "b-1\n") && backend.openConnections === 2);
    assert.is(t.metric("b", "fedgate_gateway_mux_active_tunnels", { side: "accepted" }), 1);
    assert.is(t.metric("b", "fedgate_gateway_downstream_active_streams", { listener: "fedgate-export-15443" }), 2);

    child.kill("SIGSTOP");
    const frozenAt = Date.now();
    await waitFor("B closes the silent tunnel", () => t.metric("b", "fedgate_gateway_mux_accepted_keepalive_timeouts_total") === 1);
    await waitFor("B's backend connections of its streams are closed", () => backend.openConnections === 0);
    console.log(`    B closed the frozen dialler's tunnel and its 2 backend connections ${Date.now() - frozenAt} ms after SIGSTOP (interval ${KEEPALIVE.intervalMs} ms, timeout ${KEEPALIVE.timeoutMs} ms)`);
    assert.is(t.metric("b", "fedgate_gateway_mux_active_tunnels", { side: "accepted" }), 0);
    assert.is(t.metric("b", "fedgate_gateway_downstream_active_streams", { listener: "fedgate-export-15443" }), 0);
    assert.is(t.metric("b", "fedgate_gateway_upstream_active_connections", { cluster: INBOUND }), 0);

    child.kill("SIGCONT");
    await waitFor("A, running again, cuts the client connections of the closed tunnel", () => held.every((c) => c.closed()));
    assert.is(await exchange(port), "b-1", "a new tunnel serves");
    assert.is(t.metric("b", "fedgate_gateway_mux_tunnels_total", { side: "accepted" }), 2);
  } finally {
    child.kill("SIGKILL");
    await xdsA.close();
    await rm(dir, { recursive: true, force: true });
  }
});

keepalive("a peer that hangs with its socket open (black-holed): its tunnel is declared dead, its open stream is cut, connections waiting on it and new ones go to the next priority and none fails", async (ctx) => {
  const { t, proxy } = await behindProxy(ctx);
  const open = openConnection(t.importPort("a"));
  await waitFor("connected to B through the tunnel", () => open.received() === "b-1\n");
  const holedAt = Date.now();
  proxy.blackHole();
  // Connections made after the peer went silent: their opens wait on the silent tunnel, none was accepted
  // by B, so each can still go elsewhere. (One already open through the tunnel cannot: its bytes may be lost.)
  const load = new ConnectionLoad(() => t.importPort("a"), 4);
  await waitFor("the keep-alive timeout closed the tunnel", () => t.metric("a", "fedgate_gateway_mux_keepalive_timeouts_total") === 1);
  await waitFor("the open connection through the dead tunnel is cut", () => open.closed());
  console.log(`    tunnel declared dead ${Date.now() - holedAt} ms after the black hole (interval ${KEEPALIVE.intervalMs} ms, timeout ${KEEPALIVE.timeoutMs} ms)`);
  await waitFor("new connections are served by C", () => load.served.filter((id) => id === "c-1").length >= 20);
  await load.stop();
  assert.equal(load.newConnectionFailures, [], "no connection made after the peer went silent failed");
  assert.equal(load.inFlightFailures, []);
  assert.not.ok(load.served.includes("b-1"), "B sent nothing after the black hole");
  assert.ok(t.metric("a", "fedgate_gateway_failovers_total", { cluster: OUTBOUND }) >= 1);
  assert.ok(t.metric("a", "fedgate_gateway_outlier_ejections_total", { cluster: OUTBOUND }) >= 1, "B was ejected by outlier detection");
  assert.is(await exchange(t.importPort("a")), "c-1");
});

/** Steady HTTP/1.1 load through A on kept-alive client connections: who served each request, and what failed. */
class RequestLoad {
  readonly served: { cluster: string; at: number }[] = [];
  readonly failures: string[] = [];
  private running = true;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 4 });
  private readonly loops: Promise<void>[];

  constructor(port: number) {
    this.loops = Array.from({ length: 4 }, async () => {
      while (this.running) {
        const outcome = await new Promise<string>((resolve) => {
          const req = request({ host: "127.0.0.1", port, path: "/load", agent: this.agent, headers: { host: WEB_HOST } }, (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode === 200 ? `ok ${String(res.headers["x-fedgate-cluster"])}` : `HTTP ${res.statusCode}`));
          });
          req.on("error", (err) => resolve(err.message));
          req.end();
        });
        if (outcome.startsWith("ok ")) this.served.push({ cluster: outcome.slice(3), at: Date.now() });
        else this.failures.push(outcome);
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.agent.destroy();
  }
}

keepalive("L7 through a peer that goes silent: no request fails; the peer's HTTP check (through its tunnel, which the keep-alive closes) takes it out, and a per-try timeout moves requests stuck on it", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({
    pki,
    registry,
    exporters: ["b", "c"],
    members: { a: 0, b: 1, c: 1 },
    policy: {
      failover: { clusterOrder: ["b", "c"] },
      retries: { perTryTimeoutMs: 2_000 },
      healthCheck: { intervalMs: 300, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 1, http: { path: "/healthz" } },
    },
    keepAlive: KEEPALIVE,
  }));
  const proxy = (ctx.proxy = await TcpProxy.start({ host: "127.0.0.1", port: t.exportPorts.get("b")! }));
  t.exportPorts.set("b", proxy.port);
  t.push("a");
  await waitFor("A reaches B through the proxy", () => t.get("a").gateway.configSummary().endpoints.some((e) => e.localities.some((l) => l.endpoints.some((x) => x.address.port === proxy.port))));
  const unhealthy = () => t.metric("a", "fedgate_gateway_health_check_transitions_total", { cluster: WEB_CLUSTER, state: "unhealthy" });
  const unhealthyBefore = unhealthy();
  const load = new RequestLoad(t.importPort("a"));
  await waitFor("the load is served by B", () => load.served.filter((s) => s.cluster === "b").length >= 20);
  const holedAt = Date.now();
  proxy.blackHole();
  await waitFor("A takes B out", () => unhealthy() > unhealthyBefore);
  await waitFor("the load is served by C", () => load.served.filter((s) => s.at > holedAt && s.cluster === "c").length >= 20);
  await load.stop();
  const lastB = Math.max(...load.served.filter((s) => s.cluster === "b").map((s) => s.at));
  const firstC = Math.min(...load.served.filter((s) => s.cluster === "c").map((s) => s.at));
  console.log(`    L7: first answer from C ${firstC - holedAt} ms after the black hole; last from B ${lastB - holedAt} ms; ${load.served.length} requests, ${load.failures.length} failed`);
  assert.equal(load.failures, [], "no L7 request failed");
  assert.ok(t.metric("a", "fedgate_gateway_mux_keepalive_timeouts_total") >= 1, "the checks' tunnel to B was declared dead by the keep-alive");
  assert.ok(lastB - holedAt < 1_000, "B answered nothing after the black hole (what it answered had left before)");
});

/** A peer in its own process that answers every PING (17 bytes: header + 8) with a PONG; prints its port. */
const PONG_PEER = `
const net = require("node:net");
const server = net.createServer((s) => {
  let buf = Buffer.alloc(0);
  s.on("data", (c) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 17) {
      const frame = Buffer.from(buf.subarray(0, 17));
      buf = buf.subarray(17);
      frame[0] = ${FrameType.PONG};
      s.write(frame);
    }
  });
  s.on("error", () => s.destroy());
});
// Not console.log: the test runner's FORCE_COLOR would colour the number.
server.listen(0, "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"));
`;

keepalive("a stall of the pinging gateway's own event loop past the timeout is not taken for a silent peer: the PONG waiting in its socket counts", async () => {
  const child = spawn(process.execPath, ["-e", PONG_PEER], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise<number>((resolve) => child.stdout.once("data", (c: Buffer) => resolve(Number(c.toString().trim()))));
    const socket = netConnect({ host: "127.0.0.1", port });
    await new Promise((resolve) => socket.once("connect", resolve));
    let pongBytes = 0;
    socket.on("data", (c: Buffer) => (pongBytes += c.length));
    // Our own loop stalls (a long GC pause, a burst of synchronous work) right as a PING leaves, three times:
    // the PONG arrives while we are stalled, and the ping timeout is overdue when the loop runs again.
    let stalls = 0;
    const write: (chunk: Buffer) => boolean = socket.write.bind(socket);
    socket.write = (chunk: Buffer) => {
      const flushed = write(chunk);
      if (chunk[0] === FrameType.PING && stalls < 3) {
        stalls += 1;
        const until = Date.now() + 1_000;
        while (Date.now() < until) continue;
      }
      return flushed;
    };
    let timeouts = 0;
    const session = new MuxSession({ socket, role: "client", maxStreams: 8, pings: true, keepAlive: { intervalMs: 50, timeoutMs: 100 }, onKeepAliveTimeout: () => (timeouts += 1) });
    await waitFor("three stalls (or a timeout)", () => stalls === 3 || session.closed);
    await sleep(200);
    assert.ok(pongBytes >= 17 * 3, `PONGs came back (${pongBytes} bytes)`);
    assert.is(timeouts, 0, "no keep-alive timeout");
    assert.not.ok(session.closed);
    session.destroy();
  } finally {
    child.kill();
  }
});

/** A raw TLS client at B's export listener with A's identity, offering `alpn`; what it receives, decoded as frames. */
async function rawPeer(t: Topology, alpn: string[]): Promise<{ socket: ReturnType<typeof tlsConnect>; frames: Frame[]; closed: () => boolean }> {
  const leaf = await pki.identity("a").intermediate.issueLeaf({ spiffeId: `spiffe://${pki.trustDomain}/cluster/a/gateway` });
  const socket = tlsConnect({
    host: "127.0.0.1",
    port: t.exportPorts.get("b")!,
    servername: EXPORT_SNI,
    ca: pki.bundle.caPems(),
    cert: leaf.chainPem,
    key: leaf.privateKeyPem ?? "",
    checkServerIdentity: () => undefined,
    ALPNProtocols: alpn,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  const frames: Frame[] = [];
  const decoder = new FrameDecoder();
  let closed = false;
  socket.on("data", (c: Buffer) => frames.push(...decoder.push(c)));
  socket.on("error", () => socket.destroy());
  socket.on("close", () => (closed = true));
  return { socket, frames, closed: () => closed };
}

keepalive("ALPN versions the PING: a dialler offering both gets fedgate-mux/2 and a PONG with its payload; a fedgate-mux/1 peer that PINGs is cut as junk", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 } }));
  const v2 = await rawPeer(t, [...MUX_ALPNS]);
  assert.is(v2.socket.alpnProtocol, MUX_ALPN_PING);
  const payload = Buffer.from("01234567");
  v2.socket.write(encodeFrame(FrameType.PING, 0, payload));
  await waitFor("the PONG", () => v2.frames.length === 1);
  assert.is(v2.frames[0]!.type, FrameType.PONG);
  assert.ok(v2.frames[0]!.payload.equals(payload), "PONG echoes the PING's bytes");
  assert.not.ok(v2.closed());

  // An old dialler offers only fedgate-mux/1 and must never be sent a PING; a PING from it is junk on that version.
  const v1 = await rawPeer(t, [MUX_ALPN]);
  assert.is(v1.socket.alpnProtocol, MUX_ALPN);
  v1.socket.write(encodeFrame(FrameType.PING, 0, payload));
  await waitFor("the fedgate-mux/1 tunnel is cut", () => v1.closed());
  assert.equal(v1.frames, [], "no PONG on fedgate-mux/1");
  assert.is(t.metric("b", "fedgate_gateway_mux_protocol_errors_total", { side: "accepted", reason: "unexpected_frame" }), 1);
  v2.socket.destroy();
});

keepalive.run();
