import { readFileSync, readdirSync } from "node:fs";
import * as k8s from "@kubernetes/client-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CONTROLLER_V8_FLAGS, GATEWAY_V8_FLAGS } from "../../cli/v8-flags.ts";
import { controllerConfigSchema } from "../../federation/index.ts";
import { parseBootstrap } from "../../gateway/index.ts";
import { startCluster, type KubeCluster } from "../env/index.ts";

/** RBAC first: it creates the namespace and the ServiceAccount the Deployments run as. */
const MANIFEST_DIRS = [new URL("../../manifests/rbac/", import.meta.url), new URL("../../manifests/deploy/", import.meta.url)];
const FIELD_MANAGER = "fedgate-manifest-check";

interface Ctx {
  cluster: KubeCluster;
  objects: k8s.KubernetesObjectApi;
}

function manifests(): k8s.KubernetesObject[] {
  return MANIFEST_DIRS.flatMap((dir) =>
    readdirSync(dir)
      .filter((f) => f.endsWith(".yaml"))
      .sort()
      .flatMap((f) => k8s.loadAllYaml(readFileSync(new URL(f, dir), "utf8")) as k8s.KubernetesObject[]),
  );
}

const find = (kind: string, name: string) => manifests().find((o) => o.kind === kind && o.metadata?.name === name);

const deploy = suite<Ctx>("manifests/rbac and manifests/deploy against a real kube-apiserver", {} as never);

deploy.before(async (ctx) => {
  ctx.cluster = await startCluster("deploy");
  ctx.objects = k8s.KubernetesObjectApi.makeApiClient(ctx.cluster.kubeConfig);
});
deploy.after(async (ctx) => {
  await ctx.cluster?.stop();
});

const dryRunApply = (ctx: Ctx, o: k8s.KubernetesObject) => ctx.objects.patch(o, undefined, "All", FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);

deploy("every object passes a server-side dry-run apply, and none is stored", async (ctx) => {
  const all = manifests();
  const [namespace, ...rest] = all;
  assert.is(namespace?.kind, "Namespace", "the namespace comes first");
  // Admission refuses even a dry run into a namespace that does not exist.
  await ctx.objects.patch(namespace as k8s.KubernetesObject, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
  const kinds: string[] = [];
  for (const o of rest) {
    const applied = await dryRunApply(ctx, o);
    assert.is(applied.metadata?.name, o.metadata?.name);
    kinds.push(`${o.kind}/${o.metadata?.name}`);
  }
  assert.ok(kinds.includes("Deployment/fedgate-controller") && kinds.includes("Deployment/fedgate-gateway") && kinds.includes("Service/fedgate-gateway"), kinds.join(", "));
  const apps = ctx.cluster.kubeConfig.makeApiClient(k8s.AppsV1Api);
  assert.equal((await apps.listNamespacedDeployment({ namespace: "fedgate-system" })).items, [], "a dry run stores nothing");
});

deploy("the controller runs two replicas with leader election, and the gateway Service listens on 15443", () => {
  const controller = find("Deployment", "fedgate-controller") as k8s.V1Deployment;
  assert.is(controller.spec?.replicas, 2);
  const env = controller.spec?.template.spec?.containers[0]?.env ?? [];
  assert.is(env.find((e) => e.name === "POD_NAME")?.valueFrom?.fieldRef?.fieldPath, "metadata.name");
  const service = find("Service", "fedgate-gateway") as k8s.V1Service;
  assert.equal(service.spec?.ports?.map((p) => p.port), [15443]);
});

deploy("each Deployment runs node with the V8 flags the drill and the benches start that process with", () => {
  const command = (name: string) => (find("Deployment", name) as k8s.V1Deployment).spec?.template.spec?.containers[0]?.command ?? [];
  assert.equal(command("fedgate-controller"), ["node", ...CONTROLLER_V8_FLAGS, "/app/dist/cli/entry.js"]);
  assert.equal(command("fedgate-gateway"), ["node", ...GATEWAY_V8_FLAGS, "/app/dist/cli/entry.js"]);
});

deploy("the ConfigMaps hold a controller config and a gateway bootstrap that parse", () => {
  const config = find("ConfigMap", "fedgate-controller") as k8s.V1ConfigMap;
  const parsed = controllerConfigSchema.parse(JSON.parse(config.data?.["controller.json"] ?? ""));
  assert.is(parsed.leaderElection?.leaseName, "fedgate-controller");
  const bootstrap = find("ConfigMap", "fedgate-gateway") as k8s.V1ConfigMap;
  assert.is(parseBootstrap(JSON.parse(bootstrap.data?.["bootstrap.json"] ?? "")).xds_servers[0]?.server_uri, "fedgate-xds.fedgate-system.svc:18000");
});

deploy("the dry run does refuse a broken object", async (ctx) => {
  const controller = find("Deployment", "fedgate-controller") as k8s.V1Deployment;
  const broken = { ...controller, spec: { ...controller.spec, selector: { matchLabels: { app: "other" } } } } as k8s.KubernetesObject;
  try {
    await dryRunApply(ctx, broken);
    assert.unreachable("a selector that does not match the template must be refused");
  } catch (err) {
    assert.instance(err, k8s.ApiException);
    assert.is((err as k8s.ApiException<unknown>).code, 422);
  }
});

deploy.run();
