import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import {
  EventRecorder,
  ExportReconciler,
  FederationController,
  KubeApi,
  LeaderElector,
  LeadershipLostError,
  MCS_GROUP,
  MCS_VERSION,
  NotLeaderError,
  ResilientInformer,
  type Exchange,
  type ServiceExportObject,
} from "../../federation/internal.ts";
import { startCluster, startClusters, waitFor, type KubeCluster } from "../env/index.ts";
import { ExchangeHarness, exportOf } from "../support/exchange-harness.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

const LEASE_NAMESPACE = "kube-system";
/** Short terms so failover happens within a test; renewDeadline < leaseDuration as the elector requires. */
const FAST = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 } as const;
const eventually = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000) => waitFor(what, probe, { timeoutMs, intervalMs: 100 });

interface LeaseSpec {
  holderIdentity?: string;
  leaseTransitions?: number;
  acquireTime?: unknown;
  renewTime?: unknown;
}

/** MicroTime fields come back from client-node as strings. */
const timeOf = (t: unknown): number => {
  const ms = new Date(t instanceof Date ? t : String(t)).getTime();
  assert.ok(Number.isFinite(ms), `not a time: ${String(t)}`);
  return ms;
};

async function readLease(kc: k8s.KubeConfig, name: string): Promise<LeaseSpec | undefined> {
  try {
    return (await kc.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ namespace: LEASE_NAMESPACE, name })).spec;
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return undefined;
    throw err;
  }
}

/** A candidate with a log of its terms: local start and end times, and each term's signal. */
class Candidate {
  readonly elector: LeaderElector;
  readonly terms: { signal: AbortSignal; startedAt: number; endedAt?: number }[] = [];

  constructor(options: { kubeConfig: k8s.KubeConfig; lease: string; identity: string; leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number }) {
    this.elector = new LeaderElector({
      ...FAST,
      ...options,
      namespace: LEASE_NAMESPACE,
      name: options.lease,
      onStartedLeading: (signal) => this.terms.push({ signal, startedAt: Date.now() }),
      onStoppedLeading: () => {
        const term = this.terms.at(-1);
        if (term) term.endedAt = Date.now();
      },
    });
    this.elector.start();
  }
}

/** The same credentials, but reaching the apiserver through `proxy`. */
function throughProxy(kc: k8s.KubeConfig, proxy: TcpProxy): k8s.KubeConfig {
  const cluster = kc.getCurrentCluster() as k8s.Cluster;
  const copy = new k8s.KubeConfig();
  copy.loadFromOptions({ clusters: [{ ...cluster, server: `https://127.0.0.1:${proxy.port}` }], users: kc.users, contexts: kc.contexts, currentContext: kc.currentContext });
  return copy;
}

function assertEnded(term: AbortSignal | undefined, reason: LeadershipLostError["reason"]): void {
  assert.ok(term?.aborted, "the term is still on");
  assert.instance(term?.reason, LeadershipLostError);
  assert.is((term?.reason as LeadershipLostError).reason, reason);
}

const leaderOf = (candidates: Candidate[]) => candidates.filter((c) => c.elector.isLeader());

// --- (a) two electors on one real kube-apiserver ---

interface ElectionCtx {
  cluster: KubeCluster;
  cleanup: (() => Promise<void>)[];
}

const election = suite<ElectionCtx>("Lease leader election on a real kube-apiserver", {} as never);

election.before(async (ctx) => {
  ctx.cluster = await startCluster("leader-election", { installCrds: false });
  ctx.cleanup = [];
});
election.after.each(async (ctx) => {
  for (const fn of ctx.cleanup.splice(0).reverse()) await fn();
});
election.after(async (ctx) => {
  await ctx.cluster?.stop();
});

function candidates(ctx: ElectionCtx, lease: string, options: { leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number; kubeConfigs?: k8s.KubeConfig[] } = {}): [Candidate, Candidate] {
  const make = (identity: string, i: number) => {
    const c = new Candidate({ ...options, kubeConfig: options.kubeConfigs?.[i] ?? ctx.cluster.kubeConfig, lease, identity });
    ctx.cleanup.push(() => c.elector.stop({ release: false }));
    return c;
  };
  return [make("replica-1", 0), make("replica-2", 1)];
}

election("of two electors exactly one leads, and the Lease names it", async (ctx) => {
  const both = candidates(ctx, "one-leader");
  const [leader] = await eventually("a leader", async () => (leaderOf(both).length ? leaderOf(both) : undefined));
  const lease = await readLease(ctx.cluster.kubeConfig, "one-leader");
  assert.is(lease?.holderIdentity, leader?.elector.identity);
  assert.is(lease?.leaseTransitions, 0);
  // Across several renewals the lease changes hands never and both never lead at once.
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, FAST.retryPeriodMs));
    assert.ok(leaderOf(both).length <= 1, "two leaders at once");
  }
  assert.is((await readLease(ctx.cluster.kubeConfig, "one-leader"))?.holderIdentity, leader?.elector.identity);
  assert.is(both.flatMap((c) => c.terms).length, 1);
  const follower = both.find((c) => c !== leader) as Candidate;
  assert.is(follower.elector.observedLeader(), leader?.elector.identity);
});

election("a leader that releases on shutdown hands over at once, long before its lease would lapse", async (ctx) => {
  // A minute-long lease: a takeover within the 30 s deadline below can only come from the release.
  const both = candidates(ctx, "release", { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, retryPeriodMs: 500 });
  const [leader] = await eventually("a leader", async () => (leaderOf(both).length ? leaderOf(both) : undefined));
  const follower = both.find((c) => c !== leader) as Candidate;
  await eventually("the follower to see the leader", async () => (follower.elector.observedLeader() === leader?.elector.identity ? true : undefined));
  await leader?.elector.stop();
  assert.ok(leader?.terms[0]?.signal.aborted);
  assertEnded(leader?.terms[0]?.signal, "stopped");
  await eventually("the follower to lead", async () => (follower.elector.isLeader() ? true : undefined), 30_000);
  const lease = await readLease(ctx.cluster.kubeConfig, "release");
  assert.is(lease?.holderIdentity, follower.elector.identity);
  assert.is(lease?.leaseTransitions, 1);
});

election("a leader that vanishes without releasing is replaced only after the lease duration", async (ctx) => {
  const both = candidates(ctx, "vanish");
  const [leader] = await eventually("a leader", async () => (leaderOf(both).length ? leaderOf(both) : undefined));
  const follower = both.find((c) => c !== leader) as Candidate;
  await eventually("the follower to see the leader", async () => (follower.elector.observedLeader() === leader?.elector.identity ? true : undefined));
  await leader?.elector.stop({ release: false });
  const abandoned = await readLease(ctx.cluster.kubeConfig, "vanish");
  assert.is(abandoned?.holderIdentity, leader?.elector.identity);
  await eventually("the follower to lead", async () => (follower.elector.isLeader() ? true : undefined));
  const lease = await readLease(ctx.cluster.kubeConfig, "vanish");
  assert.is(lease?.holderIdentity, follower.elector.identity);
  assert.is(lease?.leaseTransitions, 1);
  // One machine, one clock: the takeover came no sooner than a full lease duration after the last renewal.
  const lastRenewal = timeOf(abandoned?.renewTime);
  assert.ok(timeOf(lease?.acquireTime) >= lastRenewal + FAST.leaseDurationMs, "taken over before the lease lapsed");
});

election("a leader cut off from the apiserver steps down within renewDeadline and refuses writes; the other takes over after it stopped", async (ctx) => {
  const server = new URL(ctx.cluster.server);
  const proxy = await TcpProxy.start({ host: server.hostname, port: Number(server.port) });
  ctx.cleanup.push(() => proxy.close());
  const viaProxy = throughProxy(ctx.cluster.kubeConfig, proxy);
  // replica-1 reaches the apiserver only through the proxy; it starts alone, so it is the leader.
  const [cutOff] = [new Candidate({ kubeConfig: viaProxy, lease: "partition", identity: "replica-1" })];
  ctx.cleanup.push(() => cutOff.elector.stop({ release: false }));
  await eventually("replica-1 to lead", async () => (cutOff.elector.isLeader() ? true : undefined));
  const other = new Candidate({ kubeConfig: ctx.cluster.kubeConfig, lease: "partition", identity: "replica-2" });
  ctx.cleanup.push(() => other.elector.stop({ release: false }));
  await eventually("replica-2 to see replica-1 lead", async () => (other.elector.observedLeader() === "replica-1" ? true : undefined));
  // Every renewal of replica-1 the apiserver accepted, as seen from outside.
  let lastRenewal = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const l = await readLease(ctx.cluster.kubeConfig, "partition");
      if (l?.holderIdentity === "replica-1") lastRenewal = Math.max(lastRenewal, timeOf(l.renewTime));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  ctx.cleanup.push(async () => {
    watching = false;
    await watcher;
  });
  const fenced = new KubeApi({ kubeConfig: viaProxy, beforeWrite: () => cutOff.elector.assertLeader() });
  const configMap = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "default" }, data: { by: "replica-1" } });
  await fenced.apply(configMap("written-while-leading"));

  proxy.partition();
  const term = cutOff.terms[0];
  await eventually("replica-1 to step down", async () => (term?.signal.aborted ? true : undefined));
  assertEnded(term?.signal, "renew-deadline");
  assert.not.ok(cutOff.elector.isLeader());
  // The fence refuses before any request is made (the proxy stays cut, so a write that got past it would fail differently).
  const writesBefore = fenced.writes;
  try {
    await fenced.apply(configMap("written-after-the-term"));
    assert.unreachable("a write after the term ended went through");
  } catch (err) {
    assert.instance(err, NotLeaderError);
  }
  assert.equal(fenced.writes, { sent: writesBefore.sent, refused: 1 });
  await ctx.cluster.kubeConfig.makeApiClient(k8s.CoreV1Api).readNamespacedConfigMap({ namespace: "default", name: "written-while-leading" });

  await eventually("replica-2 to lead", async () => (other.elector.isLeader() ? true : undefined));
  const lease = await readLease(ctx.cluster.kubeConfig, "partition");
  assert.is(lease?.holderIdentity, "replica-2");
  assert.ok((other.terms[0]?.startedAt ?? 0) > (term?.endedAt ?? Infinity), "the new term began before the old one ended");
  // One machine, one clock: replica-2 waited a full lease duration after replica-1's last accepted renewal.
  assert.ok(lastRenewal > 0);
  assert.ok(timeOf(lease?.acquireTime) >= lastRenewal + FAST.leaseDurationMs);

  // Reconnected, replica-1 campaigns again but follows: the lease is held and renewed.
  proxy.heal();
  await eventually("replica-1 to see replica-2 lead", async () => (cutOff.elector.observedLeader() === "replica-2" ? true : undefined));
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, FAST.retryPeriodMs));
    assert.not.ok(cutOff.elector.isLeader());
    assert.ok(other.elector.isLeader());
  }
});

election.run();

// --- (a') the same fence on the bus: a reconcile running on after the term publishes and withdraws nothing ---

interface BusFenceCtx {
  cluster: KubeCluster;
  h: ExchangeHarness;
  cleanup: (() => Promise<void>)[];
}

const busFence = suite<BusFenceCtx>("the leader's term fences bus writes, on a real kube-apiserver and NATS", {} as never);
const SHOP = "shop";

busFence.before(async (ctx) => {
  ctx.cluster = await startCluster("bus-fence");
  ctx.h = await ExchangeHarness.start({ clusters: ["cluster-a", "cluster-b"], leaseTtlMs: 5_000 });
  ctx.cleanup = [];
  await ctx.cluster.kubeConfig.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: SHOP } } });
});
busFence.after(async (ctx) => {
  for (const fn of (ctx.cleanup ?? []).reverse()) await fn();
  await ctx.h?.stop();
  await ctx.cluster?.stop();
});

busFence("after the term ends, a reconcile's publish and withdrawal are refused and nothing reaches the bus", async (ctx) => {
  const admin = ctx.cluster.kubeConfig;
  const server = new URL(ctx.cluster.server);
  const proxy = await TcpProxy.start({ host: server.hostname, port: Number(server.port) });
  ctx.cleanup.push(() => proxy.close());
  // The replica's elector and writes reach the apiserver through the proxy; its caches read directly.
  const viaProxy = throughProxy(admin, proxy);
  const replica = new Candidate({ kubeConfig: viaProxy, lease: "bus-fence", identity: "replica-1" });
  ctx.cleanup.push(() => replica.elector.stop({ release: false }));
  await eventually("replica-1 to lead", async () => (replica.elector.isLeader() ? true : undefined));
  const fence = () => replica.elector.assertLeader();

  const custom = admin.makeApiClient(k8s.CustomObjectsApi);
  const discovery = admin.makeApiClient(k8s.DiscoveryV1Api);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const serviceExports = new ResilientInformer<ServiceExportObject>({
    kubeConfig: admin,
    path: `/apis/${MCS_GROUP}/${MCS_VERSION}/serviceexports`,
    list: async () => (await custom.listClusterCustomObject({ group: MCS_GROUP, version: MCS_VERSION, plural: "serviceexports" })) as k8s.KubernetesListObject<ServiceExportObject>,
    onEvent: () => undefined,
  });
  const services = new ResilientInformer<k8s.V1Service>({ kubeConfig: admin, path: "/api/v1/services", list: () => core.listServiceForAllNamespaces(), onEvent: () => undefined });
  const endpointSlices = new ResilientInformer<k8s.V1EndpointSlice>({
    kubeConfig: admin,
    path: "/apis/discovery.k8s.io/v1/endpointslices",
    list: () => discovery.listEndpointSliceForAllNamespaces(),
    onEvent: () => undefined,
  });
  for (const informer of [serviceExports, services, endpointSlices]) {
    await informer.start();
    ctx.cleanup.push(() => informer.stop());
  }
  const exchange = await ctx.h.startExchange("cluster-a");
  const peer = await ctx.h.startExchange("cluster-b");
  const reconciler = new ExportReconciler({
    cluster: "cluster-a",
    exchange,
    api: new KubeApi({ kubeConfig: viaProxy, beforeWrite: fence }),
    gateway: { host: "gw.cluster-a.example", port: 15443 },
    events: new EventRecorder({ kubeConfig: admin, instance: "fedgate-cluster-a-replica-1" }),
    policyFor: () => undefined,
    serviceExports,
    services,
    endpointSlices,
    beforeBusWrite: fence,
  });

  await core.createNamespacedService({ namespace: SHOP, body: { metadata: { name: "cart" }, spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] } } });
  const slice = (ready: boolean): k8s.V1EndpointSlice => ({
    metadata: { name: "cart-1", labels: { "kubernetes.io/service-name": "cart" } },
    addressType: "IPv4",
    endpoints: [{ addresses: ["10.1.0.1"], zone: "zone-a", conditions: { ready } }],
    ports: [{ name: "http", port: 8080, protocol: "TCP" }],
  });
  await discovery.createNamespacedEndpointSlice({ namespace: SHOP, body: slice(true) });
  await custom.createNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: SHOP, plural: "serviceexports", body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: "cart" } } });
  await eventually("the caches to hold cart", async () => (serviceExports.get("cart", SHOP) && endpointSlices.get("cart-1", SHOP) ? true : undefined));

  const readyAtPeer = () => peer.service(SHOP, "cart")?.exports.find((e) => e.cluster === "cluster-a")?.readyEndpoints.reduce((n, z) => n + z.ready, 0);
  // While it leads, a reconcile publishes.
  await reconciler.reconcile(`${SHOP}/cart`);
  await eventually("the peer to see cart with one ready endpoint", async () => (readyAtPeer() === 1 ? true : undefined));

  // The endpoint turns unready, so the next reconcile has a new record to publish; then the term ends.
  await discovery.replaceNamespacedEndpointSlice({ namespace: SHOP, name: "cart-1", body: { ...slice(false), metadata: { ...slice(false).metadata, resourceVersion: endpointSlices.get("cart-1", SHOP)?.metadata?.resourceVersion } } });
  await eventually("the cache to see the endpoint unready", async () => (endpointSlices.get("cart-1", SHOP)?.endpoints?.[0]?.conditions?.ready === false ? true : undefined));
  proxy.partition();
  await eventually("replica-1 to step down", async () => (replica.terms[0]?.signal.aborted ? true : undefined));
  assert.not.ok(replica.elector.isLeader());

  /** Publishes a marker straight through the exchange: once the peer sees it, it would have seen anything published before. */
  const barrier = async (name: string) => {
    await exchange.publishExport(exportOf(SHOP, name));
    await eventually(`the peer to see ${name}`, async () => (peer.service(SHOP, name) ? true : undefined));
  };
  const refused = async () => {
    try {
      await reconciler.reconcile(`${SHOP}/cart`);
      return undefined;
    } catch (err) {
      return err;
    }
  };
  assert.instance(await refused(), NotLeaderError, "the publish after the term is refused");
  await barrier("marker-1");
  assert.is(readyAtPeer(), 1, "the peer still has the record published during the term");

  // Deleting the export (its finalizer, added during the term, holds it) must not withdraw it either.
  await custom.deleteNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: SHOP, plural: "serviceexports", name: "cart" });
  await eventually("the cache to see cart deleting", async () => (serviceExports.get("cart", SHOP)?.metadata?.deletionTimestamp ? true : undefined));
  assert.instance(await refused(), NotLeaderError, "the withdrawal after the term is refused");
  await barrier("marker-2");
  assert.is(readyAtPeer(), 1, "the export is still on the bus");
});

busFence.run();

// --- (b) two FederationController replicas for one cluster ---

interface ReplicaCtx {
  h: ExchangeHarness;
  kube: Map<string, KubeCluster>;
  controllers: FederationController[];
  replicas: Map<string, FederationController>;
  /** Each controller's own exchange: two replicas of cluster-b each hold one, which the harness would not close. */
  exchanges: Map<FederationController, Exchange>;
}

const replicas = suite<ReplicaCtx>("two FederationController replicas of one cluster on real kube-apiservers and NATS", {} as never);
const GATEWAY_IMPORT_ADDRESS = "10.255.0.20";
const LEASE = "fedgate-controller";

async function startController(ctx: ReplicaCtx, cluster: string, identity?: string): Promise<FederationController> {
  const exchange = await ctx.h.startExchange(cluster);
  const c = new FederationController({
    cluster,
    kubeConfig: (ctx.kube.get(cluster) as KubeCluster).kubeConfig,
    exchange,
    gateway: { host: `gw.${cluster}.example`, port: 15443 },
    gatewayImportAddress: GATEWAY_IMPORT_ADDRESS,
    ...(identity ? { leaderElection: { namespace: LEASE_NAMESPACE, leaseName: LEASE, identity, ...FAST } } : {}),
  });
  await c.start();
  ctx.controllers.push(c);
  ctx.exchanges.set(c, exchange);
  if (identity) ctx.replicas.set(identity, c);
  return c;
}

replicas.before(async (ctx) => {
  ctx.h = await ExchangeHarness.start({ clusters: ["cluster-a", "cluster-b"], leaseTtlMs: 5_000 });
  const clusters = await startClusters(2);
  ctx.kube = new Map(clusters.map((c) => [c.name, c]));
  ctx.controllers = [];
  ctx.replicas = new Map();
  ctx.exchanges = new Map();
  for (const c of clusters) await c.kubeConfig.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: "shop" } } });
  await startController(ctx, "cluster-a");
  await startController(ctx, "cluster-b", "b-1");
  await startController(ctx, "cluster-b", "b-2");
});
replicas.after(async (ctx) => {
  for (const c of [...(ctx.controllers ?? [])]) await stopController(ctx, c);
  await Promise.all([...(ctx.kube?.values() ?? [])].map((k) => k.stop()));
  await ctx.h?.stop();
});

async function stopController(ctx: ReplicaCtx, c: FederationController): Promise<void> {
  await c.stop();
  await ctx.exchanges.get(c)?.close();
  ctx.controllers.splice(ctx.controllers.indexOf(c), 1);
}

const kc = (ctx: ReplicaCtx, cluster: string) => (ctx.kube.get(cluster) as KubeCluster).kubeConfig;

async function exportService(ctx: ReplicaCtx, cluster: string, service: string): Promise<void> {
  const config = kc(ctx, cluster);
  await config.makeApiClient(k8s.CoreV1Api).createNamespacedService({ namespace: "shop", body: { metadata: { name: service }, spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] } } });
  await config.makeApiClient(k8s.DiscoveryV1Api).createNamespacedEndpointSlice({
    namespace: "shop",
    body: {
      metadata: { name: `${service}-1`, labels: { "kubernetes.io/service-name": service } },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.1.0.1"], zone: "zone-a", conditions: { ready: true } }],
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    },
  });
  await config.makeApiClient(k8s.CustomObjectsApi).createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace: "shop",
    plural: "serviceexports",
    body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: service } },
  });
}

interface McsObject {
  spec?: { ips?: string[] };
  status?: { clusters?: { cluster: string }[]; conditions?: { type: string; status: string }[] };
}

async function readMcs(ctx: ReplicaCtx, cluster: string, plural: "serviceexports" | "serviceimports", name: string): Promise<McsObject | undefined> {
  try {
    return (await kc(ctx, cluster).makeApiClient(k8s.CustomObjectsApi).getNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: "shop", plural, name })) as McsObject;
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return undefined;
    throw err;
  }
}

const importedInB = (ctx: ReplicaCtx, name: string) =>
  eventually(`ServiceImport ${name} in cluster-b`, async () => {
    const si = await readMcs(ctx, "cluster-b", "serviceimports", name);
    return si?.spec?.ips?.length && si.status?.clusters?.length ? si : undefined;
  });
const readyInB = (ctx: ReplicaCtx, name: string) =>
  eventually(`ServiceExport ${name} in cluster-b to be Ready`, async () => {
    const se = await readMcs(ctx, "cluster-b", "serviceexports", name);
    return se?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? se : undefined;
  });

function leaderAndFollower(ctx: ReplicaCtx): { leader: FederationController; follower: FederationController; leaderId: string } {
  const entries = [...ctx.replicas.entries()];
  const leading = entries.filter(([, c]) => c.isLeader());
  assert.is(leading.length, 1, "exactly one replica leads");
  const [leaderId, leader] = leading[0] as [string, FederationController];
  const follower = (entries.find(([id]) => id !== leaderId) as [string, FederationController])[1];
  return { leader, follower, leaderId };
}

replicas("only the replica holding the Lease writes: imports and export status come from it, the follower writes nothing", async (ctx) => {
  await eventually("a leader in cluster-b", async () => ([...ctx.replicas.values()].some((c) => c.isLeader()) ? true : undefined));
  const { leader, follower, leaderId } = leaderAndFollower(ctx);
  assert.is((await readLease(kc(ctx, "cluster-b"), LEASE))?.holderIdentity, leaderId);
  await exportService(ctx, "cluster-a", "cart");
  await exportService(ctx, "cluster-b", "orders");
  const si = await importedInB(ctx, "cart");
  assert.equal(si.status?.clusters, [{ cluster: "cluster-a" }]);
  await readyInB(ctx, "orders");
  await eventually("orders imported in cluster-a", async () => ((await readMcs(ctx, "cluster-a", "serviceimports", "orders"))?.spec?.ips?.length ? true : undefined));
  await leader.idle();
  assert.ok(leader.kubeWrites.sent > 0);
  // Not even refused ones: the follower's queues never ran a reconcile.
  assert.equal(follower.kubeWrites, { sent: 0, refused: 0 });
  // Still the same leader: the follower's silence was not a leadership change.
  assert.is((await readLease(kc(ctx, "cluster-b"), LEASE))?.holderIdentity, leaderId);
  assert.ok(leader.isLeader());
});

replicas("when the leader shuts down the follower takes over, resyncs, and serves new exports", async (ctx) => {
  const { leader, follower } = leaderAndFollower(ctx);
  await stopController(ctx, leader);
  await eventually("the follower to lead", async () => (follower.isLeader() ? true : undefined), 30_000);
  const followerId = [...ctx.replicas.entries()].find(([, c]) => c === follower)?.[0];
  const lease = await readLease(kc(ctx, "cluster-b"), LEASE);
  assert.is(lease?.holderIdentity, followerId);
  assert.is(lease?.leaseTransitions, 1);
  await exportService(ctx, "cluster-a", "payments");
  await exportService(ctx, "cluster-b", "invoices");
  const si = await importedInB(ctx, "payments");
  assert.equal(si.status?.clusters, [{ cluster: "cluster-a" }]);
  await readyInB(ctx, "invoices");
  // What the old leader wrote is still there, and the new one keeps it converged.
  assert.ok((await readMcs(ctx, "cluster-b", "serviceimports", "cart"))?.spec?.ips?.length);
  assert.ok(follower.kubeWrites.sent > 0);
});

replicas.run();
