import { suite } from "uvu";
import * as assert from "uvu/assert";
import { XdsServer, type FederationSnapshotInput, type ResourceKind } from "../../gateway/index.ts";
import { AdsTestClient, DeltaAdsTestClient } from "../support/xds-ads-client.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { echoSnapshot } from "../support/xds-harness.ts";

const pki = await createClusterSetPki(["a", "b"]);
const leaf = await pki.identity("a").intermediate.issueLeaf({});
const TLS = { trustDomain: pki.trustDomain, gatewayCertChainPem: leaf.chainPem, gatewayKeyPem: leaf.privateKeyPem ?? "", trustBundlePems: pki.bundle.caPems() };
const ECHO_CLA = "outbound|50051||echo.demo.svc.clusterset.local";
const OTHER_CLA = "outbound|50051||other.demo.svc.clusterset.local";

type Service = FederationSnapshotInput["services"][number];

function renamed(service: Service, name: string): Service {
  return { ...service, key: `demo/${name}`, name, exports: service.exports.map((e) => ({ ...e, name })) };
}

/** echo, plus `extra` more services shaped like it (svc-0, svc-1, ...). */
function snapshot(localPort: number | undefined, extra = 0): FederationSnapshotInput {
  const base = echoSnapshot({ localPort, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  return { ...base, services: [echo, renamed(echo, "other"), ...Array.from({ length: extra }, (_, i) => renamed(echo, `svc-${i}`))] };
}

interface Ctx {
  server?: XdsServer;
  clients: (DeltaAdsTestClient | AdsTestClient)[];
}

const delta = suite<Ctx>("incremental (delta) ADS over real gRPC streams", { clients: [] });

delta.after.each(async (ctx) => {
  for (const c of ctx.clients) c.close();
  ctx.clients = [];
  await ctx.server?.close();
});

async function serve(ctx: Ctx, first: FederationSnapshotInput): Promise<XdsServer> {
  const server = (ctx.server = await XdsServer.start({ introspectionPort: 0 }));
  server.setSnapshot(first);
  server.flush();
  return server;
}

function deltaNode(ctx: Ctx, server: XdsServer, nodeId: string, dataplane: "gateway" | "proxyless" = "gateway"): DeltaAdsTestClient {
  const client = new DeltaAdsTestClient({ address: server.address, registry: server.core.registry, nodeId, dataplane });
  ctx.clients.push(client);
  return client;
}

/** Applies a snapshot now; sessions are refreshed synchronously, so the server's push counts are final on return. */
function apply(server: XdsServer, next: FederationSnapshotInput): void {
  server.setSnapshot(next);
  assert.ok(server.flush(), "snapshot accepted");
}

function nodeStatus(server: XdsServer, nodeId: string) {
  return server.status().nodes.filter((n) => n.node?.id === nodeId).at(-1);
}

function settled(server: XdsServer, nodeId: string): boolean {
  const node = nodeStatus(server, nodeId);
  return node !== undefined && Object.values(node.types).every((t) => !t.pending);
}

function hashes(server: XdsServer, kind: ResourceKind): Record<string, string> {
  return Object.fromEntries([...(server.resources("gateway")?.[kind] ?? new Map<string, { hash: string }>())].map(([name, r]) => [name, r.hash]));
}

delta("a wildcard node receives every resource with its content hash as version, then only what changed", async (ctx) => {
  const server = await serve(ctx, snapshot(9001, 3));
  const node = deltaNode(ctx, server, "gw-wild");
  node.subscribe("cluster", []); // the legacy wildcard: an empty first CDS request
  node.subscribe("endpoint", [ECHO_CLA, OTHER_CLA]);
  await node.waitFor(() => node.held.has("cluster") && node.held.get("endpoint")?.size === 2);
  await node.waitFor(() => settled(server, "gw-wild"));
  assert.equal(node.versions("cluster"), hashes(server, "cluster"), "every cluster, versioned by its hash");
  const cla = node.held.get("endpoint")?.get(ECHO_CLA)?.resource;
  assert.is(cla?.cluster_name, ECHO_CLA);

  const clustersBefore = hashes(server, "cluster");
  const endpointResponses = node.responsesOf("endpoint").length;
  const clusterResponses = node.responsesOf("cluster").length;
  apply(server, snapshot(undefined, 3)); // echo's local endpoints withdrawn
  await node.waitFor(() => node.responsesOf("endpoint").length > endpointResponses);
  await node.waitFor(() => settled(server, "gw-wild"));
  const pushed = node.responsesOf("endpoint").at(-1);
  assert.equal(pushed?.resources.map((r) => r.name), [ECHO_CLA], "only the changed ClusterLoadAssignment is sent");
  assert.equal(pushed?.removedResources, []);
  const clustersChanged = Object.keys(clustersBefore).filter((n) => hashes(server, "cluster")[n] !== clustersBefore[n]);
  const clusterPushes = node.responsesOf("cluster").slice(clusterResponses);
  assert.equal(clusterPushes.flatMap((r) => r.resources.map((c) => c.name)).sort(), clustersChanged.sort(), "clusters: exactly the changed ones, if any");
  assert.equal(node.versions("endpoint")[ECHO_CLA], server.resources("gateway")?.endpoint.get(ECHO_CLA)?.hash);
});

delta("an explicit '*' is a wildcard for any type; removed resources are named in removed_resources", async (ctx) => {
  const server = await serve(ctx, snapshot(9001, 2));
  const node = deltaNode(ctx, server, "gw-star");
  node.subscribe("endpoint", ["*"]);
  await node.waitFor(() => node.held.get("endpoint")?.size === Object.keys(hashes(server, "endpoint")).length);
  assert.ok(node.held.get("endpoint")?.has("outbound|50051||svc-1.demo.svc.clusterset.local"));
  const responses = node.responsesOf("endpoint").length;
  apply(server, snapshot(9001, 1)); // svc-1 is no longer exported
  await node.waitFor(() => node.responsesOf("endpoint").length > responses);
  const last = node.responsesOf("endpoint").at(-1);
  assert.equal(last?.resources, [], "nothing else changed");
  assert.ok(last?.removedResources.includes("outbound|50051||svc-1.demo.svc.clusterset.local"), `removed: ${JSON.stringify(last?.removedResources)}`);
  assert.equal(node.versions("endpoint"), hashes(server, "endpoint"), "the node holds exactly what is served");
});

delta("a node is told once that a name it subscribed to does not exist, and gets it when it appears", async (ctx) => {
  const server = await serve(ctx, snapshot(9001, 0));
  const node = deltaNode(ctx, server, "p-missing", "proxyless");
  const later = "outbound|50051||svc-0.demo.svc.clusterset.local";
  node.subscribe("endpoint", [ECHO_CLA, later]);
  await node.waitFor(() => node.responsesOf("endpoint").length === 1);
  const first = node.responsesOf("endpoint")[0];
  assert.equal(first?.resources.map((r) => r.name), [ECHO_CLA]);
  assert.equal(first?.removedResources, [later]);
  await node.waitFor(() => settled(server, "p-missing"));
  apply(server, snapshot(undefined, 0)); // a change to echo only: `later` is not reported again
  await node.waitFor(() => node.responsesOf("endpoint").length === 2);
  assert.equal(node.responsesOf("endpoint")[1]?.removedResources, []);
  apply(server, snapshot(undefined, 1));
  await node.waitFor(() => node.held.get("endpoint")?.has(later) === true);
});

delta("nodes whose subscriptions a change does not touch get nothing; an unsubscribed name is not pushed", async (ctx) => {
  const server = await serve(ctx, snapshot(9001));
  const echo = deltaNode(ctx, server, "p-echo", "proxyless");
  const other = deltaNode(ctx, server, "p-other", "proxyless");
  const both = deltaNode(ctx, server, "p-both", "proxyless");
  echo.subscribe("endpoint", [ECHO_CLA]);
  other.subscribe("endpoint", [OTHER_CLA]);
  both.subscribe("endpoint", [ECHO_CLA, OTHER_CLA]);
  for (const [c, id] of [[echo, "p-echo"], [other, "p-other"], [both, "p-both"]] as const) await c.waitFor(() => c.held.has("endpoint") && settled(server, id));
  both.unsubscribe("endpoint", [ECHO_CLA]);
  await both.waitFor(() => nodeStatus(server, "p-both")?.types.endpoint?.subscribed.length === 1);
  const pushes = (id: string) => nodeStatus(server, id)?.types.endpoint?.pushes ?? 0;
  const before = { echo: pushes("p-echo"), other: pushes("p-other"), both: pushes("p-both") };
  apply(server, snapshot(undefined)); // only echo's ClusterLoadAssignment changes
  assert.is(pushes("p-echo"), before.echo + 1, "the concerned node is pushed");
  assert.is(pushes("p-other"), before.other, "the node watching only `other` got nothing");
  assert.is(pushes("p-both"), before.both, "the node that unsubscribed from echo got nothing");
  await echo.waitFor(() => settled(server, "p-echo"));
  assert.is(echo.responsesOf("endpoint").length, 2);
  assert.is(other.responsesOf("endpoint").length, 1);
});

delta("a reconnecting node with initial_resource_versions is sent only what it lacks or holds stale", async (ctx) => {
  const server = await serve(ctx, snapshot(9001, 2));
  const first = deltaNode(ctx, server, "gw-re");
  first.subscribe("cluster", ["*"]);
  await first.waitFor(() => first.held.get("cluster")?.size === Object.keys(hashes(server, "cluster")).length);
  const held = first.versions("cluster");
  first.close();
  const stale = Object.keys(held)[0]!;
  const again = deltaNode(ctx, server, "gw-re");
  again.subscribe("cluster", ["*"], { ...held, [stale]: "an-old-version" });
  await again.waitFor(() => again.responsesOf("cluster").length === 1);
  assert.equal(again.responsesOf("cluster")[0]?.resources.map((r) => r.name), [stale], "only the stale cluster is resent");
  await again.waitFor(() => settled(server, "gw-re"));
  const dump = server.configDump("gw-re")?.configs.cluster;
  assert.equal(dump?.resources.map((r) => r.name).sort(), Object.keys(held).sort(), "config_dump counts what the node already held");

  const third = deltaNode(ctx, server, "gw-re3");
  third.subscribe("cluster", ["*"], held);
  await third.waitFor(() => nodeStatus(server, "gw-re3")?.types.cluster !== undefined);
  assert.is(nodeStatus(server, "gw-re3")?.types.cluster?.pushes, 0, "a node that holds everything is sent nothing");
  apply(server, snapshot(9001, 3));
  await third.waitFor(() => third.responsesOf("cluster").length === 1);
  assert.equal(third.responsesOf("cluster")[0]?.resources.map((r) => r.name).sort(), Object.keys(hashes(server, "cluster")).filter((n) => !(n in held)).sort(), "then only the new clusters");
});

delta("a NACK keeps the last accepted config (status, config_dump), and the rejected content is not re-sent", async (ctx) => {
  const server = await serve(ctx, snapshot(9001));
  const node = deltaNode(ctx, server, "gw-nack");
  node.subscribe("endpoint", [ECHO_CLA]);
  await node.waitFor(() => node.held.has("endpoint") && settled(server, "gw-nack"));
  const accepted = nodeStatus(server, "gw-nack")?.types.endpoint?.ackedVersion;
  const acceptedCla = server.configDump("gw-nack")?.configs.endpoint?.resources[0]?.resource;
  node.nack = () => "simulated rejection";
  apply(server, snapshot(undefined));
  await node.waitFor(() => nodeStatus(server, "gw-nack")?.types.endpoint?.nacks === 1);
  const status = nodeStatus(server, "gw-nack");
  assert.is(status?.protocol, "delta");
  assert.is(status?.types.endpoint?.ackedVersion, accepted, "the accepted version is still the running one");
  assert.is(status?.types.endpoint?.lastNack?.message, "simulated rejection");
  const dump = server.configDump("gw-nack")?.configs.endpoint;
  assert.equal(dump?.resources[0]?.resource, acceptedCla, "config_dump shows the last accepted CLA");
  assert.ok(dump?.lastNack);
  const http = (await (await fetch(`http://${server.introspection?.host}:${server.introspection?.port}/status`)).json()) as { nodes: { protocol: string; types: { endpoint: { nacks: number } } }[] };
  assert.is(http.nodes[0]?.types.endpoint.nacks, 1);
  assert.is(http.nodes[0]?.protocol, "delta");
  const pushes = status?.types.endpoint?.pushes;
  apply(server, snapshot(undefined, 1)); // echo's CLA is what was rejected: unchanged, so not re-sent
  assert.is(nodeStatus(server, "gw-nack")?.types.endpoint?.pushes, pushes);
  node.nack = undefined;
  apply(server, snapshot(9002, 1));
  await node.waitFor(() => nodeStatus(server, "gw-nack")?.types.endpoint?.ackedVersion !== accepted && settled(server, "gw-nack"));
  const port = (server.configDump("gw-nack")?.configs.endpoint?.resources[0]?.resource as { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { port_value: number } } } }[] }[] }).endpoints
    .flatMap((e) => e.lb_endpoints)
    .map((e) => e.endpoint.address.socket_address.port_value);
  assert.ok(port.includes(9002), `the new config runs: ${JSON.stringify(port)}`);
});

delta("state of the world and delta nodes are served the same resources from one snapshot", async (ctx) => {
  const server = await serve(ctx, snapshot(9001, 2));
  const sotw = new AdsTestClient({ address: server.address, registry: server.core.registry, nodeId: "gw-sotw", dataplane: "gateway" });
  ctx.clients.push(sotw);
  const inc = deltaNode(ctx, server, "gw-delta");
  sotw.subscribe("cluster", []);
  sotw.subscribe("listener", []);
  inc.subscribe("cluster", []);
  inc.subscribe("listener", []);
  await sotw.waitFor(() => sotw.received.has("cluster") && sotw.received.has("listener"));
  await inc.waitFor(() => inc.held.has("cluster") && inc.held.has("listener"));
  for (const kind of ["cluster", "listener"] as const) {
    const fromDelta = Object.fromEntries([...(inc.held.get(kind) ?? [])].map(([name, r]) => [name, r.resource]));
    assert.equal(fromDelta, Object.fromEntries(sotw.received.get(kind)?.resources ?? []), `${kind}: same decoded resources`);
  }
  assert.equal(server.status().nodes.map((n) => n.protocol).sort(), ["delta", "sotw"]);
});

delta.run();
