import * as k8s from "@kubernetes/client-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { MCS_GROUP, MCS_VERSION } from "../../federation/index.ts";
import { DRILL_NAMESPACE, LocalClusterSet, controllerIdentity } from "../../drill/index.ts";
import { waitFor } from "../env/index.ts";

/**
 * `fedgate controller` as the Deployment runs it: two replica processes of
 * one cluster's controller with leader election, from config files.
 */

interface Ctx {
  set: LocalClusterSet;
}

const CLUSTER = "cluster-a";
const replicas = suite<Ctx>("end to end: two fedgate controller processes with leader election", {} as never);

replicas.before(async (ctx) => {
  ctx.set = await LocalClusterSet.start({ clusters: 1, controllerReplicas: 2 });
});
replicas.after(async (ctx) => {
  await ctx.set?.stop();
});

async function exportAndAwaitImport(set: LocalClusterSet, service: string): Promise<void> {
  await set.deployEcho(CLUSTER, service, { replicas: 1, port: 9000 });
  await set.exportService(CLUSTER, service);
  const custom = set.member(CLUSTER).kube.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  await waitFor(
    `the ServiceImport of ${service}`,
    () => custom.getNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: DRILL_NAMESPACE, plural: "serviceimports", name: service }).then(() => true),
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

replicas("one replica takes the Lease and reconciles; on SIGTERM it hands over and the other carries on", async (ctx) => {
  const { set } = ctx;
  const first = await waitFor("a Lease holder", () => set.leaseHolder(CLUSTER).catch(() => undefined), { timeoutMs: 60_000, intervalMs: 200 });
  const ids = [controllerIdentity(CLUSTER, 0), controllerIdentity(CLUSTER, 1)];
  assert.ok(ids.includes(first), first);
  await exportAndAwaitImport(set, "before");

  const leader = ids.indexOf(first);
  assert.is(await set.stopController(CLUSTER, leader), 0, "the leader drains and exits 0 on SIGTERM");
  const next = ids[1 - leader] as string;
  await waitFor(`${next} holding the Lease`, async () => ((await set.leaseHolder(CLUSTER)) === next ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
  await exportAndAwaitImport(set, "after");
});

replicas.run();
