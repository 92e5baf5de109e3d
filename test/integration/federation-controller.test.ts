import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import { FederationController, LABEL_SOURCE_CLUSTER, MCS_GROUP, MCS_VERSION, derivedServiceName } from "../../federation/index.ts";
import { startClusters, waitFor, type KubeCluster } from "../env/index.ts";
import { ExchangeHarness } from "../support/exchange-harness.ts";

const NAMES = ["cluster-a", "cluster-b", "cluster-c"] as const;
type Name = (typeof NAMES)[number];
const GATEWAY_IMPORT_ADDRESS = "10.255.0.10";

interface Ctx {
  h: ExchangeHarness;
  kube: Map<Name, KubeCluster>;
  controllers: Map<Name, FederationController>;
}

const controller = suite<Ctx>("federation controller on three real kube-apiservers and NATS", {} as never);

async function startController(ctx: Ctx, name: Name): Promise<FederationController> {
  const exchange = ctx.h.exchanges.get(name) ?? (await ctx.h.startExchange(name));
  const c = new FederationController({
    cluster: name,
    kubeConfig: (ctx.kube.get(name) as KubeCluster).kubeConfig,
    exchange,
    gateway: { host: `gw.${name}.example`, port: 15443 },
    gatewayImportAddress: GATEWAY_IMPORT_ADDRESS,
  });
  await c.start();
  ctx.controllers.set(name, c);
  return c;
}

controller.before(async (ctx) => {
  ctx.h = await ExchangeHarness.start({ clusters: [...NAMES], leaseTtlMs: 5_000 });
  const clusters = await startClusters(3);
  ctx.kube = new Map(clusters.map((c) => [c.name as Name, c]));
  ctx.controllers = new Map();
  for (const name of NAMES) {
    await core(ctx, name).createNamespace({ body: { metadata: { name: "shop" } } });
    await startController(ctx, name);
  }
});
controller.after(async (ctx) => {
  for (const c of ctx.controllers?.values() ?? []) await c.stop();
  await Promise.all([...(ctx.kube?.values() ?? [])].map((k) => k.stop()));
  await ctx.h?.stop();
});

const core = (ctx: Ctx, name: Name) => (ctx.kube.get(name) as KubeCluster).kubeConfig.makeApiClient(k8s.CoreV1Api);
const discovery = (ctx: Ctx, name: Name) => (ctx.kube.get(name) as KubeCluster).kubeConfig.makeApiClient(k8s.DiscoveryV1Api);
const custom = (ctx: Ctx, name: Name) => (ctx.kube.get(name) as KubeCluster).kubeConfig.makeApiClient(k8s.CustomObjectsApi);

interface McsObject {
  metadata: { resourceVersion?: string; finalizers?: string[] };
  spec?: { type?: string; ports?: { name?: string; port: number; protocol: string }[]; ips?: string[]; sessionAffinity?: string };
  status?: { clusters?: { cluster: string }[]; conditions?: { type: string; status: string; reason: string }[] };
}

async function read(ctx: Ctx, name: Name, plural: "serviceexports" | "serviceimports", object: string): Promise<McsObject | undefined> {
  try {
    return (await custom(ctx, name).getNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: "shop", plural, name: object })) as McsObject;
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return undefined;
    throw err;
  }
}

async function exportService(ctx: Ctx, name: Name, service: string, options: { sessionAffinity?: string; ready?: boolean } = {}) {
  await core(ctx, name).createNamespacedService({
    namespace: "shop",
    body: { metadata: { name: service }, spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }], sessionAffinity: options.sessionAffinity ?? "None" } },
  });
  await discovery(ctx, name).createNamespacedEndpointSlice({
    namespace: "shop",
    body: {
      metadata: { name: `${service}-1`, labels: { "kubernetes.io/service-name": service } },
      addressType: "IPv4",
      endpoints: ["10.1.0.1", "10.1.0.2"].map((ip) => ({ addresses: [ip], zone: "zone-a", conditions: { ready: options.ready ?? true } })),
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    },
  });
  await custom(ctx, name).createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace: "shop",
    plural: "serviceexports",
    body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: service } },
  });
}

const condition = (o: McsObject | undefined, type: string) => o?.status?.conditions?.find((c) => c.type === type);
const eventually = <T>(what: string, probe: () => Promise<T | undefined>) => waitFor(what, probe, { timeoutMs: 20_000, intervalMs: 100 });

controller("an export in A becomes a ServiceImport with derived Service and EndpointSlice in B and C", async (ctx) => {
  await exportService(ctx, "cluster-a", "web");
  for (const name of ["cluster-b", "cluster-c"] as const) {
    const si = await eventually(`ServiceImport in ${name}`, async () => {
      const o = await read(ctx, name, "serviceimports", "web");
      return o?.spec?.ips?.length ? o : undefined;
    });
    assert.is(si.spec?.type, "ClusterSetIP");
    assert.equal(si.spec?.ports, [{ name: "http", protocol: "TCP", port: 80 }]);
    assert.equal(si.status?.clusters, [{ cluster: "cluster-a" }]);
    const derived = await core(ctx, name).readNamespacedService({ namespace: "shop", name: derivedServiceName("web") });
    assert.equal(si.spec?.ips, [derived.spec?.clusterIP]);
    const slices = await discovery(ctx, name).listNamespacedEndpointSlice({ namespace: "shop", labelSelector: `${LABEL_SOURCE_CLUSTER}=cluster-a` });
    assert.is(slices.items.length, 1);
    assert.equal(slices.items[0]?.endpoints.map((e) => [e.addresses, e.conditions?.ready]), [[[GATEWAY_IMPORT_ADDRESS], true]]);
  }
  const se = await eventually("A's export to be Ready", async () => {
    const o = await read(ctx, "cluster-a", "serviceexports", "web");
    return condition(o, "Ready")?.status === "True" ? o : undefined;
  });
  assert.equal([condition(se, "Valid")?.reason, condition(se, "Ready")?.reason, condition(se, "Conflict")?.reason], ["Valid", "Exported", "NoConflicts"]);
  assert.ok(se.metadata.finalizers?.includes("multicluster.fedgate.io/withdraw-export"));
});

controller("a ServiceExport without a Service is Valid=False/NoService and publishes nothing", async (ctx) => {
  await custom(ctx, "cluster-a").createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace: "shop",
    plural: "serviceexports",
    body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: "ghost" } },
  });
  const se = await eventually("NoService", async () => {
    const o = await read(ctx, "cluster-a", "serviceexports", "ghost");
    return condition(o, "Valid") ? o : undefined;
  });
  assert.equal([condition(se, "Valid")?.status, condition(se, "Valid")?.reason], ["False", "NoService"]);
  assert.is(ctx.h.exchanges.get("cluster-b")?.service("shop", "ghost"), undefined);
});

controller("endpoint readiness in the exporting cluster reaches the importers", async (ctx) => {
  await discovery(ctx, "cluster-a").patchNamespacedEndpointSlice(
    {
      namespace: "shop",
      name: "web-1",
      body: [{ op: "replace", path: "/endpoints", value: ["10.1.0.1", "10.1.0.2"].map((ip) => ({ addresses: [ip], zone: "zone-a", conditions: { ready: false } })) }],
    },
    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
  );
  await eventually("B's derived slice to turn unready", async () => {
    const slices = await discovery(ctx, "cluster-b").listNamespacedEndpointSlice({ namespace: "shop", labelSelector: `${LABEL_SOURCE_CLUSTER}=cluster-a` });
    return slices.items[0]?.endpoints[0]?.conditions?.ready === false ? true : undefined;
  });
});

controller("a session-affinity conflict flags both exports; the oldest export wins", async (ctx) => {
  await exportService(ctx, "cluster-b", "web", { sessionAffinity: "ClientIP" });
  for (const name of ["cluster-a", "cluster-b"] as const) {
    const se = await eventually(`Conflict on ${name}'s export`, async () => {
      const o = await read(ctx, name, "serviceexports", "web");
      return condition(o, "Conflict")?.status === "True" ? o : undefined;
    });
    assert.is(condition(se, "Conflict")?.reason, "SessionAffinityConflict");
  }
  const si = await eventually("C's import to list both clusters", async () => {
    const o = await read(ctx, "cluster-c", "serviceimports", "web");
    return o?.status?.clusters?.length === 2 ? o : undefined;
  });
  assert.is(si.spec?.sessionAffinity, "None", "A exported first, so A's affinity wins");
});

controller("a controller restart rewrites nothing", async (ctx) => {
  const c = ctx.controllers.get("cluster-c") as FederationController;
  await c.idle();
  const versions = async () => {
    const si = await read(ctx, "cluster-c", "serviceimports", "web");
    const svc = await core(ctx, "cluster-c").readNamespacedService({ namespace: "shop", name: derivedServiceName("web") });
    const slices = await discovery(ctx, "cluster-c").listNamespacedEndpointSlice({ namespace: "shop" });
    return [si?.metadata.resourceVersion, svc.metadata?.resourceVersion, ...slices.items.map((s) => `${s.metadata?.name}@${s.metadata?.resourceVersion}`).sort()];
  };
  // Settle first: the previous test's changes may still be flowing through the ClusterSet.
  let before = await versions();
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const again = await versions();
    if (JSON.stringify(again) === JSON.stringify(before)) break;
    before = again;
  }
  await c.stop();
  const restarted = await startController(ctx, "cluster-c");
  await new Promise((r) => setTimeout(r, 500));
  await restarted.idle();
  assert.equal(await versions(), before);
});

controller.run();
