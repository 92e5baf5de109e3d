import { readFileSync, readdirSync } from "node:fs";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import { createLogger } from "../../common/index.ts";
import { MCS_GROUP, MCS_VERSION, POLICY_GROUP, POLICY_KIND, POLICY_PLURAL, POLICY_VERSION } from "../../federation/index.ts";
import { ControllerHarness, NAMESPACE, condition, eventually } from "../support/controller-harness.ts";

const RBAC_DIR = new URL("../../manifests/rbac/", import.meta.url);
const CONTROLLER_NAMESPACE = "fedgate-system";
const SERVICE_ACCOUNT = "fedgate-controller";
/** Applied only where the controller runs with createNamespaces: true. */
const CREATE_NAMESPACES = "create-namespaces/create-namespaces.yaml";
const TOKEN_TTL_S = 3_600;
/** A namespace that exists in cluster-a only: cluster-b's controller must create it for the import. */
const NEW_NAMESPACE = "billing";

interface Ctx {
  t: ControllerHarness;
  /** Per cluster, a kubeconfig that authenticates as the controller's ServiceAccount. */
  asController: Map<string, k8s.KubeConfig>;
  /** Every warning or error the controllers logged. */
  logs: string[];
}

const rbac = suite<Ctx>("the controller's RBAC manifests on real kube-apiservers (--authorization-mode=RBAC) and NATS", {} as never);

/** Creates every object in the manifest files, as the cluster admin. */
async function applyManifests(kc: k8s.KubeConfig, files: string[]): Promise<void> {
  const objects = kc.makeApiClient(k8s.KubernetesObjectApi);
  for (const file of files) {
    for (const doc of k8s.loadAllYaml(readFileSync(new URL(file, RBAC_DIR), "utf8")) as k8s.KubernetesObject[]) await objects.create(doc);
  }
}

/** A kubeconfig carrying a token minted for the ServiceAccount with the TokenRequest API, as the kubelet would mount it. */
async function serviceAccountKubeConfig(admin: k8s.KubeConfig): Promise<k8s.KubeConfig> {
  const request = await admin
    .makeApiClient(k8s.CoreV1Api)
    .createNamespacedServiceAccountToken({ namespace: CONTROLLER_NAMESPACE, name: SERVICE_ACCOUNT, body: { spec: { audiences: [], expirationSeconds: TOKEN_TTL_S } } });
  const token = request.status?.token;
  assert.ok(token, "the TokenRequest answered a token");
  const cluster = admin.getCurrentCluster() as k8s.Cluster;
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name: SERVICE_ACCOUNT, token }],
    contexts: [{ name: SERVICE_ACCOUNT, cluster: cluster.name, user: SERVICE_ACCOUNT }],
    currentContext: SERVICE_ACCOUNT,
  });
  return kc;
}

rbac.before(async (ctx) => {
  ctx.t = await ControllerHarness.start({ clusters: 2, leaseTtlMs: 5_000 });
  ctx.asController = new Map();
  ctx.logs = [];
  const logger = createLogger({ level: "warn", write: (line) => ctx.logs.push(line) });
  // In file-name order, as `kubectl apply -f manifests/rbac/` would.
  const files = readdirSync(RBAC_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .sort();
  for (const name of ctx.t.kube.keys()) {
    const admin = ctx.t.cluster(name).kubeConfig;
    // Only cluster-b lets its controller create namespaces, so only it gets the optional binding.
    const createNamespaces = name === "cluster-b";
    await applyManifests(admin, createNamespaces ? [...files, CREATE_NAMESPACES] : files);
    const kc = await serviceAccountKubeConfig(admin);
    ctx.asController.set(name, kc);
    await ctx.t.startController(name, {
      kubeConfig: kc,
      createNamespaces,
      leaderElection: { namespace: CONTROLLER_NAMESPACE, leaseName: "fedgate-controller", identity: `${name}-0` },
      logger,
    });
  }
});
rbac.after(async (ctx) => {
  await ctx.t?.stop();
});

const forbidden = (logs: string[]) => logs.filter((l) => /\b403\b|forbidden/i.test(l));

async function exportIn(t: ControllerHarness, cluster: string, namespace: string, service: string): Promise<void> {
  await t.core(cluster).createNamespacedService({ namespace, body: { metadata: { name: service }, spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] } } });
  await t.discovery(cluster).createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: { name: `${service}-1`, labels: { "kubernetes.io/service-name": service } },
      addressType: "IPv4",
      endpoints: [{ addresses: ["10.1.0.1"], zone: "zone-a", conditions: { ready: true } }],
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    },
  });
  await t.custom(cluster).createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: "serviceexports",
    body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: service } },
  });
}

async function readImport(t: ControllerHarness, cluster: string, namespace: string, name: string): Promise<{ spec?: { ips?: string[] }; status?: { clusters?: { cluster: string }[] } } | undefined> {
  try {
    return (await t.custom(cluster).getNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace, plural: "serviceimports", name })) as { spec?: { ips?: string[] } };
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return undefined;
    throw err;
  }
}

rbac("running as its ServiceAccount, the controller exports, imports, creates a namespace, records Events, writes policy status and holds its Lease, and is refused nothing", async ({ t, logs }) => {
  await exportIn(t, "cluster-a", NAMESPACE, "cart");
  const si = await eventually("cart imported in cluster-b with its ClusterSetIP", async () => {
    const o = await readImport(t, "cluster-b", NAMESPACE, "cart");
    return o?.spec?.ips?.length && o.status?.clusters?.length ? o : undefined;
  });
  assert.equal(si.status?.clusters, [{ cluster: "cluster-a" }]);
  await eventually("cart Ready in cluster-a", async () => (condition(await t.read("cluster-a", "serviceexports", "cart"), "Ready")?.status === "True" ? true : undefined));
  const slices = await t.discovery("cluster-b").listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: "multicluster.kubernetes.io/service-name=cart" });
  assert.is(slices.items.length, 1, "the derived EndpointSlice");

  // Namespace sameness with createNamespaces: cluster-b creates the namespace it lacks.
  await t.core("cluster-a").createNamespace({ body: { metadata: { name: NEW_NAMESPACE } } });
  await exportIn(t, "cluster-a", NEW_NAMESPACE, "invoices");
  await eventually(`invoices imported in cluster-b's new namespace ${NEW_NAMESPACE}`, async () => ((await readImport(t, "cluster-b", NEW_NAMESPACE, "invoices"))?.spec?.ips?.length ? true : undefined));

  // An export without its Service: a condition and an Event, written as the ServiceAccount.
  await t.createServiceExport("cluster-a", "ghost");
  await eventually("ghost Valid=False", async () => (condition(await t.read("cluster-a", "serviceexports", "ghost"), "Valid")?.reason === "NoService" ? true : undefined));
  await eventually("a NoService Event for ghost", async () => {
    const events = await t.cluster("cluster-a").kubeConfig.makeApiClient(k8s.EventsV1Api).listNamespacedEvent({ namespace: NAMESPACE });
    return events.items.some((e) => e.reason === "NoService" && e.regarding?.name === "ghost") ? true : undefined;
  });

  // A ServiceFederationPolicy gets its status.
  await t.custom("cluster-a").createNamespacedCustomObject({
    group: POLICY_GROUP,
    version: POLICY_VERSION,
    namespace: NAMESPACE,
    plural: POLICY_PLURAL,
    body: { apiVersion: `${POLICY_GROUP}/${POLICY_VERSION}`, kind: POLICY_KIND, metadata: { name: "cart" }, spec: { timeoutMs: 3_000 } },
  });
  await eventually("the policy Accepted", async () => {
    const p = (await t.custom("cluster-a").getNamespacedCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, namespace: NAMESPACE, plural: POLICY_PLURAL, name: "cart" })) as { status?: { conditions?: { type: string; status: string }[] } };
    return p.status?.conditions?.some((c) => c.type === "Accepted" && c.status === "True") ? true : undefined;
  });

  // Unexport: the derived objects are deleted.
  await t.deleteServiceExport("cluster-a", "cart");
  await eventually("cart's import gone from cluster-b", async () => ((await readImport(t, "cluster-b", NAMESPACE, "cart")) ? undefined : true));

  for (const name of t.kube.keys()) {
    const lease = await t.cluster(name).kubeConfig.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ namespace: CONTROLLER_NAMESPACE, name: "fedgate-controller" });
    assert.is(lease.spec?.holderIdentity, `${name}-0`);
  }
  assert.equal(forbidden(logs), [], "no request of the controller was forbidden");
});

interface AccessCase {
  name: string;
  attributes: k8s.V1ResourceAttributes;
  allowed: boolean;
  /** Which cluster's ServiceAccount asks (default cluster-a, which may not create namespaces). */
  cluster?: string;
}

const cases: AccessCase[] = [
  { name: "watch ServiceExports", attributes: { verb: "watch", group: MCS_GROUP, resource: "serviceexports" }, allowed: true },
  { name: "patch ServiceExport status", attributes: { verb: "patch", group: MCS_GROUP, resource: "serviceexports", subresource: "status", namespace: NAMESPACE }, allowed: true },
  { name: "create ServiceImports", attributes: { verb: "create", group: MCS_GROUP, resource: "serviceimports", namespace: NAMESPACE }, allowed: true },
  { name: "delete EndpointSlices", attributes: { verb: "delete", group: "discovery.k8s.io", resource: "endpointslices", namespace: NAMESPACE }, allowed: true },
  { name: "update its Lease", attributes: { verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: CONTROLLER_NAMESPACE, name: "fedgate-controller" }, allowed: true },
  { name: "create namespaces, where createNamespaces is on", attributes: { verb: "create", resource: "namespaces" }, allowed: true, cluster: "cluster-b" },
  { name: "read Secrets", attributes: { verb: "get", resource: "secrets", namespace: NAMESPACE }, allowed: false },
  { name: "list Secrets anywhere", attributes: { verb: "list", resource: "secrets" }, allowed: false },
  { name: "list Pods", attributes: { verb: "list", resource: "pods" }, allowed: false },
  { name: "read ConfigMaps", attributes: { verb: "get", resource: "configmaps", namespace: NAMESPACE }, allowed: false },
  { name: "create ServiceExports (users export, not fedgate)", attributes: { verb: "create", group: MCS_GROUP, resource: "serviceexports", namespace: NAMESPACE }, allowed: false },
  { name: "delete ServiceExports", attributes: { verb: "delete", group: MCS_GROUP, resource: "serviceexports", namespace: NAMESPACE }, allowed: false },
  { name: "update Services (only apply, a patch)", attributes: { verb: "update", resource: "services", namespace: NAMESPACE }, allowed: false },
  { name: "change policy specs", attributes: { verb: "patch", group: POLICY_GROUP, resource: POLICY_PLURAL, namespace: NAMESPACE }, allowed: false },
  { name: "create namespaces, where createNamespaces is off", attributes: { verb: "create", resource: "namespaces" }, allowed: false },
  { name: "delete namespaces", attributes: { verb: "delete", resource: "namespaces" }, allowed: false, cluster: "cluster-b" },
  { name: "update another Lease in its namespace", attributes: { verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: CONTROLLER_NAMESPACE, name: "someone-else" }, allowed: false },
  { name: "create Leases in kube-system", attributes: { verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system" }, allowed: false },
  { name: "write ClusterProperties", attributes: { verb: "patch", group: "about.k8s.io", resource: "clusterproperties" }, allowed: false },
  { name: "change its own RBAC", attributes: { verb: "patch", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "fedgate-controller" }, allowed: false },
];

rbac("the ServiceAccount may do exactly what the controller needs: Secrets, Pods, other verbs and other namespaces are refused", async ({ t, asController }) => {
  const problems: string[] = [];
  for (const c of cases) {
    const kc = asController.get(c.cluster ?? "cluster-a") as k8s.KubeConfig;
    const review = await kc.makeApiClient(k8s.AuthorizationV1Api).createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: c.attributes } } });
    if (review.status?.allowed !== c.allowed) problems.push(`${c.name}: allowed=${String(review.status?.allowed)}, expected ${String(c.allowed)}`);
  }
  assert.equal(problems, []);
  // Not only the review: the apiserver refuses the request itself.
  const secrets = await asController
    .get("cluster-a")
    ?.makeApiClient(k8s.CoreV1Api)
    .listSecretForAllNamespaces()
    .then(
      () => "listed",
      (err: unknown) => (err instanceof k8s.ApiException ? err.code : err),
    );
  assert.is(secrets, 403);
  // The admin, asked the same, is allowed: the refusals are the role's, not a broken review.
  const admin = await t.cluster("cluster-a").kubeConfig.makeApiClient(k8s.CoreV1Api).listSecretForAllNamespaces();
  assert.ok(Array.isArray(admin.items));
});

rbac.run();
