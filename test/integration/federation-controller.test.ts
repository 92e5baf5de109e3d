import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import { LABEL_SOURCE_CLUSTER, MCS_GROUP, MCS_VERSION, derivedServiceName, type FederationController } from "../../federation/index.ts";
import { ControllerHarness, GATEWAY_IMPORT_ADDRESS, NAMESPACE, condition, eventually } from "../support/controller-harness.ts";

const controller = suite<{ t: ControllerHarness }>("federation controller on three real kube-apiservers and NATS", {} as never);

controller.before(async (ctx) => {
  ctx.t = await ControllerHarness.start({ clusters: 3, leaseTtlMs: 5_000 });
  // C may create namespaces for its imports; A and B keep the default (imports only where the namespace exists).
  for (const name of ctx.t.kube.keys()) await ctx.t.startController(name, { createNamespaces: name === "cluster-c" });
});
controller.after(async (ctx) => {
  await ctx.t?.stop();
});

async function warningsAbout(t: ControllerHarness, cluster: string, kind: string, name: string): Promise<k8s.EventsV1Event[]> {
  const list = await t.cluster(cluster).kubeConfig.makeApiClient(k8s.EventsV1Api).listNamespacedEvent({ namespace: NAMESPACE });
  return list.items.filter((e) => e.type === "Warning" && e.regarding?.kind === kind && e.regarding.name === name);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** ServiceExport creation timestamps have one-second resolution; the oldest export must be unambiguous. */
const nextSecond = () => sleep(1_100);

async function importIn(t: ControllerHarness, cluster: string, service: string, ready: (si: NonNullable<Awaited<ReturnType<ControllerHarness["read"]>>>) => boolean) {
  return eventually(`${service}'s ServiceImport in ${cluster}`, async () => {
    const si = await t.read(cluster, "serviceimports", service);
    return si && ready(si) ? si : undefined;
  });
}

async function exportCondition(t: ControllerHarness, cluster: string, service: string, type: string, status: string) {
  return eventually(`${type}=${status} on ${cluster}'s export of ${service}`, async () => {
    const se = await t.read(cluster, "serviceexports", service);
    return condition(se, type)?.status === status ? se : undefined;
  });
}

controller("an export in A becomes a ServiceImport with derived Service and EndpointSlice in B and C", async ({ t }) => {
  await t.exportService("cluster-a", "web");
  for (const name of ["cluster-b", "cluster-c"]) {
    // The ClusterSetIP and status.clusters are two writes: wait for both.
    const si = await importIn(t, name, "web", (o) => Boolean(o.spec?.ips?.length && o.status?.clusters?.length));
    assert.is(si.spec?.type, "ClusterSetIP");
    assert.equal(si.spec?.ports, [{ name: "http", protocol: "TCP", port: 80 }]);
    assert.equal(si.status?.clusters, [{ cluster: "cluster-a" }]);
    const derived = await t.core(name).readNamespacedService({ namespace: NAMESPACE, name: derivedServiceName("web") });
    assert.equal(si.spec?.ips, [derived.spec?.clusterIP]);
    assert.equal(derived.metadata?.ownerReferences?.map((r) => [r.kind, r.name, r.uid]), [["ServiceImport", "web", si.metadata.uid]]);
    const slices = await t.discovery(name).listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${LABEL_SOURCE_CLUSTER}=cluster-a` });
    assert.is(slices.items.length, 1);
    assert.equal(slices.items[0]?.endpoints.map((e) => [e.addresses, e.conditions?.ready]), [[[GATEWAY_IMPORT_ADDRESS], true]]);
    assert.equal(slices.items[0]?.metadata?.ownerReferences?.map((r) => r.uid), [si.metadata.uid]);
  }
  const se = await exportCondition(t, "cluster-a", "web", "Ready", "True");
  assert.equal([condition(se, "Valid")?.reason, condition(se, "Ready")?.reason, condition(se, "Conflict")?.reason], ["Valid", "Exported", "NoConflicts"]);
  assert.ok(se.metadata.finalizers?.includes("multicluster.fedgate.io/withdraw-export"));
  const own = await importIn(t, "cluster-a", "web", (o) => Boolean(o.spec?.ips?.length && o.status?.clusters?.length));
  assert.equal(own.status?.clusters, [{ cluster: "cluster-a" }], "the exporting cluster imports its own export too, as MCS requires");
});

controller("reconciling converged imports again sends nothing: the cache shows every apply would be a no-op", async ({ t }) => {
  await importIn(t, "cluster-b", "web", (o) => Boolean(o.spec?.ips?.length));
  const b = t.controllers.get("cluster-b") as FederationController;
  // Settle: the controller's own writes requeue its imports once more before they go quiet.
  let sent = -1;
  while (b.kubeWrites.sent !== sent) {
    sent = b.kubeWrites.sent;
    await b.idle();
    await sleep(1_000);
  }
  const skipped = b.skippedApplies;
  // A namespace change requeues every import in the namespace (namespace sameness).
  await t.core("cluster-b").patchNamespace({ name: NAMESPACE, body: { metadata: { labels: { "fedgate-test/touched": "yes" } } } }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
  await eventually("cluster-b to reconcile its imports again", async () => (b.skippedApplies > skipped ? true : undefined));
  await b.idle();
  assert.is(b.kubeWrites.sent, sent, "no request was sent");
  // ServiceImport, its status, the derived Service and the slice: four applies per import, all skipped.
  assert.ok(b.skippedApplies - skipped >= 4);
});

controller("a ServiceExport without a Service is Valid=False/NoService and publishes nothing", async ({ t }) => {
  await t.createServiceExport("cluster-a", "ghost");
  const se = await exportCondition(t, "cluster-a", "ghost", "Valid", "False");
  assert.is(condition(se, "Valid")?.reason, "NoService");
  assert.is(t.h.exchanges.get("cluster-b")?.service(NAMESPACE, "ghost"), undefined);
  const events = await eventually("a Warning Event on the export", async () => {
    const found = await warningsAbout(t, "cluster-a", "ServiceExport", "ghost");
    return found.length ? found : undefined;
  });
  assert.equal(events.map((e) => e.reason), ["NoService"]);
  await (t.controllers.get("cluster-a") as FederationController).idle();
  assert.is((await warningsAbout(t, "cluster-a", "ServiceExport", "ghost")).length, 1, "resyncs do not repeat the Event");
});

controller("exporting an ExternalName Service is Valid=False/InvalidServiceType and publishes nothing", async ({ t }) => {
  await t.exportService("cluster-a", "outside", { externalName: "db.example.com" });
  const se = await exportCondition(t, "cluster-a", "outside", "Valid", "False");
  assert.equal([condition(se, "Valid")?.reason, condition(se, "Ready")?.status], ["InvalidServiceType", "False"]);
  assert.is(t.h.exchanges.get("cluster-b")?.service(NAMESPACE, "outside"), undefined);
});

controller("endpoint readiness in the exporting cluster reaches the importers", async ({ t }) => {
  await t.setReady("cluster-a", "web", false);
  await eventually("B's derived slice to turn unready", async () => {
    const slices = await t.discovery("cluster-b").listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${LABEL_SOURCE_CLUSTER}=cluster-a` });
    return slices.items[0]?.endpoints[0]?.conditions?.ready === false ? true : undefined;
  });
  await t.setReady("cluster-a", "web", true);
  await eventually("B's derived slice to turn ready again", async () => {
    const slices = await t.discovery("cluster-b").listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${LABEL_SOURCE_CLUSTER}=cluster-a` });
    return slices.items[0]?.endpoints[0]?.conditions?.ready === true ? true : undefined;
  });
});

controller("a session-affinity conflict flags both exports; the oldest export wins", async ({ t }) => {
  await t.exportService("cluster-b", "web", { sessionAffinity: "ClientIP" });
  for (const name of ["cluster-a", "cluster-b"]) {
    const se = await exportCondition(t, name, "web", "Conflict", "True");
    assert.is(condition(se, "Conflict")?.reason, "SessionAffinityConflict");
  }
  const si = await importIn(t, "cluster-c", "web", (o) => o.status?.clusters?.length === 2);
  assert.is(si.spec?.sessionAffinity, "None", "A exported first, so A's affinity wins");
});

controller("a port conflict flags both exports, keeps the oldest definition and merges the other ports", async ({ t }) => {
  await t.exportService("cluster-a", "api", { ports: [{ name: "http", port: 80 }] });
  await nextSecond();
  await t.exportService("cluster-b", "api", { ports: [{ name: "http", port: 8080 }, { name: "metrics", port: 9090 }] });
  for (const name of ["cluster-a", "cluster-b"]) {
    const se = await exportCondition(t, name, "api", "Conflict", "True");
    assert.is(condition(se, "Conflict")?.reason, "PortConflict");
  }
  const si = await importIn(t, "cluster-c", "api", (o) => o.status?.clusters?.length === 2);
  assert.equal(si.spec?.ports, [
    { name: "http", protocol: "TCP", port: 80 },
    { name: "metrics", protocol: "TCP", port: 9090 },
  ]);
  // Traffic keeps flowing: A serves http as the winner defines it; B serves the port only it defines too.
  await eventually("C's slices to carry each exporter's ports", async () => {
    const slices = await t.discovery("cluster-c").listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `multicluster.kubernetes.io/service-name=api` });
    const portsBySource = Object.fromEntries(slices.items.map((s): [string, string[]] => [s.metadata?.labels?.[LABEL_SOURCE_CLUSTER] ?? "", (s.ports ?? []).map((p) => p.name ?? "").sort()]));
    return JSON.stringify(portsBySource) === JSON.stringify({ "cluster-a": ["http"], "cluster-b": ["http", "metrics"] }) ? true : undefined;
  });
});

controller("a type conflict flags both exports; the oldest (Headless) export's type wins", async ({ t }) => {
  await t.exportService("cluster-a", "db", { headless: true });
  await nextSecond();
  await t.exportService("cluster-b", "db");
  for (const name of ["cluster-a", "cluster-b"]) {
    const se = await exportCondition(t, name, "db", "Conflict", "True");
    assert.is(condition(se, "Conflict")?.reason, "TypeConflict");
  }
  const si = await importIn(t, "cluster-c", "db", (o) => o.status?.clusters?.length === 2);
  assert.is(si.spec?.type, "Headless");
  assert.is(si.spec?.ips, undefined, "a Headless import has no ClusterSetIP");
});

controller("a Service fedgate does not own is never modified; the import waits until it is gone", async ({ t }) => {
  const squatter = await t.core("cluster-c").createNamespacedService({
    namespace: NAMESPACE,
    body: { metadata: { name: derivedServiceName("squat"), labels: { team: "someone-else" } }, spec: { ports: [{ port: 1234 }] } },
  });
  await t.exportService("cluster-a", "squat");
  await importIn(t, "cluster-b", "squat", (o) => Boolean(o.spec?.ips?.length));
  await (t.controllers.get("cluster-c") as FederationController).idle();
  const after = await t.core("cluster-c").readNamespacedService({ namespace: NAMESPACE, name: derivedServiceName("squat") });
  assert.is(after.metadata?.resourceVersion, squatter.metadata?.resourceVersion, "the foreign Service was not touched");
  assert.is(await t.read("cluster-c", "serviceimports", "squat"), undefined, "no half-made import next to it");
  assert.equal((await warningsAbout(t, "cluster-c", "Service", derivedServiceName("squat"))).map((e) => e.reason), ["ForeignObject"]);
  await t.core("cluster-c").deleteNamespacedService({ namespace: NAMESPACE, name: derivedServiceName("squat") });
  await importIn(t, "cluster-c", "squat", (o) => Boolean(o.spec?.ips?.length));
});

controller("namespace sameness: an import waits for its namespace, unless the controller may create it", async ({ t }) => {
  await t.core("cluster-a").createNamespace({ body: { metadata: { name: "billing" } } });
  await t.core("cluster-a").createNamespacedService({ namespace: "billing", body: { metadata: { name: "ledger" }, spec: { ports: [{ name: "http", port: 80 }] } } });
  await t.custom("cluster-a").createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace: "billing",
    plural: "serviceexports",
    body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: "ledger" } },
  });
  const readImport = (cluster: string) =>
    t.custom(cluster).getNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: "billing", plural: "serviceimports", name: "ledger" }).then(
      () => true,
      () => undefined,
    );
  await eventually("C to create the namespace and import", () => readImport("cluster-c"));
  const created = await t.core("cluster-c").readNamespace({ name: "billing" });
  assert.is(created.metadata?.labels?.["app.kubernetes.io/managed-by"], "fedgate");
  await (t.controllers.get("cluster-b") as FederationController).idle();
  const missing = await t.core("cluster-b").readNamespace({ name: "billing" }).then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(missing instanceof k8s.ApiException && missing.code === 404, "B does not create namespaces");
  assert.is(await readImport("cluster-b"), undefined);
  await t.core("cluster-b").createNamespace({ body: { metadata: { name: "billing" } } });
  await eventually("B to import once the namespace exists", () => readImport("cluster-b"));
});

controller("an export limited to consumer clusters by its ServiceFederationPolicy is imported only there", async ({ t }) => {
  await t.custom("cluster-a").createNamespacedCustomObject({
    group: "multicluster.fedgate.io",
    version: "v1alpha1",
    namespace: NAMESPACE,
    plural: "servicefederationpolicies",
    body: { apiVersion: "multicluster.fedgate.io/v1alpha1", kind: "ServiceFederationPolicy", metadata: { name: "private" }, spec: { consumers: ["cluster-b"] } },
  });
  await t.exportService("cluster-a", "private");
  await importIn(t, "cluster-b", "private", (o) => Boolean(o.spec?.ips?.length));
  await (t.controllers.get("cluster-c") as FederationController).idle();
  assert.is(await t.read("cluster-c", "serviceimports", "private"), undefined, "C is not a consumer");
  assert.is(t.h.exchanges.get("cluster-c")?.service(NAMESPACE, "private"), undefined);
});

controller("a controller restart deletes, recreates or rewrites nothing", async ({ t }) => {
  const c = t.controllers.get("cluster-c") as FederationController;
  await c.idle();
  // Settle first: earlier changes may still be flowing through the ClusterSet.
  const snapshot = async () => {
    const lists = await Promise.all([
      t.custom("cluster-c").listNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: NAMESPACE, plural: "serviceimports" }) as Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>,
      t.core("cluster-c").listNamespacedService({ namespace: NAMESPACE }),
      t.discovery("cluster-c").listNamespacedEndpointSlice({ namespace: NAMESPACE }),
    ]);
    return lists;
  };
  let before = JSON.stringify((await snapshot()).map((l) => l.metadata?.resourceVersion));
  for (;;) {
    await sleep(500);
    const lists = await snapshot();
    const again = JSON.stringify(lists.map((l) => l.items.map((i) => i.metadata?.resourceVersion)));
    if (again === before) break;
    before = again;
  }
  // Record every change the apiserver makes to these kinds from now on, through the restart.
  const [imports, services, slices] = await snapshot();
  const changes: string[] = [];
  const watch = new k8s.Watch(t.cluster("cluster-c").kubeConfig);
  const record = (kind: string) => (phase: string, obj: k8s.KubernetesObject) => changes.push(`${phase} ${kind} ${obj.metadata?.name}`);
  const requests = await Promise.all([
    watch.watch(`/apis/${MCS_GROUP}/${MCS_VERSION}/namespaces/${NAMESPACE}/serviceimports`, { resourceVersion: imports.metadata?.resourceVersion }, record("ServiceImport"), () => undefined),
    watch.watch(`/api/v1/namespaces/${NAMESPACE}/services`, { resourceVersion: services.metadata?.resourceVersion }, record("Service"), () => undefined),
    watch.watch(`/apis/discovery.k8s.io/v1/namespaces/${NAMESPACE}/endpointslices`, { resourceVersion: slices.metadata?.resourceVersion }, record("EndpointSlice"), () => undefined),
  ]);
  try {
    await t.stopController("cluster-c");
    const restarted = await t.startController("cluster-c", { createNamespaces: true });
    await sleep(500);
    await restarted.idle();
    await sleep(1_000);
    assert.equal(changes, [], "no object was written across the restart");
  } finally {
    for (const r of requests) r.abort();
  }
});

controller("unexporting everywhere removes every derived object in every cluster and leaves nothing on the bus", async ({ t }) => {
  for (const name of ["cluster-a", "cluster-b"]) await t.deleteServiceExport(name, "web");
  for (const name of ["cluster-a", "cluster-b", "cluster-c"]) {
    await eventually(`everything derived from web to leave ${name}`, async () => {
      const si = await t.read(name, "serviceimports", "web");
      const slices = await t.discovery(name).listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: "multicluster.kubernetes.io/service-name=web" });
      const services = await t.core(name).listNamespacedService({ namespace: NAMESPACE, fieldSelector: `metadata.name=${derivedServiceName("web")}` });
      const exported = await t.read(name, "serviceexports", "web");
      return !si && !slices.items.length && !services.items.length && !exported ? true : undefined;
    });
  }
  const keys = await (await t.h.rawKv("admin")).keys();
  const onBus: string[] = [];
  for await (const k of keys) if (k.includes(".web")) onBus.push(k);
  const live = [];
  const kv = await t.h.rawKv("admin");
  for (const k of onBus) if ((await kv.get(k))?.operation === "PUT") live.push(k);
  assert.equal(live, [], "no export of web remains on the bus");
});

controller.run();
