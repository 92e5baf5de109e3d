import { suite } from "uvu";
import * as assert from "uvu/assert";
import { silentLogger } from "../../common/index.ts";
import * as k8s from "@kubernetes/client-node";
import { DataplaneFeed, FederationController, derivedServiceName } from "../../federation/index.ts";
import { Gateway, ProtoRegistry, XdsServer, parseBootstrap, xdsNames } from "../../gateway/index.ts";
import { freePort, privateHost } from "../env/index.ts";
import { ControllerHarness, NAMESPACE, eventually } from "../support/controller-harness.ts";
import { EchoBackend, exchange, gatewayLeaf } from "../support/gateway-harness.ts";

interface Ctx {
  t: ControllerHarness;
  servers: XdsServer[];
  feeds: DataplaneFeed[];
  gateways: Map<string, Gateway>;
  echo: EchoBackend;
}

const SERVICE_PORT = 9000;
/** Each simulated cluster's gateway gets its own import port range, since all of them share loopback. */
const RANGE_SIZE = 100;

const HOST = privateHost();

const ports = suite<Ctx>("import ports: the derived EndpointSlice's port is where the gateway listens", {} as never);

ports.before(async (ctx) => {
  ctx.t = await ControllerHarness.start({ clusters: 2, leaseTtlMs: 5_000 });
  ctx.servers = [];
  ctx.feeds = [];
  ctx.gateways = new Map();
  const registry = ProtoRegistry.load();
  const base = 20_000 + Math.floor(Math.random() * 90) * RANGE_SIZE;
  let index = 0;
  for (const name of ctx.t.kube.keys()) {
    const exportPort = await freePort();
    const first = base + index++ * (RANGE_SIZE / 2);
    const controller = await ctx.t.startController(name, {
      gateway: { host: HOST, port: exportPort },
      gatewayImportAddress: HOST,
      importPorts: { first, last: first + RANGE_SIZE / 2 - 1 },
    });
    const server = await XdsServer.start({});
    const leaf = await gatewayLeaf(ctx.t.h.pki, name);
    const feed = new DataplaneFeed({
      controller,
      exchange: ctx.t.h.exchanges.get(name) as NonNullable<ReturnType<typeof ctx.t.h.exchanges.get>>,
      sink: server,
      self: { cluster: name, region: "region-1", zone: "zone-a" },
      tls: () => ({ trustDomain: ctx.t.h.pki.trustDomain, gatewayCertChainPem: leaf.chainPem, gatewayKeyPem: leaf.keyPem, trustBundlePems: ctx.t.h.pki.bundle.caPems() }),
    });
    feed.start();
    const bootstrap = parseBootstrap({
      node: { id: `gw-${name}`, cluster: name },
      xds_servers: [{ server_uri: server.address }],
      admin: { address: "127.0.0.1", port: 0 },
      fedgate: { bind_address: HOST, port_overrides: { [String(xdsNames.EXPORT_LISTENER_PORT)]: exportPort }, drain_timeout_ms: 1_000, reconnect_initial_ms: 50, reconnect_max_ms: 500 },
    });
    ctx.servers.push(server);
    ctx.feeds.push(feed);
    ctx.gateways.set(name, await Gateway.start({ bootstrap, registry, logger: silentLogger }));
  }
  ctx.echo = await EchoBackend.start("echo-in-a", 0, HOST);
});

ports.after(async (ctx) => {
  for (const g of ctx.gateways?.values() ?? []) await g.close();
  for (const f of ctx.feeds ?? []) await f.stop();
  for (const s of ctx.servers ?? []) await s.close();
  await ctx.echo?.kill();
  await ctx.t?.stop();
});

ports("a connection to the port in B's derived EndpointSlice reaches A's exporter through both gateways", async (ctx) => {
  const { t } = ctx;
  await t.core("cluster-a").createNamespacedService({ namespace: NAMESPACE, body: { metadata: { name: "echo" }, spec: { ports: [{ name: "tcp", port: SERVICE_PORT, protocol: "TCP" }] } } });
  await t.discovery("cluster-a").createNamespacedEndpointSlice({
    namespace: NAMESPACE,
    body: {
      metadata: { name: "echo-1", labels: { "kubernetes.io/service-name": "echo" } },
      addressType: "IPv4",
      endpoints: [{ addresses: [HOST], zone: "zone-a", conditions: { ready: true } }],
      ports: [{ name: "tcp", port: ctx.echo.port, protocol: "TCP" }],
    },
  });
  await t.createServiceExport("cluster-a", "echo");

  const slice = await eventually(
    "B's derived EndpointSlice for A",
    async () => {
      const list = await t.discovery("cluster-b").listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `kubernetes.io/service-name=${derivedServiceName("echo")}` });
      return list.items.find((s) => s.ports?.[0]?.port !== undefined);
    },
    60_000,
  );
  const port = slice.ports?.[0]?.port as number;
  assert.is(slice.endpoints[0]?.addresses[0], HOST);
  assert.ok(port >= 20_000 && port <= 29_999, `allocated from the import range, got ${port}`);
  assert.is.not(port, SERVICE_PORT);

  const gatewayB = ctx.gateways.get("cluster-b") as Gateway;
  await eventually("B's gateway listening on the allocated port", async () => (gatewayB.listenerAddresses()[xdsNames.importListenerName(port)]?.port === port ? true : undefined), 60_000);
  assert.not.ok(gatewayB.listenerAddresses()[xdsNames.importListenerName(SERVICE_PORT)], "nothing listens on the service port");
  const served = await eventually("a reply through B's import port", () => exchange(port, "ping", 10_000, HOST).catch(() => undefined), 60_000);
  assert.is(served, "echo-in-a");
});

ports("a replica that does not lead serves the leader's allocation, read from the derived Service", async (ctx) => {
  const { t } = ctx;
  const slice = (await t.discovery("cluster-b").listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `kubernetes.io/service-name=${derivedServiceName("echo")}` })).items[0];
  const port = slice?.ports?.[0]?.port as number;
  // Someone else holds the Lease for an hour, so this replica stays a follower with warm caches.
  const now = new k8s.V1MicroTime(Date.now());
  await t.cluster("cluster-b").kubeConfig.makeApiClient(k8s.CoordinationV1Api).createNamespacedLease({
    namespace: NAMESPACE,
    body: { metadata: { name: "fedgate-b" }, spec: { holderIdentity: "replica-0", leaseDurationSeconds: 3_600, acquireTime: now, renewTime: now } },
  });
  const follower = new FederationController({
    cluster: "cluster-b",
    kubeConfig: t.cluster("cluster-b").kubeConfig,
    exchange: t.h.exchanges.get("cluster-b") as NonNullable<ReturnType<typeof t.h.exchanges.get>>,
    gateway: { host: HOST, port: 1 },
    gatewayImportAddress: HOST,
    leaderElection: { namespace: NAMESPACE, leaseName: "fedgate-b", identity: "replica-1" },
  });
  await follower.start();
  try {
    const allocation = await eventually("the follower's cache of the derived Service", async () => follower.importPorts().get(`${NAMESPACE}/echo`));
    assert.not.ok(follower.isLeader());
    assert.equal(allocation, [{ port: SERVICE_PORT, gatewayPort: port }]);
    assert.is(follower.kubeWrites.sent, 0, "a follower writes nothing");
  } finally {
    await follower.stop();
  }
});

ports.run();
