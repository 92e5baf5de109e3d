import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry, XdsServer } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { EchoBackend, exchange, gatewayLeaf, SERVICE_PORT, topologySnapshot, Topology, waitFor } from "../support/gateway-harness.ts";

const pki = await createClusterSetPki(["a", "b"]);
const registry = ProtoRegistry.load();
const bin = new URL("../../bin/fedgate.js", import.meta.url).pathname;

interface Ctx {
  topology?: Topology;
}

/** A client connection kept open across a change; `say` sends and waits for the echo. */
function openConnection(port: number): { socket: Socket; received: () => string; say: (text: string) => Promise<void> } {
  const socket = connect({ host: "127.0.0.1", port });
  let received = "";
  socket.on("data", (c: Buffer) => (received += c.toString()));
  socket.on("error", () => socket.destroy());
  return {
    socket,
    received: () => received,
    async say(text) {
      const want = received.length + text.length;
      socket.write(text);
      await waitFor(`echo of ${text}`, () => received.length >= want && received.endsWith(text) && !socket.destroyed);
    },
  };
}

const life = suite<Ctx>("gateway life cycle", {});

life.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

life("an endpoint update applies to new connections; an open connection to a removed endpoint carries on", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 } }));
  const sim = t.get("a");
  const open = openConnection(t.importPort("a"));
  await open.say("one");
  assert.ok(open.received().startsWith("a-1\n"));
  const replacement = await EchoBackend.start("a-new");
  const [old] = sim.backends;
  sim.backends = [replacement];
  t.push("a");
  await waitFor("new connections reach the replacement", async () => (await exchange(t.importPort("a"))) === "a-new");
  await open.say("two");
  assert.is(open.received(), "a-1\nonetwo");
  open.socket.destroy();
  await old!.kill();
});

life("a listener it cannot honour (an HTTP import whose port is taken) is NACKed; the running config keeps serving", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 } }));
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", () => resolve()));
  const taken = (squatter.address() as AddressInfo).port;
  try {
    t.extraServices = [
      {
        key: "demo/web",
        namespace: "demo",
        name: "web",
        exports: [
          {
            cluster: "a",
            namespace: "demo",
            name: "web",
            ports: [{ name: "http", protocol: "TCP", port: taken }],
            type: "ClusterSetIP",
            sessionAffinity: "None",
            readyEndpoints: [{ zone: "z-a", ready: 1 }],
            gateway: { host: "127.0.0.1", port: 15443 },
          },
        ],
      },
    ];
    t.push("a");
    const xds = t.get("a").xds;
    await waitFor("listener NACK recorded by the control plane", () => (xds.status().nodes.find((n) => n.node?.id === "gw-a")?.types.listener?.nacks ?? 0) >= 1);
    const nack = xds.status().nodes.find((n) => n.node?.id === "gw-a")?.types.listener?.lastNack;
    assert.match(nack?.message ?? "", new RegExp(`fedgate-import-${taken}.*cannot bind`));
    assert.ok(t.metric("a", "fedgate_gateway_xds_updates_total", { type: "listener", result: "nack" }) >= 1);
    assert.is(await exchange(t.importPort("a")), "a-1");
    assert.is(t.get("a").gateway.listenerAddresses()[`fedgate-import-${taken}`], undefined);
    assert.not.ok(t.get("a").gateway.ready(), "not ready while a listener is not bound");
  } finally {
    squatter.close();
  }
});

life("the control plane going away leaves the data plane serving; it reconnects with backoff and takes new config", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 } }));
  const replaced = await t.restartControlPlane("a", "a-new", async () => {
    for (let i = 0; i < 3; i++) assert.is(await exchange(t.importPort("a")), "a-1", "served from the last accepted config");
  });
  await waitFor("new config applied after the reconnect", async () => (await exchange(t.importPort("a"))) === "a-new");
  for (const b of replaced) await b.kill();
});

life("`fedgate gateway --bootstrap`: ready and metrics over HTTP; SIGTERM stops new connections, drains open ones, exits 0", async () => {
  const backend = await EchoBackend.start("a-1");
  const xds = await XdsServer.start({});
  const dir = await mkdtemp(path.join(tmpdir(), "fedgate-gw-"));
  const child = spawn(process.execPath, [bin, "gateway", "--bootstrap", path.join(dir, "bootstrap.json")], { stdio: ["ignore", "ignore", "pipe"] });
  try {
    const leaf = await gatewayLeaf(pki, "a");
    xds.setSnapshot(topologySnapshot({ self: "a", pki, exporters: ["a"], exportPorts: new Map(), backends: [backend], leaf }));
    xds.flush();
    const bootstrap = {
      node: { id: "gw-cli", cluster: "a" },
      xds_servers: [{ server_uri: xds.address }],
      admin: { address: "127.0.0.1", port: 0 },
      fedgate: { bind_address: "127.0.0.1", port_overrides: { "15443": 0, [String(SERVICE_PORT)]: 0 }, drain_timeout_ms: 60_000 },
    };
    await writeFile(path.join(dir, "bootstrap.json"), JSON.stringify(bootstrap));
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    await waitFor("the gateway to log its admin address", () => /"gateway started"/.test(stderr));
    const started = JSON.parse(stderr.split("\n").find((l) => l.includes('"gateway started"')) ?? "{}") as { admin?: string };
    const admin = `http://${started.admin}`;
    await waitFor("ready", async () => (await fetch(`${admin}/ready`)).status === 200);
    const listeners = (await (await fetch(`${admin}/listeners`)).json()) as Record<string, { port: number }>;
    const port = listeners[`fedgate-import-${SERVICE_PORT}`]!.port;
    assert.is(await exchange(port), "a-1");
    const open = openConnection(port);
    await open.say("before");
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    assert.match(metrics, /fedgate_gateway_downstream_connections_total\{listener="fedgate-import-9000"\} 2/);
    assert.match(metrics, /fedgate_gateway_upstream_active_connections\{cluster="outbound\|9000\|\|echo.demo.svc.clusterset.local"\} 1/);

    child.kill("SIGTERM");
    await waitFor("not ready while draining", async () => (await fetch(`${admin}/ready`)).status === 503);
    const refused = await exchange(port).then(
      () => "served",
      () => "refused",
    );
    assert.is(refused, "refused", "no new connections while draining");
    await open.say("during-drain");
    assert.is(open.received(), "a-1\nbeforeduring-drain");
    open.socket.end();
    assert.is(await exited, 0);
    assert.match(stderr, /"gateway stopped".*"connectionsCut":0/);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    await xds.close();
    await backend.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

life.run();
