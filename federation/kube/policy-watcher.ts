import * as k8s from "@kubernetes/client-node";
import { WorkQueue, silentLogger, type Logger, type ReconcileResult } from "../../common/index.ts";
import { canonicalJson } from "../exchange/canonical-json.ts";
import type { EventRecorder } from "./event-recorder.ts";
import type { Condition } from "./export-reconciler.ts";
import { KubeApi } from "./kube-api.ts";
import { ResilientInformer } from "./resilient-informer.ts";
import { PolicyValidationError, POLICY_GROUP, POLICY_KIND, POLICY_PLURAL, POLICY_VERSION, parseServicePolicy, type ParsedServicePolicy } from "./service-policy.ts";

export const POLICY_CONDITION_ACCEPTED = "Accepted";
export const POLICY_REASON_ACCEPTED = "Accepted";
export const POLICY_REASON_INVALID = "Invalid";
/** The Event reason for a policy the controller refused. */
export const POLICY_EVENT_INVALID = "InvalidPolicy";
/** metav1.Condition caps messages at 32 KiB. */
const MAX_CONDITION_MESSAGE = 32_768;

export interface PolicyObject extends k8s.KubernetesObject {
  spec?: unknown;
  status?: { observedGeneration?: number; conditions?: Condition[] };
}

export interface PolicyWatcherOptions {
  kubeConfig: k8s.KubeConfig;
  /** Records an Event for each refused policy generation. */
  events: EventRecorder;
  /** Writes status; defaults to a KubeApi on `kubeConfig` (same field manager either way). */
  api?: KubeApi;
  /** Called when the policy in force for `namespace/name` changes; `undefined` when none is left. */
  onChange?: (key: string, policy: ParsedServicePolicy | undefined) => void;
  workers?: number;
  logger?: Logger;
}

interface InForce {
  uid: string;
  generation: number;
  parsed: ParsedServicePolicy;
  /** Canonical form, to tell a real change from a re-read. */
  json: string;
}

const keyOf = (o: k8s.KubernetesObject) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

/**
 * Watches ServiceFederationPolicies and keeps, per Service, the policy in
 * force: the last one that parsed. A malformed update never replaces it (xDS
 * NACK semantics); it becomes `Accepted=False/Invalid` with every problem in
 * the message, plus one Warning Event per refused generation.
 */
export class PolicyWatcher {
  private readonly o: PolicyWatcherOptions;
  private readonly api: KubeApi;
  private readonly log: Logger;
  private readonly informer: ResilientInformer<PolicyObject>;
  private readonly queue: WorkQueue;
  private readonly inForce = new Map<string, InForce>();
  private synced = false;

  constructor(options: PolicyWatcherOptions) {
    this.o = options;
    this.api = options.api ?? new KubeApi(options.kubeConfig);
    this.log = (options.logger ?? silentLogger).child({ component: "policy-watcher" });
    const custom = options.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.informer = new ResilientInformer<PolicyObject>({
      kubeConfig: options.kubeConfig,
      path: `/apis/${POLICY_GROUP}/${POLICY_VERSION}/${POLICY_PLURAL}`,
      list: async () => (await custom.listClusterCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, plural: POLICY_PLURAL })) as k8s.KubernetesListObject<PolicyObject>,
      onEvent: (o) => this.queue.add(keyOf(o)),
      logger: this.log,
    });
    this.queue = new WorkQueue({ reconcile: (k) => this.reconcile(k), workers: options.workers ?? 4, logger: this.log, paused: true });
  }

  /** Lists, applies every listed policy, then reports status in the background. */
  async start(): Promise<void> {
    await this.informer.start();
    // Policies are known as soon as the cache is: status writes and Events follow through the queue.
    for (const o of this.informer.list()) this.evaluate(keyOf(o), o);
    this.synced = this.informer.hasSynced();
    this.queue.resume();
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** The policy in force for the Service `namespace/name`, if any. */
  policyFor(namespace: string, name: string): ParsedServicePolicy | undefined {
    return this.inForce.get(`${namespace}/${name}`)?.parsed;
  }

  /** Every policy in force, keyed `namespace/name` (the xDS snapshot's `policies`). */
  policies(): Map<string, ParsedServicePolicy> {
    return new Map([...this.inForce].map(([k, v]) => [k, v.parsed]));
  }

  /** Resolves when every queued policy has been reported (for tests and orderly shutdown). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  async close(): Promise<void> {
    await this.queue.shutDown();
    await this.informer.stop();
  }

  private async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split("/") as [string, string];
    const object = this.informer.get(name, namespace);
    const verdict = this.evaluate(key, object);
    if (!object || !verdict) return;
    const generation = object.metadata?.generation ?? 0;
    const desired = verdict.ok
      ? { status: "True" as const, reason: POLICY_REASON_ACCEPTED, message: "The policy is in force." }
      : { status: "False" as const, reason: POLICY_REASON_INVALID, message: verdict.message };
    const current = object.status?.conditions?.find((c) => c.type === POLICY_CONDITION_ACCEPTED);
    const unchanged = current?.status === desired.status && current.reason === desired.reason && current.message === desired.message;
    if (unchanged && current?.observedGeneration === generation && object.status?.observedGeneration === generation) return;
    const condition: Condition = {
      type: POLICY_CONDITION_ACCEPTED,
      ...desired,
      observedGeneration: generation,
      lastTransitionTime: current?.status === desired.status ? current.lastTransitionTime : new Date().toISOString(),
    };
    await this.api.applyStatus({ group: POLICY_GROUP, version: POLICY_VERSION, plural: POLICY_PLURAL, kind: POLICY_KIND, namespace, name, status: { observedGeneration: generation, conditions: [condition] } });
    // The status write is the memory of what was reported: a resync or a restart finds it current and stays quiet.
    if (!verdict.ok && !unchanged) await this.o.events.record({ regarding: object, type: "Warning", reason: POLICY_EVENT_INVALID, action: "Validate", note: verdict.message });
  }

  /** Parses `object` and updates the policy in force; undefined when the object is gone. */
  private evaluate(key: string, object: PolicyObject | undefined): { ok: true } | { ok: false; message: string } | undefined {
    const previous = this.inForce.get(key);
    const uid = object?.metadata?.uid ?? "";
    if (!object || (previous && previous.uid !== uid)) {
      // Deleted, or deleted and recreated: the old object's policy no longer applies.
      this.inForce.delete(key);
      if (previous && !object) this.o.onChange?.(key, undefined);
      if (!object) return undefined;
    }
    const kept = this.inForce.get(key);
    let parsed: ParsedServicePolicy;
    try {
      parsed = parseServicePolicy(object);
    } catch (err) {
      if (!(err instanceof PolicyValidationError)) throw err;
      if (previous && !kept) this.o.onChange?.(key, undefined);
      const fallback = kept ? `generation ${kept.generation} stays in force` : "no policy is in force (gateway defaults apply)";
      return { ok: false, message: `${err.message}; ${fallback}`.slice(0, MAX_CONDITION_MESSAGE) };
    }
    const json = canonicalJson(parsed);
    this.inForce.set(key, { uid, generation: object.metadata?.generation ?? 0, parsed, json });
    if (kept?.json !== json) this.o.onChange?.(key, parsed);
    return { ok: true };
  }
}
