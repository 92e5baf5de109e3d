import { suite } from "uvu";
import * as assert from "uvu/assert";
import { XdsServer, xdsNames } from "../../gateway/index.ts";
import { DataplaneFeed, DEFAULT_BUCKETS, REVOCATIONS_KEY, type FederationController } from "../../federation/index.ts";
import { revocationsRecord } from "../../trust/index.ts";
import { ControllerHarness, NAMESPACE } from "../support/controller-harness.ts";
import { AdsTestClient } from "../support/xds-ads-client.ts";

interface Ctx {
  t: ControllerHarness;
  servers: Map<string, XdsServer>;
  feeds: DataplaneFeed[];
  clients: AdsTestClient[];
}

const feed = suite<Ctx>("data plane feed: controller and exchange state served over xDS", {} as never);

feed.before(async (ctx) => {
  ctx.t = await ControllerHarness.start({ clusters: 2, leaseTtlMs: 5_000 });
  ctx.servers = new Map();
  ctx.feeds = [];
  ctx.clients = [];
  for (const name of ctx.t.kube.keys()) {
    const controller = await ctx.t.startController(name);
    const server = await XdsServer.start({});
    const leaf = await ctx.t.h.pki.identity(name).intermediate.issueLeaf({});
    const f = new DataplaneFeed({
      controller,
      exchange: ctx.t.h.exchanges.get(name) as NonNullable<ReturnType<typeof ctx.t.h.exchanges.get>>,
      sink: server,
      self: { cluster: name, region: "region-1", zone: "zone-a" },
      tls: () => ({ trustDomain: ctx.t.h.pki.trustDomain, gatewayCertChainPem: leaf.chainPem, gatewayKeyPem: leaf.privateKeyPem ?? "", trustBundlePems: ctx.t.h.pki.bundle.caPems() }),
    });
    f.start();
    ctx.servers.set(name, server);
    ctx.feeds.push(f);
  }
});
feed.after(async (ctx) => {
  for (const c of ctx.clients ?? []) c.close();
  for (const f of ctx.feeds ?? []) await f.stop();
  for (const s of ctx.servers?.values() ?? []) await s.close();
  await ctx.t?.stop();
});

const WEB = { namespace: NAMESPACE, name: "web" };
const OUTBOUND = xdsNames.outboundClusterName(WEB, 80);

/** Every endpoint of a decoded ClusterLoadAssignment as `address:port priority health`. */
function endpointsOf(cla: Record<string, unknown> | undefined): string[] {
  type LbEndpoint = { health_status?: string; endpoint?: { address?: { socket_address?: { address?: string; port_value?: number } } } };
  const groups = (cla?.endpoints ?? []) as { priority?: number; lb_endpoints?: LbEndpoint[] }[];
  return groups
    .flatMap((g) => (g.lb_endpoints ?? []).map((e) => `${e.endpoint?.address?.socket_address?.address}:${e.endpoint?.address?.socket_address?.port_value} p${g.priority ?? 0} ${e.health_status ?? "UNKNOWN"}`))
    .sort();
}

function gatewayNode(ctx: Ctx, cluster: string): AdsTestClient {
  const server = ctx.servers.get(cluster) as XdsServer;
  const client = new AdsTestClient({ address: server.address, registry: server.core.registry, nodeId: `gw-${cluster}`, dataplane: "gateway" });
  ctx.clients.push(client);
  client.subscribe("endpoint", [OUTBOUND]);
  return client;
}

const claIn = (client: AdsTestClient) => endpointsOf(client.received.get("endpoint")?.resources.get(OUTBOUND));

feed("an export in A is served as local backends by A's xDS server and as A's gateway by B's", async (ctx) => {
  const { t } = ctx;
  await t.exportService("cluster-a", "web");
  const a = gatewayNode(ctx, "cluster-a");
  const b = gatewayNode(ctx, "cluster-b");
  await a.waitFor(() => claIn(a).length === 2, 30_000);
  assert.equal(claIn(a), ["10.1.0.1:8080 p0 HEALTHY", "10.1.0.2:8080 p0 HEALTHY"], "A routes to its own pods first");
  await b.waitFor(() => claIn(b).length === 1, 30_000);
  assert.equal(claIn(b), ["gw.cluster-a.example:15443 p0 HEALTHY"], "B routes to A's gateway");
});

feed("endpoint readiness flows to both data planes", async (ctx) => {
  const { t, clients } = ctx;
  const [a, b] = clients as [AdsTestClient, AdsTestClient];
  await t.setReady("cluster-a", "web", false);
  await a.waitFor(() => claIn(a).every((e) => e.endsWith("UNHEALTHY")), 30_000);
  await b.waitFor(() => claIn(b).every((e) => e.endsWith("UNHEALTHY")), 30_000);
  await t.setReady("cluster-a", "web", true);
  await b.waitFor(() => claIn(b).every((e) => e.endsWith(" HEALTHY")), 30_000);
  assert.ok(ctx.feeds.every((f) => f.stats().rejections === 0), "every snapshot was accepted");
  assert.ok(ctx.feeds.every((f) => f.stats().snapshots > 1));
  await (t.controllers.get("cluster-a") as FederationController).idle();
});

feed("revocation lists the exchange installs reach the gateways in the trust-bundle secret (validation_context.crl)", async (ctx) => {
  const { t } = ctx;
  const client = new AdsTestClient({ address: (ctx.servers.get("cluster-b") as XdsServer).address, registry: (ctx.servers.get("cluster-b") as XdsServer).core.registry, nodeId: "gw-cluster-b-sds", dataplane: "gateway" });
  ctx.clients.push(client);
  client.subscribe("secret", ["fedgate-trust-bundle"]);
  const crlOf = () => {
    const secret = client.received.get("secret")?.resources.get("fedgate-trust-bundle") as { validation_context?: { crl?: { inline_string?: string } } } | undefined;
    return secret?.validation_context?.crl?.inline_string;
  };
  await client.waitFor(() => client.received.get("secret")?.resources.has("fedgate-trust-bundle") === true, 30_000);
  assert.is(crlOf(), undefined, "no list before the admin publishes one");
  const crl = await t.h.pki.root.issueRevocationList({ intermediates: [t.h.pki.identity("cluster-a").intermediate.certificate], crlNumber: 1 });
  const trustKv = await t.h.rawKv("admin", DEFAULT_BUCKETS.trust);
  await trustKv.put(REVOCATIONS_KEY, revocationsRecord(t.h.pki.trustDomain, [crl]));
  await client.waitFor(() => crlOf() === crl.pem, 30_000);
  assert.ok(ctx.feeds.every((f) => f.stats().rejections === 0));
});

feed.run();
