import { createServer, type AddressInfo } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createLogger } from "../../common/index.ts";
import { Gateway, ProtoRegistry, XdsServer, type FederationSnapshotInput } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { EchoBackend, exchange, gatewayBootstrap, gatewayLeaf, topologySnapshot, Topology, waitFor } from "../support/gateway-harness.ts";

const pki = await createClusterSetPki(["a", "b"]);
const registry = ProtoRegistry.load();

interface Ctx {
  topology?: Topology;
}

/** `GET /ready` on the gateway's admin port. */
async function readiness(gateway: Gateway): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${gateway.adminPort}/ready`);
  return { status: res.status, body: await res.text() };
}

async function metricsText(gateway: Gateway): Promise<string> {
  return (await fetch(`http://127.0.0.1:${gateway.adminPort}/metrics`)).text();
}

/** An L4 service that A imports on `port` (no override: its listener binds that very port). */
function importedOn(port: number): FederationSnapshotInput["services"] {
  return [
    {
      key: "demo/db",
      namespace: "demo",
      name: "db",
      exports: [
        {
          cluster: "a",
          namespace: "demo",
          name: "db",
          ports: [{ name: "tcp", protocol: "TCP", port }],
          type: "ClusterSetIP",
          sessionAffinity: "None",
          readyEndpoints: [{ zone: "z-a", ready: 1 }],
          gateway: { host: "127.0.0.1", port: 15443 },
        },
      ],
    },
  ];
}

const ready = suite<Ctx>("gateway readiness", {});

ready.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

for (const xdsProtocol of ["delta", "sotw"] as const) {
  ready(`${xdsProtocol}: a listener whose port is taken makes /ready 503 naming it and the error, with a gauge and a log line; once the port is free the next listener push binds it and /ready is 200`, async (ctx) => {
    const lines: { msg: string; listener?: string; reasons?: string[] }[] = [];
    const logger = createLogger({ level: "info", write: (line) => lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, xdsProtocol, logger }));
    const gateway = t.get("a").gateway;
    assert.equal(await readiness(gateway), { status: 200, body: "ready\n" });
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", () => resolve()));
    const taken = (squatter.address() as AddressInfo).port;
    const listener = `fedgate-import-${taken}`;
    try {
      t.extraServices = importedOn(taken);
      t.push("a");
      await waitFor("/ready 503", async () => (await readiness(gateway)).status === 503);
      const { body } = await readiness(gateway);
      assert.equal(body.split("\n"), ["not ready", `listener ${listener}: EADDRINUSE on 127.0.0.1:${taken}`, ""]);
      const metrics = await metricsText(gateway);
      assert.match(metrics, `fedgate_gateway_listener_not_serving{listener="${listener}"} 1\n`);
      assert.match(metrics, "fedgate_gateway_ready 0\n");
      assert.ok(lines.some((l) => l.msg === "listener cannot bind; not serving until a later listener push binds it" && l.listener === listener));
      const lost = lines.find((l) => l.msg === "not ready");
      assert.equal(lost?.reasons, [`listener ${listener}: EADDRINUSE on 127.0.0.1:${taken}`]);
      assert.is(await exchange(t.importPort("a")), "a-1", "the listeners that bound keep serving");
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
    // The port is free, but nothing binds it until the control plane pushes listeners again (as Envoy, the gateway
    // does not retry a NACKed listener by itself). Any listener change does: here the export's consumers.
    assert.is((await readiness(gateway)).status, 503);
    t.consumers = ["a", "b"];
    t.push("a");
    await waitFor("/ready 200", async () => (await readiness(gateway)).status === 200);
    assert.is((await readiness(gateway)).body, "ready\n");
    assert.is(gateway.listenerAddresses()[listener]?.port, taken, "bound on the port it asked for");
    const metrics = await metricsText(gateway);
    assert.match(metrics, `fedgate_gateway_listener_not_serving{listener="${listener}"} 0\n`);
    assert.match(metrics, "fedgate_gateway_ready 1\n");
    const readyLines = lines.filter((l) => l.msg === "ready").length;
    assert.is(readyLines, 2, "ready at start, and again once the listener bound");
    assert.is(t.get("a").xds.status().nodes.find((n) => n.node?.id === "gw-a")?.types.listener?.lastNack?.message.includes(listener), true, "the earlier NACK named it");
  });

  ready(`${xdsProtocol}: the control plane restarting after the port was freed binds the listener the gateway could not (the reconnect re-sends what was NACKed)`, async (ctx) => {
    const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, xdsProtocol }));
    const sim = t.get("a");
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", () => resolve()));
    const taken = (squatter.address() as AddressInfo).port;
    t.extraServices = importedOn(taken);
    t.push("a");
    await waitFor("/ready 503", async () => (await readiness(sim.gateway)).body.includes(`listener fedgate-import-${taken}: EADDRINUSE`));
    await new Promise<void>((resolve) => squatter.close(() => resolve()));
    const port = sim.xds.port;
    await sim.xds.close();
    await waitFor("stream down", () => t.metric("a", "fedgate_gateway_xds_connected") === 0);
    sim.xds = await XdsServer.start({ port });
    t.push("a");
    await waitFor("reconnected", () => t.metric("a", "fedgate_gateway_xds_connected") === 1);
    await waitFor("/ready 200", async () => (await readiness(sim.gateway)).status === 200);
    assert.is(sim.gateway.listenerAddresses()[`fedgate-import-${taken}`]?.port, taken);
    assert.is(await exchange(t.importPort("a")), "a-1");
  });
}

ready("before the first config /ready is 503 saying what has not arrived; after it 200; draining 503 again", async () => {
  // The control plane is not up yet: the gateway starts and retries, with nothing applied.
  const reserved = await XdsServer.start({});
  const port = reserved.port;
  const bootstrap = gatewayBootstrap("a", reserved);
  await reserved.close();
  const backend = await EchoBackend.start("a-1");
  const gateway = await Gateway.start({ bootstrap, logger: createLogger({ write: () => {} }), registry });
  let xds: XdsServer | undefined;
  try {
    const before = await readiness(gateway);
    assert.is(before.status, 503);
    assert.equal(before.body.split("\n"), ["not ready", "no cluster config (CDS) applied yet", "no listener config (LDS) applied yet", ""]);
    assert.match(await metricsText(gateway), "fedgate_gateway_ready 0\n");
    xds = await XdsServer.start({ port });
    xds.setSnapshot(topologySnapshot({ self: "a", pki, exporters: ["a"], exportPorts: new Map(), backends: [backend], leaf: await gatewayLeaf(pki, "a") }));
    xds.flush();
    await waitFor("/ready 200", async () => (await readiness(gateway)).status === 200);
    assert.match(await metricsText(gateway), "fedgate_gateway_ready 1\n");
    await gateway.drain();
    assert.equal(await readiness(gateway), { status: 503, body: "not ready\ndraining\n" });
    assert.match(await metricsText(gateway), "fedgate_gateway_ready 0\n");
  } finally {
    await gateway.close();
    await xds?.close();
    await backend.kill();
  }
});

ready.run();
