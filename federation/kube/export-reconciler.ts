import type * as k8s from "@kubernetes/client-node";
import type { ReconcileResult } from "../../common/index.ts";
import type { Exchange } from "../exchange/exchange.ts";
import type { EndpointAddress } from "../exchange/records.ts";
import type { EventRecorder } from "./event-recorder.ts";
import type { KubeApi } from "./kube-api.ts";
import type { ParsedServicePolicy } from "./service-policy.ts";
import { MCS_GROUP, MCS_VERSION, exportedShape, mergeExports, type ConflictReason } from "./mcs.ts";
import type { ResilientInformer } from "./resilient-informer.ts";

export const EXPORT_FINALIZER = "multicluster.fedgate.io/withdraw-export";

export interface ServiceExportObject extends k8s.KubernetesObject {
  status?: { conditions?: Condition[] };
}

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface ExportReconcilerOptions {
  cluster: string;
  exchange: Exchange;
  api: KubeApi;
  /** This cluster's gateway address that serves its exports to peers. */
  gateway: EndpointAddress;
  events: EventRecorder;
  /** The ServiceFederationPolicy in force for a Service; its `consumers` limit who may import it. */
  policyFor: (namespace: string, name: string) => ParsedServicePolicy | undefined;
  serviceExports: ResilientInformer<ServiceExportObject>;
  services: ResilientInformer<k8s.V1Service>;
  endpointSlices: ResilientInformer<k8s.V1EndpointSlice>;
  /**
   * Runs right before every publish or withdrawal on the bus and throws to
   * refuse it: leader election's fence, as KubeApi's beforeWrite is for the
   * apiserver, so a reconcile still running when the term ends changes nothing.
   */
  beforeBusWrite?: () => void;
}

/**
 * ServiceExport → bus. Level-triggered: reads the export, its Service and
 * EndpointSlices from the caches, publishes (or withdraws) the export record,
 * and writes the Valid/Ready/Conflict conditions only when they change.
 */
export class ExportReconciler {
  private readonly o: ExportReconcilerOptions;
  private readonly fence: () => void;

  constructor(options: ExportReconcilerOptions) {
    this.o = options;
    this.fence = options.beforeBusWrite ?? (() => undefined);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split("/") as [string, string];
    const se = this.o.serviceExports.get(name, namespace);
    if (!se || se.metadata?.deletionTimestamp) {
      await this.withdraw(namespace, name);
      if (se?.metadata?.finalizers?.includes(EXPORT_FINALIZER)) {
        await this.o.api.setFinalizer({ object: se, finalizer: EXPORT_FINALIZER, present: false });
      }
      return;
    }
    if (!se.metadata?.finalizers?.includes(EXPORT_FINALIZER)) {
      await this.o.api.setFinalizer({ object: se, finalizer: EXPORT_FINALIZER, present: true });
    }

    const service = this.o.services.get(name, namespace);
    const generation = se.metadata?.generation;
    if (!service || service.spec?.type === "ExternalName") {
      await this.withdraw(namespace, name);
      const reason = service ? "InvalidServiceType" : "NoService";
      const message = service ? "ExternalName services cannot be exported" : `Service ${namespace}/${name} not found`;
      const changed = await this.writeConditions(se, [
        condition("Valid", "False", reason, message, generation),
        condition("Ready", "False", "Pending", "the export is not valid", generation),
      ]);
      // Once per change of verdict, not per resync: the condition says it in the meantime.
      if (changed) await this.o.events.record({ regarding: { ...se, apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport" }, type: "Warning", reason, action: "Export", note: message });
      return;
    }

    const slices = this.o.endpointSlices.list(namespace).filter((s) => s.metadata?.labels?.["kubernetes.io/service-name"] === name);
    const endpoints = slices.flatMap((s) => (s.endpoints ?? []).map((e) => ({ ready: e.conditions?.ready !== false, ...(e.zone ? { zone: e.zone } : {}) })));
    const shape = exportedShape(
      {
        ...(service.spec?.clusterIP ? { clusterIP: service.spec.clusterIP } : {}),
        ports: (service.spec?.ports ?? []).map((p) => ({ port: p.port, ...(p.name ? { name: p.name } : {}), ...(p.protocol ? { protocol: p.protocol } : {}), ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
        ...(service.spec?.sessionAffinity ? { sessionAffinity: service.spec.sessionAffinity } : {}),
        ...(service.spec?.sessionAffinityConfig?.clientIP?.timeoutSeconds ? { sessionAffinityTimeoutSeconds: service.spec.sessionAffinityConfig.clientIP.timeoutSeconds } : {}),
      },
      endpoints,
    );
    const consumers = this.o.policyFor(namespace, name)?.consumers;
    this.fence();
    await this.o.exchange.publishExport({
      namespace,
      name,
      ...shape,
      ...(consumers ? { consumers } : {}),
      exportCreatedAt: new Date(se.metadata?.creationTimestamp ?? Date.now()).toISOString(),
      gateway: this.o.gateway,
    });

    const merged = mergeExports(this.o.exchange.service(namespace, name)?.exports ?? []);
    const reasons: ConflictReason[] = merged?.conflicts.get(this.o.cluster) ?? [];
    await this.writeConditions(se, [
      condition("Valid", "True", "Valid", "the Service can be exported", generation),
      condition("Ready", "True", "Exported", "the export is published to the ClusterSet", generation),
      reasons.length
        ? condition("Conflict", "True", reasons.join(","), `conflicts with the oldest export of ${namespace}/${name}, which wins`, generation)
        : condition("Conflict", "False", "NoConflicts", "no conflicts", generation),
    ]);
  }

  private async withdraw(namespace: string, name: string): Promise<void> {
    this.fence();
    await this.o.exchange.withdrawExport(namespace, name);
  }

  /** Applies the conditions unless they already say the same (then returns false); keeps lastTransitionTime when the status did not flip. */
  private async writeConditions(se: ServiceExportObject, wanted: Condition[]): Promise<boolean> {
    const current = se.status?.conditions ?? [];
    const merged = wanted.map((w) => {
      const existing = current.find((c) => c.type === w.type);
      return existing && existing.status === w.status ? { ...w, lastTransitionTime: existing.lastTransitionTime } : w;
    });
    const same = merged.length === current.length && merged.every((m) => current.some((c) => c.type === m.type && c.status === m.status && c.reason === m.reason && c.message === m.message && c.observedGeneration === m.observedGeneration));
    if (same) return false;
    await this.o.api.applyMcsStatus({ kind: "ServiceExport", namespace: se.metadata?.namespace ?? "", name: se.metadata?.name ?? "", status: { conditions: merged } });
    return true;
  }
}

function condition(type: string, status: Condition["status"], reason: string, message: string, observedGeneration: number | undefined): Condition {
  return { type, status, reason, message, lastTransitionTime: new Date().toISOString(), ...(observedGeneration !== undefined ? { observedGeneration } : {}) };
}
