import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import { LABEL_SOURCE_CLUSTER, MCS_GROUP, MCS_VERSION, type FederationController } from "../../federation/index.ts";
import { ControllerHarness, NAMESPACE, condition, eventually } from "../support/controller-harness.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

const LEASE_TTL_MS = 3_000;

const faults = suite<{ t: ControllerHarness }>("federation controller: peers leaving, lapsing, apiserver restarts and junk", {} as never);

faults.before(async (ctx) => {
  ctx.t = await ControllerHarness.start({ clusters: 2, leaseTtlMs: LEASE_TTL_MS });
  for (const name of ctx.t.kube.keys()) await ctx.t.startController(name);
});
faults.after(async (ctx) => {
  await ctx.t?.stop();
});

const importedIn = (t: ControllerHarness, cluster: string, service: string) =>
  eventually(`${service} to be imported in ${cluster}`, async () => ((await t.read(cluster, "serviceimports", service))?.spec?.ips?.length ? true : undefined), 60_000);
const goneFrom = (t: ControllerHarness, cluster: string, service: string) =>
  eventually(`${service}'s import to leave ${cluster}`, async () => {
    const si = await t.read(cluster, "serviceimports", service);
    const slices = await t.discovery(cluster).listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `multicluster.kubernetes.io/service-name=${service}` });
    return !si && !slices.items.length ? true : undefined;
  }, 60_000);

faults("a cluster whose lease lapses is withdrawn from its peers' imports, and restored when it returns", async ({ t }) => {
  await t.exportService("cluster-a", "lapsing");
  await importedIn(t, "cluster-b", "lapsing");
  // A's controller and exchange die without leaving: nobody withdraws anything, the lease just stops.
  await t.stopController("cluster-a");
  await t.h.stopExchange("cluster-a");
  await goneFrom(t, "cluster-b", "lapsing");
  await t.startController("cluster-a");
  await importedIn(t, "cluster-b", "lapsing");
});

faults("a cluster that leaves the ClusterSet is withdrawn at once", async ({ t }) => {
  await t.exportService("cluster-a", "leaving");
  await importedIn(t, "cluster-b", "leaving");
  await t.stopController("cluster-a");
  await t.h.exchanges.get("cluster-a")?.leave();
  await goneFrom(t, "cluster-b", "leaving");
  await goneFrom(t, "cluster-b", "lapsing");
  await t.h.stopExchange("cluster-a");
  await t.startController("cluster-a");
  await importedIn(t, "cluster-b", "leaving");
});

faults("changes made while the controller's watch was cut and its apiserver restarted are not missed", async ({ t }) => {
  await t.exportService("cluster-b", "watched");
  await importedIn(t, "cluster-a", "watched");
  // B's controller reaches its apiserver through a proxy the test can cut.
  const direct = t.cluster("cluster-b");
  const target = new URL(direct.server);
  const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port) });
  try {
    const viaProxy = new k8s.KubeConfig();
    viaProxy.loadFromString(direct.kubeConfig.exportConfig());
    viaProxy.clusters[0] = { ...(viaProxy.clusters[0] as k8s.Cluster), server: `https://127.0.0.1:${proxy.port}` };
    await t.stopController("cluster-b");
    const b = await t.startController("cluster-b", { kubeConfig: viaProxy });
    await b.idle();
    const listsBefore = totalLists(b);

    proxy.partition();
    // A restarted apiserver starts a new watch cache, so resuming from the old resourceVersion gets 410 Gone.
    await direct.restartApiServer();
    await t.setReady("cluster-b", "watched", false);
    await t.exportService("cluster-b", "while-cut");
    proxy.heal();

    await eventually("A to see B's endpoints turn unready", async () => {
      const slices = await t.discovery("cluster-a").listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${LABEL_SOURCE_CLUSTER}=cluster-b,multicluster.kubernetes.io/service-name=watched` });
      return slices.items[0]?.endpoints[0]?.conditions?.ready === false ? true : undefined;
    }, 60_000);
    await importedIn(t, "cluster-a", "while-cut");
    assert.ok(totalLists(b) > listsBefore, "the informers relisted after their watches expired");
  } finally {
    await t.stopController("cluster-b");
    await proxy.close();
    await t.startController("cluster-b");
  }
});

faults("with 1,000 junk ServiceExports present, every one is reported and a good export still flows", async ({ t }) => {
  const junk = Array.from({ length: 1_000 }, (_, i) => (i % 2 ? `junk-${i}` : `junk.dotted.${i}`));
  for (let i = 0; i < junk.length; i += 25) await Promise.all(junk.slice(i, i + 25).map((name) => t.createServiceExport("cluster-a", name)));
  await t.exportService("cluster-a", "good-among-junk");
  await importedIn(t, "cluster-b", "good-among-junk");
  await eventually("every junk export to be Valid=False/NoService", async () => {
    const list = (await t.custom("cluster-a").listNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: NAMESPACE, plural: "serviceexports" })) as { items: Parameters<typeof condition>[0][] };
    const reported = list.items.filter((se) => condition(se, "Valid")?.reason === "NoService").length;
    return reported === junk.length ? true : undefined;
  }, 180_000);
  assert.is(t.h.exchanges.get("cluster-b")?.services().filter((s) => s.name.startsWith("junk")).length, 0, "no junk reached the bus");
});

faults.run();

function totalLists(c: FederationController): number {
  return c.informerStats().reduce((n, s) => n + s.lists, 0);
}
