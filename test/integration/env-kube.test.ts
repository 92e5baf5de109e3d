import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import { startClusters, waitFor, type KubeCluster } from "../env/index.ts";

const GROUP = "multicluster.x-k8s.io";
const kube = suite<{ clusters: KubeCluster[] }>("test/env: two real kube-apiservers", { clusters: [] });

kube.before(async (ctx) => {
  ctx.clusters = await startClusters(2);
});
kube.after(async (ctx) => {
  await Promise.all(ctx.clusters.map((c) => c.stop()));
});

kube("serves the project's CRDs in both MCS versions", async ({ clusters }) => {
  for (const cluster of clusters) {
    const api = cluster.kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
    const crd = await api.readCustomResourceDefinition({ name: `serviceexports.${GROUP}` });
    assert.equal(crd.spec.versions.map((v) => v.name).sort(), ["v1alpha1", "v1beta1"]);
  }
});

kube("a custom resource created in one apiserver reaches an informer there and not the other", async ({ clusters }) => {
  const [a, b] = clusters as [KubeCluster, KubeCluster];
  const seen = (cluster: KubeCluster) => {
    const objects = cluster.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    const path = `/apis/${GROUP}/v1alpha1/namespaces/default/serviceexports`;
    const informer = k8s.makeInformer(cluster.kubeConfig, path, () =>
      objects.listNamespacedCustomObject({ group: GROUP, version: "v1alpha1", namespace: "default", plural: "serviceexports" }),
    );
    const names: string[] = [];
    informer.on("add", (obj: k8s.KubernetesObject) => names.push(obj.metadata?.name ?? ""));
    const errors: unknown[] = [];
    informer.on("error", (err: unknown) => errors.push(err));
    return { informer, names, errors };
  };
  const inA = seen(a);
  const inB = seen(b);
  await Promise.all([inA.informer.start(), inB.informer.start()]);
  try {
    await a.kubeConfig.makeApiClient(k8s.CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: "v1alpha1",
      namespace: "default",
      plural: "serviceexports",
      body: { apiVersion: `${GROUP}/v1alpha1`, kind: "ServiceExport", metadata: { name: "checkout" } },
    });
    await waitFor(
      "informer in cluster-a to see the export",
      async () => {
        if (inA.errors.length) throw new Error(`informer failed: ${inA.errors.map(String).join("; ")}`);
        return inA.names.includes("checkout") ? true : undefined;
      },
      { timeoutMs: 10_000 },
    );
    const inBList: unknown = await b.kubeConfig.makeApiClient(k8s.CustomObjectsApi).listNamespacedCustomObject({
      group: GROUP,
      version: "v1alpha1",
      namespace: "default",
      plural: "serviceexports",
    });
    assert.equal((inBList as { items: unknown[] }).items, []);
    assert.equal(inB.names, []);
    assert.equal([...inA.errors, ...inB.errors], [], "informers reported no errors");
  } finally {
    await Promise.all([inA.informer.stop(), inB.informer.stop()]);
  }
});

kube.run();
