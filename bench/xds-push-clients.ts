/**
 * The simulated nodes of bench/xds-push.ts, in a child process so that the
 * server's heap, RSS and CPU are measured without them. Each node is a raw
 * ADS client (state of the world or delta) on its own TCP connection that
 * ACKs every response without decoding its resources (the cheapest honest
 * client). Driven over IPC.
 */
import { z } from "zod";
import { ADS_RECEIVE_WINDOW_BYTES, ProtoRegistry, type ResourceKind } from "../gateway/index.ts";
import { AdsTestClient, DeltaAdsTestClient } from "../test/support/xds-ads-client.ts";

const KINDS = z.enum(["cluster", "endpoint", "listener", "route", "secret"]);
const command = z.discriminatedUnion("cmd", [
  z.object({
    cmd: z.literal("connect"),
    address: z.string(),
    nodes: z.array(
      z.object({
        id: z.string(),
        protocol: z.enum(["sotw", "delta"]),
        dataplane: z.enum(["gateway", "proxyless"]),
        subscriptions: z.array(z.object({ kind: KINDS, names: z.array(z.string()) })),
      }),
    ),
  }),
  z.object({ cmd: z.literal("cpu") }),
  z.object({ cmd: z.literal("close") }),
]);

/**
 * The nodes' HTTP/2 receive window; default: fedgate's gateway ADS client's; 0: grpc-js's 64 KiB
 * (a proxyless grpc-js client); 268435456 models Envoy's default (BENCHMARKS.md: the 64 KiB window
 * is worth ~35 ms of p99 with the ~100 KB export listener).
 */
const WINDOW_BYTES = Number(process.env.XDS_BENCH_WINDOW_BYTES ?? ADS_RECEIVE_WINDOW_BYTES);
const registry = ProtoRegistry.load();
const clients: (AdsTestClient | DeltaAdsTestClient)[] = [];

function reply(message: object): void {
  process.send?.(message);
}

function answered(client: AdsTestClient | DeltaAdsTestClient, kind: ResourceKind): boolean {
  return client instanceof AdsTestClient ? client.received.has(kind) : client.held.has(kind);
}

process.on("message", (raw: unknown) => {
  const m = command.parse(raw);
  if (m.cmd === "connect") {
    const fresh = m.nodes.map((n) => {
      const options = { address: m.address, registry, nodeId: n.id, dataplane: n.dataplane, decodeResources: false, ownConnection: true, keepResponses: false, flowControlWindowBytes: WINDOW_BYTES };
      const c = n.protocol === "sotw" ? new AdsTestClient(options) : new DeltaAdsTestClient(options);
      for (const s of n.subscriptions) c.subscribe(s.kind, s.names);
      return { c, kinds: n.subscriptions.map((s) => s.kind) };
    });
    clients.push(...fresh.map((f) => f.c));
    void Promise.all(fresh.map(({ c, kinds }) => c.waitFor(() => kinds.every((k) => answered(c, k)), 120_000))).then(
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
