import * as k8s from "@kubernetes/client-node";
import { WorkQueue, silentLogger, type Logger, type ReconcileResult } from "../../common/index.ts";
import { canonicalJson } from "../exchange/canonical-json.ts";
import type { EventRecorder } from "./event-recorder.ts";
import type { Condition } from "./export-reconciler.ts";
import { KubeApi } from "./kube-api.ts";
import { ResilientInformer } from "./resilient-informer.ts";
import { PolicyValidationError, POLICY_GROUP, POLICY_KIND, POLICY_PLURAL, POLICY_VERSION, parseServicePolicy, servicePolicySpec, type ParsedServicePolicy } from "./service-policy.ts";

export const POLICY_CONDITION_ACCEPTED = "Accepted";
export const POLICY_REASON_ACCEPTED = "Accepted";
export const POLICY_REASON_INVALID = "Invalid";
/** The Event reason for a policy the controller refused. */
export const POLICY_EVENT_INVALID = "InvalidPolicy";
/** metav1.Condition caps messages at 32 KiB. */
const MAX_CONDITION_MESSAGE = 32_768;

export interface PolicyStatus {
  observedGeneration?: number;
  /** The generation in force, and its spec: what survives a restart while a newer generation is refused. */
  acceptedGeneration?: number;
  acceptedSpec?: unknown;
  conditions?: Condition[];
}

export interface PolicyObject extends k8s.KubernetesObject {
  spec?: unknown;
  status?: PolicyStatus;
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

interface Verdict {
  /** The policy in force after this judgement: this generation's, or the last accepted one's. */
  inForce?: InForce | undefined;
  /** Why this generation was refused; undefined when it was accepted. */
  refusal?: string;
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
    this.api = options.api ?? new KubeApi({ kubeConfig: options.kubeConfig });
    this.log = (options.logger ?? silentLogger).child({ component: "policy-watcher" });
    const custom = options.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.informer = new ResilientInformer<PolicyObject>({
      kubeConfig: options.kubeConfig,
      path: `/apis/${POLICY_GROUP}/${POLICY_VERSION}/${POLICY_PLURAL}`,
      list: async () => (await custom.listClusterCustomObject({ group: POLICY_GROUP, version: POLICY_VERSION, plural: POLICY_PLURAL })) as k8s.KubernetesListObject<PolicyObject>,
      // Judged at once, so the policy in force is current even while reporting is paused (a follower replica).
      onEvent: (o) => {
        const key = keyOf(o);
        this.evaluate(key, this.informer.get(o.metadata?.name ?? "", o.metadata?.namespace));
        this.queue.add(key);
      },
      logger: this.log,
    });
    this.queue = new WorkQueue({ reconcile: (k) => this.reconcile(k), workers: options.workers ?? 4, logger: this.log, paused: true });
  }

  /** Lists, applies every listed policy, then reports status in the background unless `report` is false. */
  async start(options: { report?: boolean } = {}): Promise<void> {
    await this.informer.start();
    // Policies are known as soon as the cache is: status writes and Events follow through the queue.
    for (const o of this.informer.list()) this.evaluate(keyOf(o), o);
    this.synced = this.informer.hasSynced();
    if (options.report ?? true) this.queue.resume();
  }

  /** Starts or stops writing status and Events (only a leader reports); policies stay judged either way. */
  setReporting(report: boolean): void {
    if (report) this.queue.resume();
    else this.queue.pause();
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
    const accepted = verdict.inForce;
    const desired =
      verdict.refusal === undefined
        ? { status: "True" as const, reason: POLICY_REASON_ACCEPTED, message: "The policy is in force." }
        : { status: "False" as const, reason: POLICY_REASON_INVALID, message: verdict.refusal };
    const current = object.status?.conditions?.find((c) => c.type === POLICY_CONDITION_ACCEPTED);
    const sameCondition = current?.status === desired.status && current.reason === desired.reason && current.message === desired.message;
    const sameStatus = current?.observedGeneration === generation && object.status?.observedGeneration === generation && object.status.acceptedGeneration === accepted?.generation;
    if (sameCondition && sameStatus) return;
    const condition: Condition = {
      type: POLICY_CONDITION_ACCEPTED,
      ...desired,
      observedGeneration: generation,
      lastTransitionTime: current?.status === desired.status ? current.lastTransitionTime : new Date().toISOString(),
    };
    const status: PolicyStatus = {
      observedGeneration: generation,
      ...(accepted ? { acceptedGeneration: accepted.generation, acceptedSpec: servicePolicySpec(accepted.parsed) } : {}),
      conditions: [condition],
    };
    await this.api.applyStatus({ group: POLICY_GROUP, version: POLICY_VERSION, plural: POLICY_PLURAL, kind: POLICY_KIND, namespace, name, status });
    // The status is the memory of what was reported: a relist or a restart finds it current and stays quiet.
    if (verdict.refusal !== undefined && !sameCondition) {
      await this.o.events.record({ regarding: object, type: "Warning", reason: POLICY_EVENT_INVALID, action: "Validate", note: verdict.refusal });
    }
  }

  /** Judges `object`, updates the policy in force and reports a change; undefined when the object is gone. */
  private evaluate(key: string, object: PolicyObject | undefined): Verdict | undefined {
    const before = this.inForce.get(key);
    const verdict = object ? this.judge(object, before) : undefined;
    const after = verdict?.inForce;
    if (after) this.inForce.set(key, after);
    else this.inForce.delete(key);
    if (before?.json !== after?.json) this.o.onChange?.(key, after?.parsed);
    return verdict;
  }

  private judge(object: PolicyObject, before: InForce | undefined): Verdict {
    const uid = object.metadata?.uid ?? "";
    try {
      return { inForce: inForce(uid, object.metadata?.generation ?? 0, parseServicePolicy(object)) };
    } catch (err) {
      if (!(err instanceof PolicyValidationError)) throw err;
      // A recreated object starts afresh; after a restart, the status remembers what was accepted.
      const kept = before?.uid === uid ? before : this.acceptedInStatus(object, uid);
      const fallback = kept ? `generation ${kept.generation} stays in force` : "no policy is in force (gateway defaults apply)";
      return { inForce: kept, refusal: `${err.message}; ${fallback}`.slice(0, MAX_CONDITION_MESSAGE) };
    }
  }

  private acceptedInStatus(object: PolicyObject, uid: string): InForce | undefined {
    const { acceptedGeneration, acceptedSpec } = object.status ?? {};
    if (acceptedGeneration === undefined || acceptedSpec === undefined) return undefined;
    try {
      return inForce(uid, acceptedGeneration, parseServicePolicy({ metadata: object.metadata, spec: acceptedSpec }));
    } catch (err) {
      if (!(err instanceof PolicyValidationError)) throw err;
      this.log.warn("the accepted spec in status no longer parses", { key: keyOf(object), err });
      return undefined;
    }
  }
}

function inForce(uid: string, generation: number, parsed: ParsedServicePolicy): InForce {
  return { uid, generation, parsed, json: canonicalJson(parsed) };
}
