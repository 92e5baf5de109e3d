/**
 * The simulated nodes of bench/xds-push.ts, in a child process so that the
 * server's heap, RSS and CPU are measured without them. Each node is a raw
 * ADS client on its own TCP connection that ACKs every response without
 * decoding its resources (the cheapest honest client). Driven over IPC.
 */
import { z } from "zod";
import { ProtoRegistry } from "../gateway/index.ts";
import { AdsTestClient } from "../test/support/xds-ads-client.ts";

const command = z.discriminatedUnion("cmd", [
  z.object({
    cmd: z.literal("connect"),
    address: z.string(),
    nodes: z.array(z.object({ id: z.string(), dataplane: z.enum(["gateway", "proxyless"]), kind: z.enum(["cluster", "endpoint"]), names: z.array(z.string()) })),
  }),
  z.object({ cmd: z.literal("cpu") }),
  z.object({ cmd: z.literal("close") }),
]);

const registry = ProtoRegistry.load();
const clients: AdsTestClient[] = [];

function reply(message: object): void {
  process.send?.(message);
}

process.on("message", (raw: unknown) => {
  const m = command.parse(raw);
  if (m.cmd === "connect") {
    const fresh = m.nodes.map((n) => {
      const c = new AdsTestClient({ address: m.address, registry, nodeId: n.id, dataplane: n.dataplane, decodeResources: false, ownConnection: true });
      c.subscribe(n.kind, n.names);
      return { c, kind: n.kind };
    });
    clients.push(...fresh.map((f) => f.c));
    void Promise.all(fresh.map(({ c, kind }) => c.waitFor(() => c.received.has(kind), 60_000))).then(
      () => reply({ type: "connected", count: clients.length }),
      (error: unknown) => reply({ type: "failed", error: String(error) }),
    );
  } else if (m.cmd === "cpu") {
    reply({ type: "cpu", usage: process.cpuUsage() });
  } else {
    for (const c of clients) c.close();
    process.disconnect();
  }
});
reply({ type: "started" });
