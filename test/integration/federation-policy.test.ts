import { suite } from "uvu";
import * as assert from "uvu/assert";
import * as k8s from "@kubernetes/client-node";
import {
  EventRecorder,
  PolicyWatcher,
  POLICY_EVENT_INVALID,
  POLICY_GROUP,
  POLICY_KIND,
  POLICY_PLURAL,
  POLICY_VERSION,
  type ParsedServicePolicy,
  type PolicyObject,
} from "../../federation/index.ts";
import { startCluster, waitFor, type KubeCluster } from "../env/index.ts";

const NS = "shop";
const JUNK_NS = "junk";
const JUNK_COUNT = 1_000;
const WAIT_MS = 60_000;

interface Ctx {
  cluster: KubeCluster;
  watchers: PolicyWatcher[];
  changes: [string, ParsedServicePolicy | undefined][];
}

const policy = suite<Ctx>("ServiceFederationPolicy watcher on a real kube-apiserver", {} as never);

policy.before(async (ctx) => {
  ctx.cluster = await startCluster("policy");
  ctx.watchers = [];
  ctx.changes = [];
  const core = ctx.cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
  for (const name of [NS, JUNK_NS]) await core.createNamespace({ body: { metadata: { name } } });
});
policy.after(async (ctx) => {
  for (const w of ctx.watchers ?? []) await w.close();
  await ctx.cluster?.stop();
});

const custom = (ctx: Ctx) => ctx.cluster.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
const eventsApi = (ctx: Ctx) => ctx.cluster.kubeConfig.makeApiClient(k8s.EventsV1Api);

async function startWatcher(ctx: Ctx): Promise<PolicyWatcher> {
  const watcher = new PolicyWatcher({
    kubeConfig: ctx.cluster.kubeConfig,
    events: new EventRecorder({ kubeConfig: ctx.cluster.kubeConfig, instance: "fedgate-policy-test" }),
    onChange: (key, p) => ctx.changes.push([key, p]),
  });
  ctx.watchers.push(watcher);
  await watcher.start();
  assert.ok(watcher.hasSynced());
  return watcher;
}

async function stopWatcher(ctx: Ctx, watcher: PolicyWatcher): Promise<void> {
  await watcher.close();
  ctx.watchers = ctx.watchers.filter((w) => w !== watcher);
}

const body = (name: string, spec: Record<string, unknown>, namespace = NS) => ({
  apiVersion: `${POLICY_GROUP}/${POLICY_VERSION}`,
  kind: POLICY_KIND,
  metadata: { name, namespace },
  spec,
});

async function create(ctx: Ctx, name: string, spec: Record<string, unknown>, namespace = NS): Promise<PolicyObject> {
  return (await custom(ctx).createNamespacedCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, namespace, plural: POLICY_PLURAL, body: body(name, spec, namespace) })) as PolicyObject;
}

async function replaceSpec(ctx: Ctx, name: string, spec: Record<string, unknown>): Promise<PolicyObject> {
  const current = await read(ctx, name);
  return (await custom(ctx).replaceNamespacedCustomObject({
    group: POLICY_GROUP,
    version: POLICY_VERSION,
    namespace: NS,
    plural: POLICY_PLURAL,
    name,
    body: { ...body(name, spec), metadata: { name, namespace: NS, resourceVersion: current.metadata?.resourceVersion } },
  })) as PolicyObject;
}

async function read(ctx: Ctx, name: string, namespace = NS): Promise<PolicyObject> {
  return (await custom(ctx).getNamespacedCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, namespace, plural: POLICY_PLURAL, name })) as PolicyObject;
}

/** Waits until the object's status reports `Accepted=<status>` for its current generation. */
async function waitAccepted(ctx: Ctx, name: string, status: "True" | "False", namespace = NS): Promise<PolicyObject> {
  return waitFor(
    `${namespace}/${name} Accepted=${status}`,
    async () => {
      const o = await read(ctx, name, namespace);
      const c = o.status?.conditions?.find((x) => x.type === "Accepted");
      const generation = o.metadata?.generation;
      return c?.status === status && c.observedGeneration === generation && o.status?.observedGeneration === generation ? o : undefined;
    },
    { timeoutMs: WAIT_MS },
  );
}

async function eventsFor(ctx: Ctx, name: string, namespace = NS): Promise<k8s.EventsV1Event[]> {
  const list = await eventsApi(ctx).listNamespacedEvent({ namespace });
  return list.items.filter((e) => e.regarding?.name === name && e.regarding.kind === POLICY_KIND);
}

policy("a valid policy is in force and becomes Accepted=True with observedGeneration", async (ctx) => {
  const watcher = await startWatcher(ctx);
  await create(ctx, "checkout", { failover: { clusterOrder: ["cluster-b", "cluster-c"] }, consumers: ["cluster-b"], timeoutMs: 3_000, retries: { attempts: 1, perTryTimeoutMs: 1_000 } });
  const o = await waitAccepted(ctx, "checkout", "True");
  const condition = o.status?.conditions?.[0];
  assert.is(condition?.reason, "Accepted");
  assert.is(o.metadata?.generation, 1);
  assert.equal(watcher.policyFor(NS, "checkout"), {
    policy: { failover: { clusterOrder: ["cluster-b", "cluster-c"] }, timeoutMs: 3_000, retries: { attempts: 1, perTryTimeoutMs: 1_000 } },
    consumers: ["cluster-b"],
  });
  assert.equal(ctx.changes.filter(([k]) => k === `${NS}/checkout`).length, 1, "one change, not one per status write");
  assert.is(o.status?.acceptedGeneration, 1);
  assert.equal(o.status?.acceptedSpec, { failover: { clusterOrder: ["cluster-b", "cluster-c"] }, consumers: ["cluster-b"], timeoutMs: 3_000, retries: { attempts: 1, perTryTimeoutMs: 1_000 } });
  assert.equal([...watcher.policies().keys()], [`${NS}/checkout`]);
  // The status is written with the controller's field manager, on the status subresource only.
  const managers = (o.metadata?.managedFields ?? []).filter((f) => f.subresource === "status").map((f) => f.manager);
  assert.equal(managers, ["fedgate-controller"]);
  assert.equal(await eventsFor(ctx, "checkout"), [], "no Event for a good policy");
  await stopWatcher(ctx, watcher);
});

policy("an object the schema admits but the parser refuses: Accepted=False/Invalid and exactly one Event", async (ctx) => {
  const watcher = await startWatcher(ctx);
  // The CRD cannot see the gateway's default timeout (15 s); the parser can.
  await create(ctx, "payments", { retries: { perTryTimeoutMs: 20_000 } });
  const o = await waitAccepted(ctx, "payments", "False");
  const condition = o.status?.conditions?.[0];
  assert.is(condition?.reason, "Invalid");
  assert.ok(condition?.message.includes("spec.retries.perTryTimeoutMs: 20000 exceeds the default timeoutMs 15000"), condition?.message);
  assert.ok(condition?.message.includes("no policy is in force"), condition?.message);
  assert.is(watcher.policyFor(NS, "payments"), undefined);
  const events = await waitFor("the Event", async () => ((await eventsFor(ctx, "payments")).length ? eventsFor(ctx, "payments") : undefined), { timeoutMs: WAIT_MS });
  assert.is(events.length, 1);
  const [event] = events as [k8s.EventsV1Event];
  assert.is(event.type, "Warning");
  assert.is(event.reason, POLICY_EVENT_INVALID);
  assert.is(event.regarding?.uid, o.metadata?.uid);
  assert.ok(event.note?.includes("perTryTimeoutMs"));
  // A restart relists everything: the status already says it, so no second Event.
  await stopWatcher(ctx, watcher);
  const again = await startWatcher(ctx);
  await again.idle();
  assert.is((await eventsFor(ctx, "payments")).length, 1, "a relist does not emit again");
  await stopWatcher(ctx, again);
});

policy("a malformed update keeps the last good policy in force, across a restart too", async (ctx) => {
  let watcher = await startWatcher(ctx);
  await create(ctx, "cart", { timeoutMs: 3_000, failover: { clusterOrder: ["cluster-c"] } });
  await waitAccepted(ctx, "cart", "True");
  const good = { policy: { timeoutMs: 3_000, failover: { clusterOrder: ["cluster-c"] } } };
  assert.equal(watcher.policyFor(NS, "cart"), good);
  const changesBefore = ctx.changes.length;

  // Admitted by the schema (no intervalMs to compare with), refused against the default 5 s interval.
  await replaceSpec(ctx, "cart", { timeoutMs: 1_000, healthCheck: { timeoutMs: 6_000 } });
  const bad = await waitAccepted(ctx, "cart", "False");
  assert.is(bad.metadata?.generation, 2);
  assert.ok(bad.status?.conditions?.[0]?.message.includes("generation 1 stays in force"), bad.status?.conditions?.[0]?.message);
  assert.equal(watcher.policyFor(NS, "cart"), good, "the last good policy stays");
  assert.is(ctx.changes.length, changesBefore, "no change reported for a refused update");
  assert.is(bad.status?.acceptedGeneration, 1, "the status remembers the generation in force");
  await waitFor("one Event for generation 2", async () => ((await eventsFor(ctx, "cart")).length === 1 ? true : undefined), { timeoutMs: WAIT_MS });

  // A controller restart must not change what is in force: the new watcher finds generation 1 in the status.
  await stopWatcher(ctx, watcher);
  const restarted = await startWatcher(ctx);
  assert.equal(restarted.policyFor(NS, "cart"), good, "the last good policy survives a restart");
  await restarted.idle();
  const after = await read(ctx, "cart");
  assert.is(after.metadata?.resourceVersion, bad.metadata?.resourceVersion, "no status rewrite after the restart");
  assert.is((await eventsFor(ctx, "cart")).length, 1, "no second Event after the restart");
  watcher = restarted;

  await replaceSpec(ctx, "cart", { timeoutMs: 1_000 });
  const fixed = await waitAccepted(ctx, "cart", "True");
  assert.is(fixed.metadata?.generation, 3);
  assert.equal(watcher.policyFor(NS, "cart"), { policy: { timeoutMs: 1_000 } });
  assert.equal(ctx.changes.at(-1), [`${NS}/cart`, { policy: { timeoutMs: 1_000 } }]);

  await custom(ctx).deleteNamespacedCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, namespace: NS, plural: POLICY_PLURAL, name: "cart" });
  await waitFor("the policy to go", async () => (watcher.policyFor(NS, "cart") === undefined ? true : undefined), { timeoutMs: WAIT_MS });
  assert.equal(ctx.changes.at(-1), [`${NS}/cart`, undefined]);
  await stopWatcher(ctx, watcher);
});

policy("repeats of one Event become a series with a count, not new Events", async (ctx) => {
  const recorder = new EventRecorder({ kubeConfig: ctx.cluster.kubeConfig, instance: "fedgate-policy-test" });
  const regarding = await create(ctx, "series", {});
  const event = { regarding, type: "Warning" as const, reason: "InvalidExport", action: "Validate", note: "the same problem" };
  await recorder.record(event);
  await Promise.all([recorder.record(event), recorder.record(event)]);
  await recorder.record({ ...event, note: "another problem" });
  const events = await eventsFor(ctx, "series");
  assert.is(events.length, 2);
  const same = events.find((e) => e.note === "the same problem");
  assert.is(same?.series?.count, 3);
  assert.ok(same?.series?.lastObservedTime);
  assert.is(events.find((e) => e.note === "another problem")?.series, undefined);
});

policy(`with ${JUNK_COUNT} junk policies present a good policy is still applied correctly`, async (ctx) => {
  // Junk the schema admits but the parser refuses, created before the watcher starts.
  const names = Array.from({ length: JUNK_COUNT }, (_, i) => `junk-${i}`);
  for (let i = 0; i < names.length; i += 25) {
    await Promise.all(names.slice(i, i + 25).map((n) => create(ctx, n, { retries: { perTryTimeoutMs: 16_000 + (i % 7) } }, JUNK_NS)));
  }
  const watcher = await startWatcher(ctx);
  await create(ctx, "search", { consumers: ["cluster-a", "cluster-c"], outlierDetection: { consecutive5xx: 2 }, aliases: ["search.shop"] });
  const o = await waitAccepted(ctx, "search", "True");
  assert.is(o.status?.conditions?.[0]?.reason, "Accepted");
  assert.equal(watcher.policyFor(NS, "search"), { policy: { outlierDetection: { consecutive5xx: 2 }, aliases: ["search.shop"] }, consumers: ["cluster-a", "cluster-c"] });
  assert.equal([...watcher.policies().keys()].sort(), [`${NS}/checkout`, `${NS}/search`, `${NS}/series`], "only the good policies are in force");
  await watcher.idle();
  const list = (await custom(ctx).listNamespacedCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, namespace: JUNK_NS, plural: POLICY_PLURAL })) as { items: PolicyObject[] };
  const verdicts = list.items.map((j) => j.status?.conditions?.find((c) => c.type === "Accepted")?.reason);
  assert.is(verdicts.length, JUNK_COUNT);
  assert.equal([...new Set(verdicts)], ["Invalid"], "every junk object is marked Invalid");
  const junkEvents = (await eventsApi(ctx).listNamespacedEvent({ namespace: JUNK_NS })).items.filter((e) => e.reason === POLICY_EVENT_INVALID);
  assert.is(junkEvents.length, JUNK_COUNT, "one Event per junk object");
  await stopWatcher(ctx, watcher);
});

policy.run();
