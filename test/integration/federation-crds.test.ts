import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import { startCluster, type KubeCluster } from "../env/index.ts";

const MCS = "multicluster.x-k8s.io";
const NS = "default";

const crds = suite<{ cluster: KubeCluster | undefined }>("manifests/crds on a real kube-apiserver", { cluster: undefined });

crds.before(async (ctx) => {
  ctx.cluster = await startCluster("crds");
});
crds.after(async (ctx) => {
  await ctx.cluster?.stop();
});

const custom = (ctx: { cluster: KubeCluster | undefined }) => ctx.cluster!.kubeConfig.makeApiClient(k8s.CustomObjectsApi);

interface Obj {
  metadata: { name: string; namespace?: string; generation?: number; resourceVersion?: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

crds("MCS kinds serve v1alpha1 and v1beta1 with one schema, v1beta1 stored, conversion None", async (ctx) => {
  const api = ctx.cluster!.kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
  for (const plural of ["serviceexports", "serviceimports"]) {
    const crd = await api.readCustomResourceDefinition({ name: `${plural}.${MCS}` });
    assert.is(crd.spec.conversion?.strategy, "None", plural);
    assert.equal(crd.spec.versions.map((v) => [v.name, v.served, v.storage]), [["v1alpha1", true, false], ["v1beta1", true, true]], plural);
    // Without a conversion webhook the apiserver only relabels apiVersion: identical schemas make that lossless.
    const [alpha, beta] = crd.spec.versions.map((v) => JSON.stringify(v.schema)) as [string, string];
    assert.ok(alpha.length > 1_000, `${plural} has a real schema`);
    assert.is(alpha, beta, `${plural}: v1alpha1 and v1beta1 schemas are identical`);
    assert.equal(crd.status?.storedVersions, ["v1beta1"]);
  }
});

const roundTrips: { name: string; plural: string; kind: string; write: string; read: string; spec: Record<string, unknown>; status: Record<string, unknown> }[] = [
  {
    name: "ServiceExport written as v1beta1 reads back as v1alpha1 with exportedLabels/Annotations",
    plural: "serviceexports",
    kind: "ServiceExport",
    write: "v1beta1",
    read: "v1alpha1",
    spec: { exportedLabels: { tier: "web" }, exportedAnnotations: { "example.com/owner": "team-a" } },
    status: { conditions: [{ type: "Valid", status: "True", reason: "Valid", message: "ok", lastTransitionTime: "2026-11-25T10:00:00Z", observedGeneration: 1 }] },
  },
  {
    name: "ServiceExport written as v1alpha1 reads back as v1beta1",
    plural: "serviceexports",
    kind: "ServiceExport",
    write: "v1alpha1",
    read: "v1beta1",
    spec: { exportedLabels: { tier: "db" } },
    status: { conditions: [{ type: "Conflict", status: "True", reason: "PortConflict,TypeConflict", message: "two", lastTransitionTime: "2026-11-25T10:00:00Z" }] },
  },
  {
    name: "ServiceImport written as v1alpha1 reads back as v1beta1 with every field",
    plural: "serviceimports",
    kind: "ServiceImport",
    write: "v1alpha1",
    read: "v1beta1",
    spec: {
      type: "ClusterSetIP",
      ports: [{ name: "http", protocol: "TCP", port: 80, appProtocol: "http" }, { name: "dns", protocol: "UDP", port: 53 }],
      ips: ["10.96.0.10", "fd00::10"],
      ipFamilies: ["IPv4", "IPv6"],
      sessionAffinity: "ClientIP",
      sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
      internalTrafficPolicy: "Cluster",
      trafficDistribution: "PreferClose",
    },
    status: { clusters: [{ cluster: "cluster-a" }, { cluster: "cluster-b" }], endpointSliceObjects: "Present" },
  },
  {
    name: "ServiceImport written as v1beta1 reads back as v1alpha1",
    plural: "serviceimports",
    kind: "ServiceImport",
    write: "v1beta1",
    read: "v1alpha1",
    spec: { type: "Headless", ports: [{ name: "grpc", protocol: "TCP", port: 9090 }], sessionAffinity: "None" },
    status: { clusters: [{ cluster: "cluster-c" }], conditions: [{ type: "Ready", status: "True", reason: "Ready", message: "", lastTransitionTime: "2026-11-25T10:00:00Z" }] },
  },
];

for (const [i, c] of roundTrips.entries()) {
  crds(c.name, async (ctx) => {
    const api = custom(ctx);
    const name = `round-trip-${i}`;
    const body = { apiVersion: `${MCS}/${c.write}`, kind: c.kind, metadata: { name }, spec: c.spec };
    await api.createNamespacedCustomObject({ group: MCS, version: c.write, namespace: NS, plural: c.plural, body });
    await api.patchNamespacedCustomObjectStatus(
      { group: MCS, version: c.write, namespace: NS, plural: c.plural, name, body: { apiVersion: `${MCS}/${c.write}`, kind: c.kind, metadata: { name }, status: c.status }, fieldManager: "round-trip-test", force: true },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.ServerSideApply),
    );
    const read = (await api.getNamespacedCustomObject({ group: MCS, version: c.read, namespace: NS, plural: c.plural, name })) as Obj & { apiVersion: string };
    assert.is(read.apiVersion, `${MCS}/${c.read}`);
    assert.equal(read.spec, c.spec);
    assert.equal(read.status, c.status);
    // And back: an update through the other version keeps every field.
    await api.patchNamespacedCustomObject(
      { group: MCS, version: c.read, namespace: NS, plural: c.plural, name, body: { metadata: { labels: { touched: "yes" } } } },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    const again = (await api.getNamespacedCustomObject({ group: MCS, version: c.write, namespace: NS, plural: c.plural, name })) as Obj;
    assert.equal(again.spec, c.spec);
    assert.equal(again.status, c.status);
  });
}

interface Rejection {
  name: string;
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  metadataName?: string;
  spec: unknown;
  /** Substrings the apiserver's message must contain. */
  expect: string[];
}

const imp = (spec: Record<string, unknown>, name: string, expect: string[]): Rejection => ({
  name,
  group: MCS,
  version: "v1beta1",
  plural: "serviceimports",
  kind: "ServiceImport",
  namespaced: true,
  spec: { type: "ClusterSetIP", ports: [{ port: 80 }], ...spec },
  expect,
});
const prop = (metadataName: string, value: unknown, name: string, expect: string[]): Rejection => ({
  name,
  group: "about.k8s.io",
  version: "v1alpha1",
  plural: "clusterproperties",
  kind: "ClusterProperty",
  namespaced: false,
  metadataName,
  spec: { value },
  expect,
});
const pol = (spec: Record<string, unknown>, name: string, expect: string[], metadataName?: string): Rejection => ({
  name,
  group: "multicluster.fedgate.io",
  version: "v1alpha1",
  plural: "servicefederationpolicies",
  kind: "ServiceFederationPolicy",
  namespaced: true,
  ...(metadataName ? { metadataName } : {}),
  spec,
  expect,
});

const rejections: Rejection[] = [
  imp({ type: "LoadBalancer" }, "ServiceImport type outside ClusterSetIP|Headless", ["spec.type", 'Unsupported value: "LoadBalancer"', '"ClusterSetIP"', '"Headless"']),
  imp({ ips: ["10.0.0.1", "fd00::1", "10.0.0.2"] }, "ServiceImport with 3 ips", ["spec.ips", "must have at most 2 items"]),
  imp({ ips: ["10.0.0.1", "10.0.0.2"] }, "ServiceImport with two IPv4 ips", ["spec.ips", "at most one address per IP family"]),
  imp({ ips: ["not-an-ip"] }, "ServiceImport ip that is not an address", ["spec.ips", "must hold IP addresses"]),
  imp({ ports: [{ port: 0 }] }, "ServiceImport port 0", ["spec.ports[0].port", "should be greater than or equal to 1"]),
  imp({ ports: [{ port: 80, protocol: "HTTP" }] }, "ServiceImport port protocol HTTP", ["spec.ports[0].protocol", 'Unsupported value: "HTTP"']),
  imp({ ports: undefined }, "ServiceImport without ports", ["spec.ports", "Required value"]),
  imp({ sessionAffinity: "Cookie" }, "ServiceImport sessionAffinity outside ClientIP|None", ["spec.sessionAffinity", 'Unsupported value: "Cookie"']),
  imp({ sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } } }, "ServiceImport affinity timeout over a day", ["timeoutSeconds", "should be less than or equal to 86400"]),
  imp({ ipFamilies: ["IPv4", "IPv4"] }, "ServiceImport repeating an IP family", ["spec.ipFamilies", "must not repeat a family"]),
  prop("cluster.clusterset.k8s.io", "Not_A_DNS_Name", "cluster ID that is not a DNS subdomain", ["spec.value", "must be a lowercase RFC-1123 DNS subdomain"]),
  prop("clusterset.k8s.io", "x".repeat(129), "ClusterSet name over 128 characters", ["spec.value", "at most 128 characters"]),
  prop("anything.example.com", "", "an empty ClusterProperty value", ["spec.value", "should be at least 1 chars long"]),
  pol({ failover: { clusterOrder: ["cluster-b", "cluster-c", "cluster-b"] } }, "policy with a duplicate in clusterOrder", ["spec.failover.clusterOrder", "clusterOrder must not contain duplicates"]),
  pol({ timeoutMs: -1 }, "policy with a negative timeout", ["spec.timeoutMs", "should be greater than or equal to 0"]),
  pol({ timeoutMs: 1_000, retries: { perTryTimeoutMs: 2_000 } }, "policy with perTryTimeoutMs over timeoutMs", ["spec.retries.perTryTimeoutMs", "must not exceed timeoutMs"]),
  pol({ healthCheck: { intervalMs: 1_000, timeoutMs: 2_000 } }, "policy whose health check timeout exceeds its interval", ["spec.healthCheck.timeoutMs", "must not exceed healthCheck.intervalMs"]),
  pol({ healthCheck: { http: { path: "/healthz", expectedStatuses: [{ start: 300, end: 200 }] } } }, "policy whose HTTP health check status range ends before it starts", ["spec.healthCheck.http.expectedStatuses[0].end", "start must be below end"]),
  pol({ healthCheck: { http: { path: "healthz" } } }, "policy whose HTTP health check path is not absolute", ["spec.healthCheck.http.path", "should match"]),
  pol({ failover: { labels: ["rack"] } }, "policy with an unknown locality label", ["spec.failover.labels[0]", 'Unsupported value: "rack"']),
  pol({ consumers: ["Cluster_B"] }, "policy with a consumer that is not a cluster name", ["spec.consumers[0]", "should match"]),
  pol({ retries: { attempts: 11 }, outlierDetection: { maxEjectionPercent: 101 } }, "policy with two out-of-range fields reports both", ["spec.retries.attempts", "spec.outlierDetection.maxEjectionPercent"]),
  pol({}, "policy not named after a Service", ["must be the name of a Service"], "9lives"),
];

for (const r of rejections) {
  crds(`rejects ${r.name}`, async (ctx) => {
    const api = custom(ctx);
    const body = { apiVersion: `${r.group}/${r.version}`, kind: r.kind, metadata: { name: r.metadataName ?? "bad" }, spec: r.spec };
    try {
      if (r.namespaced) await api.createNamespacedCustomObject({ group: r.group, version: r.version, namespace: NS, plural: r.plural, body });
      else await api.createClusterCustomObject({ group: r.group, version: r.version, plural: r.plural, body });
    } catch (err) {
      assert.instance(err, k8s.ApiException);
      const e = err as k8s.ApiException<string>;
      assert.is(e.code, 422, String(e.body));
      const message = (JSON.parse(e.body) as { message: string }).message;
      for (const part of r.expect) assert.ok(message.includes(part), `"${message}" mentions "${part}"`);
      return;
    }
    assert.unreachable("the apiserver accepted the object");
  });
}

crds("ClusterProperty: cluster ID and ClusterSet are accepted, and the cluster ID is immutable", async (ctx) => {
  const api = custom(ctx);
  const group = "about.k8s.io";
  const create = (name: string, value: string) =>
    api.createClusterCustomObject({ group, version: "v1alpha1", plural: "clusterproperties", body: { apiVersion: `${group}/v1alpha1`, kind: "ClusterProperty", metadata: { name }, spec: { value } } });
  await create("cluster.clusterset.k8s.io", "cluster-a");
  await create("clusterset.k8s.io", "prod.clusterset.example");
  // Other properties are free-form.
  await create("region.example.com", "Europe West (Paris) — \u00e9t\u00e9");
  const setValue = (name: string, value: string) =>
    api.patchClusterCustomObject({ group, version: "v1alpha1", plural: "clusterproperties", name, body: { spec: { value } } }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
  await setValue("clusterset.k8s.io", "staging.clusterset.example");
  try {
    await setValue("cluster.clusterset.k8s.io", "cluster-z");
    assert.unreachable("the cluster ID changed");
  } catch (err) {
    assert.instance(err, k8s.ApiException);
    const e = err as k8s.ApiException<string>;
    assert.is(e.code, 422);
    assert.ok(e.body.includes("cluster.clusterset.k8s.io is immutable"), e.body);
  }
  const id = (await api.getClusterCustomObject({ group, version: "v1alpha1", plural: "clusterproperties", name: "cluster.clusterset.k8s.io" })) as Obj;
  assert.equal(id.spec, { value: "cluster-a" });
});

crds("the apiserver rejects a malformed ServiceExport condition on the status subresource", async (ctx) => {
  const api = custom(ctx);
  const body = { apiVersion: `${MCS}/v1alpha1`, kind: "ServiceExport", metadata: { name: "cond" } };
  await api.createNamespacedCustomObject({ group: MCS, version: "v1alpha1", namespace: NS, plural: "serviceexports", body });
  try {
    await api.patchNamespacedCustomObjectStatus(
      {
        group: MCS,
        version: "v1alpha1",
        namespace: NS,
        plural: "serviceexports",
        name: "cond",
        body: { ...body, status: { conditions: [{ type: "Valid", status: "Maybe", reason: "has space", message: "", lastTransitionTime: "2026-11-25T10:00:00Z" }] } },
        fieldManager: "test",
        force: true,
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.ServerSideApply),
    );
    assert.unreachable("accepted a malformed condition");
  } catch (err) {
    assert.instance(err, k8s.ApiException);
    const e = err as k8s.ApiException<string>;
    assert.is(e.code, 422);
    const message = (JSON.parse(e.body) as { message: string }).message;
    for (const part of ["status.conditions[0].status", 'Unsupported value: "Maybe"', "status.conditions[0].reason"]) assert.ok(message.includes(part), `"${message}" mentions ${part}`);
  }
});

crds.run();
