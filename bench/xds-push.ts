/**
 * xDS push latency: time from a change in the merged view (a cluster's local
 * endpoints withdrawn or restored) to the new ClusterLoadAssignment ACKed by
 * every concerned node, with N = 1, 10, 100 raw ADS clients in this process.
 * Half the nodes watch the changed service and half another one: the second
 * half must receive no push at all. Default debounce (10 ms quiet) included.
 * Run: node --import tsx bench/xds-push.ts
 */
import { XdsServer, type FederationSnapshotInput } from "../gateway/index.ts";
import { AdsTestClient } from "../test/support/xds-ads-client.ts";
import { echoSnapshot } from "../test/support/xds-harness.ts";

const ROUNDS = 30;
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TLS = { trustDomain: "fedgate.test", gatewayCertChainPem: PEM, gatewayKeyPem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", trustBundlePems: [PEM] };
const ECHO = "outbound|50051||echo.demo.svc.clusterset.local";
const OTHER = "outbound|50051||other.demo.svc.clusterset.local";

function snapshot(localUp: boolean): FederationSnapshotInput {
  const base = echoSnapshot({ localPort: localUp ? 9000 : undefined, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  return { ...base, services: [echo, { ...echo, key: "demo/other", name: "other", exports: echo.exports.map((e) => ({ ...e, name: "other" })) }] };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function run(n: number) {
  const server = await XdsServer.start({});
  server.setSnapshot(snapshot(true));
  server.flush();
  // Warm up one connection so lazily built gRPC state is not charged to the nodes.
  const warm = new AdsTestClient({ address: server.address, registry: server.core.registry, nodeId: "warm-up", dataplane: "proxyless", decodeResources: false });
  warm.subscribe("endpoint", [ECHO]);
  await warm.waitFor(() => warm.received.has("endpoint"));
  await new Promise((r) => setTimeout(r, 100));
  global.gc?.();
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const clients: AdsTestClient[] = [warm];
  const concerned = new Set<string>();
  for (let i = 0; i < n; i++) {
    if (i === 0) concerned.add("warm-up");
    const nodeId = `node-${i}`;
    const watchesEcho = i % 2 === 0;
    if (watchesEcho) concerned.add(nodeId);
    const c = new AdsTestClient({ address: server.address, registry: server.core.registry, nodeId, dataplane: "proxyless", decodeResources: false });
    c.subscribe("endpoint", [watchesEcho ? ECHO : OTHER]);
    clients.push(c);
  }
  await Promise.all(clients.map((c) => c.waitFor(() => c.received.has("endpoint"), 30_000)));
  await new Promise((r) => setTimeout(r, 200));
  global.gc?.();
  global.gc?.();
  const heapPerNode = (process.memoryUsage().heapUsed - heapBefore) / n;

  const perNode: number[] = [];
  const allAcked: number[] = [];
  let unconcernedPushes = 0;
  const off = server.onEvent((e) => {
    if (e.type === "push" && !concerned.has(e.nodeId)) unconcernedPushes += 1;
  });
  for (let round = 0; round < ROUNDS; round++) {
    const acked = new Map<string, number>();
    const pushed = new Map<string, string>();
    const t0 = performance.now();
    const done = new Promise<void>((resolve) => {
      const stop = server.onEvent((e) => {
        if (e.type === "push" && e.kind === "endpoint") pushed.set(e.nodeId, e.version);
        if (e.type === "ack" && e.kind === "endpoint" && concerned.has(e.nodeId) && pushed.get(e.nodeId) === e.version) {
          acked.set(e.nodeId, performance.now() - t0);
          if (acked.size === concerned.size) {
            stop();
            resolve();
          }
        }
      });
    });
    server.setSnapshot(snapshot(round % 2 === 1));
    await done;
    perNode.push(...acked.values());
    allAcked.push(Math.max(...acked.values()));
  }
  off();
  for (const c of clients) c.close();
  await server.close();
  return { n, concerned: concerned.size, perNode, allAcked, unconcernedPushes, heapPerNode };
}

const rows: string[] = [];
for (const n of (process.env.XDS_BENCH_N ?? "1,10,100").split(",").map(Number)) {
  const r = await run(n);
  rows.push(
    `| ${r.n} | ${r.concerned} | ${percentile(r.perNode, 50).toFixed(1)} | ${percentile(r.perNode, 99).toFixed(1)} | ${percentile(r.allAcked, 50).toFixed(1)} | ${percentile(r.allAcked, 99).toFixed(1)} | ${r.unconcernedPushes} | ${(r.heapPerNode / 1024).toFixed(1)} |`,
  );
}
console.log(`xDS push → ACK, ${ROUNDS} changes per row, debounce 10 ms included (node ${process.version}, ${process.platform})\n`);
console.log("| nodes | concerned | per-node p50 ms | per-node p99 ms | all-ACKed p50 ms | all-ACKed p99 ms | pushes to unconcerned nodes | heap per node KiB (client+server) |");
console.log("|---|---|---|---|---|---|---|---|");
for (const row of rows) console.log(row);
