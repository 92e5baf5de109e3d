import { suite } from "uvu";
import * as assert from "uvu/assert";
import { XdsServer, type FederationSnapshotInput } from "../../gateway/index.ts";
import { AdsTestClient } from "../support/xds-ads-client.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { echoSnapshot } from "../support/xds-harness.ts";

const pki = await createClusterSetPki(["a", "b"]);
const leaf1 = await pki.identity("a").intermediate.issueLeaf({});
const leaf2 = await pki.identity("a").intermediate.issueLeaf({});
const tlsWith = (leaf: typeof leaf1) => ({ trustDomain: pki.trustDomain, gatewayCertChainPem: leaf.chainPem, gatewayKeyPem: leaf.privateKeyPem ?? "", trustBundlePems: pki.bundle.caPems() });
const CLA = "outbound|50051||echo.demo.svc.clusterset.local";

function snapshot(localPort: number | undefined, leaf = leaf1): FederationSnapshotInput {
  return echoSnapshot({ localPort, remotePort: 7001, tls: tlsWith(leaf) });
}

interface Ctx {
  server?: XdsServer;
  clients: AdsTestClient[];
}

const ads = suite<Ctx>("ADS server with raw clients", { clients: [] });

ads.after.each(async (ctx) => {
  for (const c of ctx.clients) c.close();
  ctx.clients = [];
  await ctx.server?.close();
});

async function gatewayNode(ctx: Ctx, nodeId: string): Promise<AdsTestClient> {
  const server = ctx.server;
  if (!server) throw new Error("no server");
  const client = new AdsTestClient({ address: server.address, registry: server.core.registry, nodeId, dataplane: "gateway" });
  ctx.clients.push(client);
  client.subscribe("cluster", []);
  client.subscribe("listener", []);
  await client.waitFor(() => client.received.has("cluster") && client.received.has("listener"));
  const clusters = [...(client.received.get("cluster")?.resources.keys() ?? [])];
  client.subscribe("endpoint", clusters);
  client.subscribe("route", ["fedgate-import-50051"]);
  client.subscribe("secret", ["fedgate-gateway-cert", "fedgate-trust-bundle"]);
  await client.waitFor(() => client.received.has("endpoint") && client.received.has("route") && client.received.has("secret"));
  return client;
}

ads("config_dump over HTTP equals what the data plane received, private key redacted", async (ctx) => {
  const server = (ctx.server = await XdsServer.start({ introspectionPort: 0 }));
  server.setSnapshot(snapshot(9001));
  server.flush();
  const client = await gatewayNode(ctx, "gw-1");
  await client.waitFor(() => server.status().nodes.every((n) => Object.values(n.types).every((t) => !t.pending)));
  const dump = server.configDump("gw-1");
  assert.ok(dump);
  for (const kind of ["cluster", "endpoint", "listener", "route", "secret"] as const) {
    const received = client.received.get(kind);
    const served = dump.configs[kind];
    assert.is(served?.versionInfo, received?.versionInfo, `${kind} version`);
    assert.equal(Object.fromEntries((served?.resources ?? []).map((r) => [r.name, r.resource])), Object.fromEntries(received?.resources ?? []), `${kind} resources`);
  }
  const http = await fetch(`http://${server.introspection?.host}:${server.introspection?.port}/config_dump?node=gw-1`);
  assert.is(http.status, 200);
  const body = (await http.json()) as { configs: { cluster: { resources: unknown[] }; secret: { resources: { name: string; resource: { tls_certificate?: { private_key: { inline_string: string } } } }[] } } };
  assert.equal(body.configs.cluster.resources, dump.configs.cluster?.resources);
  const cert = body.configs.secret.resources.find((r) => r.name === "fedgate-gateway-cert");
  assert.is(cert?.resource.tls_certificate?.private_key.inline_string, "[redacted]");
  const missing = await fetch(`http://${server.introspection?.host}:${server.introspection?.port}/config_dump?node=nobody`);
  assert.is(missing.status, 404);
});

ads("a NACK keeps the node's last accepted config and is recorded in status", async (ctx) => {
  const server = (ctx.server = await XdsServer.start({ introspectionPort: 0 }));
  server.setSnapshot(snapshot(9001));
  server.flush();
  const client = await gatewayNode(ctx, "gw-nack");
  const acceptedVersion = client.received.get("endpoint")?.versionInfo;
  const acceptedCla = client.received.get("endpoint")?.resources.get(CLA);
  client.nack = (r) => (r.typeUrl.endsWith("ClusterLoadAssignment") ? "simulated rejection" : undefined);
  const before = client.received.get("endpoint")?.responses ?? 0;
  server.setSnapshot(snapshot(undefined));
  server.flush();
  await client.waitFor(() => (client.received.get("endpoint")?.responses ?? 0) > before);
  await client.waitFor(() => server.status().nodes[0]?.types.endpoint?.nacks === 1);
  const status = server.status().nodes[0]?.types.endpoint;
  assert.is(status?.ackedVersion, acceptedVersion, "the accepted version is still the running one");
  assert.is(status?.lastNack?.message, "simulated rejection");
  const dump = server.configDump("gw-nack")?.configs.endpoint;
  assert.equal(dump?.resources.find((r) => r.name === CLA)?.resource, acceptedCla, "config_dump shows the last accepted CLA");
  assert.ok(dump?.lastNack);
  const http = (await (await fetch(`http://${server.introspection?.host}:${server.introspection?.port}/status`)).json()) as { nodes: { types: { endpoint: { nacks: number } } }[] };
  assert.is(http.nodes[0]?.types.endpoint.nacks, 1);
  // The same (rejected) content is not re-sent; a new change is.
  const responses = client.received.get("endpoint")?.responses ?? 0;
  server.setSnapshot(snapshot(undefined));
  server.flush();
  await new Promise((r) => setTimeout(r, 100));
  assert.is(client.received.get("endpoint")?.responses, responses, "unchanged rejected config is not pushed again");
  client.nack = undefined;
  server.setSnapshot(snapshot(9002));
  server.flush();
  await client.waitFor(() => server.status().nodes[0]?.types.endpoint?.ackedVersion !== acceptedVersion);
});

ads("pushes only to nodes whose subscribed resources changed", async (ctx) => {
  const server = (ctx.server = await XdsServer.start({}));
  const base = snapshot(9001);
  const two: FederationSnapshotInput = { ...base, services: [...base.services, { ...base.services[0]!, key: "demo/other", name: "other", exports: base.services[0]!.exports.map((e) => ({ ...e, name: "other" })) }] };
  server.setSnapshot(two);
  server.flush();
  const otherCla = "outbound|50051||other.demo.svc.clusterset.local";
  const echoNode = new AdsTestClient({ address: server.address, registry: server.core.registry, nodeId: "p-echo", dataplane: "proxyless" });
  const otherNode = new AdsTestClient({ address: server.address, registry: server.core.registry, nodeId: "p-other", dataplane: "proxyless" });
  ctx.clients.push(echoNode, otherNode);
  echoNode.subscribe("endpoint", [CLA]);
  otherNode.subscribe("endpoint", [otherCla]);
  await echoNode.waitFor(() => echoNode.received.get("endpoint")?.resources.has(CLA) === true);
  await otherNode.waitFor(() => otherNode.received.get("endpoint")?.resources.has(otherCla) === true);
  const otherBefore = otherNode.responses.length;
  const echoBefore = echoNode.responses.length;
  // Withdraw echo's local endpoints only.
  server.setSnapshot({ ...two, localEndpoints: new Map() });
  server.flush();
  await echoNode.waitFor(() => echoNode.responses.length > echoBefore);
  await new Promise((r) => setTimeout(r, 100));
  assert.is(otherNode.responses.length, otherBefore, "the node watching only `other` got nothing");
  assert.is(echoNode.received.get("endpoint")?.resources.size, 1);
});

ads("rotates the gateway certificate over SDS without a restart", async (ctx) => {
  const server = (ctx.server = await XdsServer.start({}));
  server.setSnapshot(snapshot(9001, leaf1));
  server.flush();
  const client = await gatewayNode(ctx, "gw-rotate");
  const chain = (c: AdsTestClient) => (c.received.get("secret")?.resources.get("fedgate-gateway-cert")?.tls_certificate as { certificate_chain: { inline_string: string } }).certificate_chain.inline_string;
  assert.is(chain(client), leaf1.chainPem);
  const clusterResponses = client.received.get("cluster")?.responses;
  server.setSnapshot(snapshot(9001, leaf2));
  server.flush();
  await client.waitFor(() => chain(client) === leaf2.chainPem);
  assert.is(client.received.get("cluster")?.responses, clusterResponses, "clusters were not re-pushed for a certificate rotation");
});

ads.run();
