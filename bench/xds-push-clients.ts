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
  z.object({ cmd: z.literal("connect"), address: z.string(), nodes: z.array(z.object({ id: z.string(), watch: z.string() })) }),
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
      const c = new AdsTestClient({ address: m.address, registry, nodeId: n.id, dataplane: "proxyless", decodeResources: false, ownConnection: true });
      c.subscribe("endpoint", [n.watch]);
      return c;
    });
    clients.push(...fresh);
    void Promise.all(fresh.map((c) => c.waitFor(() => c.received.has("endpoint"), 60_000))).then(
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
