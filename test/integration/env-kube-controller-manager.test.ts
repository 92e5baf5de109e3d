import { suite } from "uvu";
import * as k8s from "@kubernetes/client-node";
import { startCluster, waitFor, type KubeCluster } from "../env/index.ts";

const kcm = suite<{ cluster?: KubeCluster }>("test/env: a control plane with kube-controller-manager", {});

kcm.before(async (ctx) => {
  ctx.cluster = await startCluster("with-kcm", { controllerManager: true });
});
kcm.after(async (ctx) => {
  await ctx.cluster?.stop();
});

const gone = (read: () => Promise<unknown>) => async () => {
  try {
    await read();
    return undefined;
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) return true;
    throw err;
  }
};

kcm("deleting a namespace removes it and its contents", async ({ cluster }) => {
  const core = (cluster as KubeCluster).kubeConfig.makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: "doomed" } } });
  await core.createNamespacedConfigMap({ namespace: "doomed", body: { metadata: { name: "settings" }, data: { a: "1" } } });
  await core.deleteNamespace({ name: "doomed" });
  await waitFor("namespace doomed to be finalized", gone(() => core.readNamespace({ name: "doomed" })), { timeoutMs: 30_000, intervalMs: 200 });
});

kcm("garbage collection deletes a dependent when its owner goes", async ({ cluster }) => {
  const core = (cluster as KubeCluster).kubeConfig.makeApiClient(k8s.CoreV1Api);
  const owner = await core.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "owner" } } });
  await core.createNamespacedConfigMap({
    namespace: "default",
    body: {
      metadata: {
        name: "dependent",
        ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata?.uid ?? "" }],
      },
    },
  });
  await core.deleteNamespacedConfigMap({ namespace: "default", name: "owner" });
  await waitFor("the dependent to be collected", gone(() => core.readNamespacedConfigMap({ namespace: "default", name: "dependent" })), { timeoutMs: 30_000, intervalMs: 200 });
});

kcm.run();
