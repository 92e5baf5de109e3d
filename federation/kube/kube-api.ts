import * as k8s from "@kubernetes/client-node";
import { FedgateError } from "../../common/index.ts";
import { MCS_GROUP, MCS_VERSION } from "./mcs.ts";

export const FIELD_MANAGER = "fedgate-controller";

/** A failed call to the Kubernetes API; retryable unless the server rejected the request as invalid. */
export class KubeApiError extends FedgateError {
  readonly status: number | undefined;
  constructor(action: string, cause: unknown) {
    const status = cause instanceof k8s.ApiException ? cause.code : undefined;
    super("FEDGATE_KUBE_API", `${action} failed${status ? ` (HTTP ${status})` : ""}`, { cause, retryable: status === undefined || status >= 500 || status === 409 || status === 429 });
    this.status = status;
  }
}

const ssa = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.ServerSideApply);

export interface KubeApiOptions {
  kubeConfig: k8s.KubeConfig;
  /** Runs right before every write and throws to refuse it: leader election's fence, so a replica whose term ended writes nothing. */
  beforeWrite?: () => void;
}

/**
 * The few writes the controller makes, all server-side apply with one field
 * manager, so re-applying an unchanged object is a no-op on the server and
 * fields other managers own are left alone.
 */
export class KubeApi {
  private readonly objects: k8s.KubernetesObjectApi;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly beforeWrite: () => void;
  private sent = 0;
  private refused = 0;

  constructor(options: KubeApiOptions) {
    this.objects = k8s.KubernetesObjectApi.makeApiClient(options.kubeConfig);
    this.custom = options.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.beforeWrite = options.beforeWrite ?? (() => undefined);
  }

  /** Writes sent to the apiserver so far, and writes `beforeWrite` refused. */
  get writes(): { sent: number; refused: number } {
    return { sent: this.sent, refused: this.refused };
  }

  async apply<T extends k8s.KubernetesObject>(object: T): Promise<T> {
    this.fence();
    try {
      return await this.objects.patch(object, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
    } catch (err) {
      throw new KubeApiError(`apply ${object.kind} ${object.metadata?.namespace}/${object.metadata?.name}`, err);
    }
  }

  /** Applies `status` to an MCS object's status subresource. */
  async applyMcsStatus(options: { kind: "ServiceExport" | "ServiceImport"; namespace: string; name: string; status: object }): Promise<void> {
    const plural = options.kind === "ServiceExport" ? "serviceexports" : "serviceimports";
    this.fence();
    try {
      await this.custom.patchNamespacedCustomObjectStatus(
        {
          group: MCS_GROUP,
          version: MCS_VERSION,
          namespace: options.namespace,
          plural,
          name: options.name,
          body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: options.kind, metadata: { name: options.name, namespace: options.namespace }, status: options.status },
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        ssa,
      );
    } catch (err) {
      throw new KubeApiError(`apply status of ${options.kind} ${options.namespace}/${options.name}`, err);
    }
  }

  /** Deletes an object; already gone is success. */
  async delete(object: { apiVersion: string; kind: string; metadata: { name: string; namespace: string } }): Promise<void> {
    this.fence();
    try {
      await this.objects.delete(object);
    } catch (err) {
      if (err instanceof k8s.ApiException && err.code === 404) return;
      throw new KubeApiError(`delete ${object.kind} ${object.metadata.namespace}/${object.metadata.name}`, err);
    }
  }

  /** Sets metadata.finalizers through this manager's apply (only our own finalizer is owned by us). */
  async setFinalizer(options: { kind: "ServiceExport"; namespace: string; name: string; finalizer: string; present: boolean }): Promise<void> {
    await this.apply({
      apiVersion: `${MCS_GROUP}/${MCS_VERSION}`,
      kind: options.kind,
      metadata: { name: options.name, namespace: options.namespace, finalizers: options.present ? [options.finalizer] : [] },
    });
  }

  private fence(): void {
    try {
      this.beforeWrite();
    } catch (err) {
      this.refused++;
      throw err;
    }
    this.sent++;
  }
}
