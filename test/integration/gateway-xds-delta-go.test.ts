import { spawn, type ChildProcess } from "node:child_process";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { TYPE_URL, XdsServer, type FederationSnapshotInput, type ResourceKind } from "../../gateway/index.ts";
import { binaryPath } from "../env/binaries.ts";
import { echoSnapshot } from "../support/xds-harness.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";

/**
 * The independent proof of the delta encoding: a Go client built on
 * go-control-plane's generated protos (test/env/xds-delta-client) speaks
 * DeltaAggregatedResources to our server, decodes every resource down to
 * its nested Any messages, ACKs (or NACKs what it cannot decode), and prints
 * what it decoded.
 */

const pki = await createClusterSetPki(["a", "b"]);
const leaf = await pki.identity("a").intermediate.issueLeaf({});
const TLS = { trustDomain: pki.trustDomain, gatewayCertChainPem: leaf.chainPem, gatewayKeyPem: leaf.privateKeyPem ?? "", trustBundlePems: pki.bundle.caPems() };
const ECHO_CLA = "outbound|50051||echo.demo.svc.clusterset.local";
const SVC0_CLUSTER = "outbound|50051||svc-0.demo.svc.clusterset.local";
const GO_CLIENT = await binaryPath("xds-delta-client");

interface GoResponse {
  typeUrl: string;
  systemVersionInfo: string;
  nonce: string;
  resources: { name: string; version: string; resource: Record<string, unknown> }[];
  removedResources: string[];
  error?: string;
}

function snapshot(localPort: number | undefined, extra: number): FederationSnapshotInput {
  const base = echoSnapshot({ localPort, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  const more = Array.from({ length: extra }, (_, i) => ({ ...echo, key: `demo/svc-${i}`, name: `svc-${i}`, exports: echo.exports.map((e) => ({ ...e, name: `svc-${i}` })) }));
  return { ...base, services: [echo, ...more] };
}

/** Runs the Go client; its stdout is one JSON line per DeltaDiscoveryResponse. */
function goClient(server: XdsServer, nodeId: string, types: string[]) {
  const child: ChildProcess = spawn(GO_CLIENT, ["-server", server.address, "-node", nodeId, "-dataplane", "gateway", "-types", types.join(",")], { stdio: ["ignore", "pipe", "pipe"] });
  const responses: GoResponse[] = [];
  let stderr = "";
  let buffer = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      responses.push(JSON.parse(buffer.slice(0, nl)) as GoResponse);
      buffer = buffer.slice(nl + 1);
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return {
    responses,
    of: (kind: ResourceKind) => responses.filter((r) => r.typeUrl === TYPE_URL[kind]),
    async waitFor(what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`Go client: timed out waiting for ${what}; exit ${child.exitCode}; stderr ${stderr.slice(-2000)}; last ${JSON.stringify(responses.at(-1))?.slice(0, 2000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop(): Promise<void> {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

interface Ctx {
  server?: XdsServer;
  stops: (() => Promise<void>)[];
}

const go = suite<Ctx>("an independent Go delta client (go-control-plane) against the ADS server", { stops: [] });

go.after.each(async (ctx) => {
  for (const stop of ctx.stops) await stop();
  ctx.stops = [];
  await ctx.server?.close();
});

function settled(server: XdsServer, nodeId: string): boolean {
  const node = server.status().nodes.find((n) => n.node?.id === nodeId);
  return node !== undefined && Object.keys(node.types).length === 3 && Object.values(node.types).every((t) => t.sentNonce !== undefined && !t.pending);
}

go("decodes every resource with go-control-plane's protos, versions match our hashes, and ACKs", async (ctx) => {
  const server = (ctx.server = await XdsServer.start({}));
  server.setSnapshot(snapshot(9001, 2));
  server.flush();
  const client = goClient(server, "go-1", [TYPE_URL.cluster, TYPE_URL.listener, `${TYPE_URL.endpoint}=${ECHO_CLA};${SVC0_CLUSTER}`]);
  ctx.stops.push(() => client.stop());
  await client.waitFor("CDS, LDS and EDS", () => ["cluster", "listener", "endpoint"].every((k) => client.of(k as ResourceKind).length > 0));
  await client.waitFor("the server to record every ACK", () => settled(server, "go-1"));
  assert.equal(client.responses.filter((r) => r.error), [], "the Go client decoded everything");
  const served = server.resources("gateway");
  for (const kind of ["cluster", "listener"] as const) {
    const got = Object.fromEntries(client.of(kind).flatMap((r) => r.resources.map((x) => [x.name, x.version])));
    assert.equal(got, Object.fromEntries([...(served?.[kind] ?? [])].map(([name, r]) => [name, r.hash])), `${kind}: every resource, versioned by our hash`);
  }
  const clusters = client.of("cluster").flatMap((r) => r.resources);
  for (const c of clusters) assert.is(c.resource.name, c.name, "the decoded Cluster names itself as the Resource does");
  const echoCluster = clusters.find((c) => c.name === ECHO_CLA)?.resource;
  assert.is(echoCluster?.["@type"], TYPE_URL.cluster);
  assert.is(echoCluster?.type, "EDS");
  const cla = client.of("endpoint").flatMap((r) => r.resources).find((r) => r.name === ECHO_CLA)?.resource as { cluster_name: string; endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { port_value: number } } } }[] }[] };
  assert.is(cla.cluster_name, ECHO_CLA);
  const ports = cla.endpoints.flatMap((e) => e.lb_endpoints).map((e) => e.endpoint.address.socket_address.port_value);
  assert.ok(ports.includes(9001), `local endpoint decoded: ${JSON.stringify(ports)}`);
  // The export listener's filter chains hold TLS and TCP proxy configs inside Any: decoded by Go too.
  const listeners = client.of("listener").flatMap((r) => r.resources);
  assert.ok(listeners.length > 0);
  assert.ok(JSON.stringify(listeners).includes("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"), "nested Any messages decoded");
  for (const t of Object.values(server.status().nodes[0]?.types ?? {})) assert.is(t.nacks, 0);
});

go("receives only the changed resource, and removals by name", async (ctx) => {
  const server = (ctx.server = await XdsServer.start({}));
  server.setSnapshot(snapshot(9001, 2));
  server.flush();
  const client = goClient(server, "go-2", [TYPE_URL.cluster, TYPE_URL.listener, `${TYPE_URL.endpoint}=${ECHO_CLA};${SVC0_CLUSTER}`]);
  ctx.stops.push(() => client.stop());
  await client.waitFor("the initial config ACKed", () => settled(server, "go-2"));
  const seen = client.of("endpoint").length;
  server.setSnapshot(snapshot(undefined, 2)); // echo's local endpoints withdrawn
  server.flush();
  await client.waitFor("the EDS update", () => client.of("endpoint").length > seen);
  assert.equal(client.of("endpoint").at(-1)?.resources.map((r) => r.name), [ECHO_CLA]);
  await client.waitFor("its ACK", () => settled(server, "go-2"));
  const clustersSeen = client.of("cluster").length;
  server.setSnapshot(snapshot(undefined, 0)); // svc-0 and svc-1 no longer exported
  server.flush();
  await client.waitFor("the CDS removal", () => client.of("cluster").length > clustersSeen);
  const removed = client.of("cluster").at(-1)?.removedResources ?? [];
  assert.ok(removed.includes(SVC0_CLUSTER), `removed: ${JSON.stringify(removed)}`);
  assert.ok(!removed.includes(ECHO_CLA));
  await client.waitFor("the EDS removal of the subscribed svc-0", () => client.of("endpoint").some((r) => r.removedResources.includes(SVC0_CLUSTER)));
  await client.waitFor("every ACK", () => settled(server, "go-2"));
  for (const t of Object.values(server.status().nodes[0]?.types ?? {})) assert.is(t.nacks, 0);
});

go.run();
