import { createServer, type AddressInfo, type Server } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry, type FederationSnapshotInput, type XdsServer } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { exchange, Topology, waitFor } from "../support/gateway-harness.ts";

const pki = await createClusterSetPki(["a", "b"]);
const registry = ProtoRegistry.load();

interface Ctx {
  topology?: Topology;
  squatter?: Server;
}

/** A second exported service `name` on `port` (an L4 import listener `fedgate-import-<port>`). */
function service(name: string, port: number): FederationSnapshotInput["services"][number] {
  return {
    key: `demo/${name}`,
    namespace: "demo",
    name,
    exports: [
      {
        cluster: "a",
        namespace: "demo",
        name,
        ports: [{ name: "tcp", protocol: "TCP", port }],
        type: "ClusterSetIP",
        sessionAffinity: "None",
        readyEndpoints: [{ zone: "z-a", ready: 1 }],
        gateway: { host: "127.0.0.1", port: 15443 },
      },
    ],
  };
}

async function listening(): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return server;
}

async function freePort(): Promise<number> {
  const server = await listening();
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function nodeStatus(xds: XdsServer) {
  return xds.status().nodes.filter((n) => n.node?.id === "gw-a").at(-1);
}

for (const protocol of ["delta", "sotw"] as const) {
  const s = suite<Ctx>(`gateway ADS client, bootstrap xds_protocol "${protocol}"`, {});

  s.after.each(async (ctx) => {
    await ctx.topology?.close();
    ctx.topology = undefined;
    ctx.squatter?.close();
    ctx.squatter = undefined;
  });

  s("initial sync, then an export added and removed: its listener appears and disappears", async (ctx) => {
    const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, xdsProtocol: protocol }));
    assert.is(await exchange(t.importPort("a")), "a-1");
    assert.ok(t.get("a").gateway.ready());
    assert.is(nodeStatus(t.get("a").xds)?.protocol, protocol);
    const port = await freePort();
    t.extraServices = [service("web", port)];
    t.push("a");
    await waitFor("the added export's listener", () => t.get("a").gateway.listenerAddresses()[`fedgate-import-${port}`] !== undefined);
    t.extraServices = [];
    t.push("a");
    await waitFor("the removed export's listener to go", () => t.get("a").gateway.listenerAddresses()[`fedgate-import-${port}`] === undefined);
    assert.is(await exchange(t.importPort("a")), "a-1", "the first export still serves");
    assert.is(t.metric("a", "fedgate_gateway_xds_updates_total", { type: "listener", result: "nack" }), 0);
  });

  s("a NACKed listener response keeps the last config; the rejected listener is offered again with the next one, beside the new listener", async (ctx) => {
    const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, xdsProtocol: protocol }));
    ctx.squatter = await listening();
    const taken = (ctx.squatter.address() as AddressInfo).port;
    t.extraServices = [service("taken", taken)];
    t.push("a");
    await waitFor("the listener NACK", () => t.metric("a", "fedgate_gateway_xds_updates_total", { type: "listener", result: "nack" }) >= 1);
    assert.match(nodeStatus(t.get("a").xds)?.types.listener?.lastNack?.message ?? "", new RegExp(`fedgate-import-${taken}.*cannot bind`));
    assert.is(await exchange(t.importPort("a")), "a-1", "served from the last accepted config");
    assert.is(t.get("a").gateway.listenerAddresses()[`fedgate-import-${taken}`], undefined);

    // The port stays taken and the rejected export stays in the snapshot while another is added.
    const acks = t.metric("a", "fedgate_gateway_xds_updates_total", { type: "listener", result: "ack" });
    const nacks = t.metric("a", "fedgate_gateway_xds_updates_total", { type: "listener", result: "nack" });
    const port = await freePort();
    t.extraServices = [service("taken", taken), service("web", port)];
    t.push("a");
    // The rejected listener comes again with the next listener response (delta holds a NACKed response too: its
    // good part runs), so it is NACKed again while the new export's listener binds (listeners apply best-effort).
    await waitFor("the set NACKed again", () => t.metric("a", "fedgate_gateway_xds_updates_total", { type: "listener", result: "nack" }) > nacks);
    assert.match(nodeStatus(t.get("a").xds)?.types.listener?.lastNack?.message ?? "", new RegExp(`fedgate-import-${taken}.*cannot bind`));
    await waitFor("the new export's listener", () => t.get("a").gateway.listenerAddresses()[`fedgate-import-${port}`] !== undefined);
    assert.is(t.metric("a", "fedgate_gateway_xds_updates_total", { type: "listener", result: "ack" }), acks, "nothing ACKed while a listener cannot bind");
    assert.is(t.get("a").gateway.listenerAddresses()[`fedgate-import-${taken}`], undefined);
    assert.is(await exchange(t.importPort("a")), "a-1");
  });

  s("the control plane restarting: the gateway reconnects, resubscribes and converges", async (ctx) => {
    const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, xdsProtocol: protocol }));
    const sim = t.get("a");
    const replaced = await t.restartControlPlane("a", "a-new", async () => {
      assert.is(await exchange(t.importPort("a")), "a-1", "served from the last accepted config");
    });
    await waitFor("new endpoints applied after the reconnect", async () => (await exchange(t.importPort("a"))) === "a-new");
    await waitFor("every type settled", () => {
      const types = nodeStatus(sim.xds)?.types ?? {};
      return ["cluster", "listener", "endpoint"].every((k) => k in types) && Object.values(types).every((s) => !s.pending);
    });
    const types = nodeStatus(sim.xds)?.types;
    if (protocol === "delta") {
      // initial_resource_versions told the new server what the gateway held: unchanged listeners are not re-sent.
      assert.is(types?.listener?.pushes, 0, "listeners held are not re-sent");
      assert.ok((types?.endpoint?.pushes ?? 0) >= 1, "the changed endpoints are");
    } else {
      assert.ok((types?.listener?.pushes ?? 0) >= 1, "state of the world re-sends every listener");
    }
    assert.ok(sim.gateway.ready());
    for (const b of replaced) await b.kill();
  });

  s.run();
}
