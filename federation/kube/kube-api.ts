import * as k8s from "@kubernetes/client-node";
import { FedgateError } from "../../common/index.ts";
import { LastApplied, bodyDigest } from "./last-applied.ts";
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
 * fields other managers own are left alone; a re-apply the cache shows to be
 * a no-op is not even sent (see LastApplied).
 */
export class KubeApi {
  private readonly objects: k8s.KubernetesObjectApi;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly beforeWrite: () => void;
  private readonly lastApplied = new LastApplied();
  private sent = 0;
  private refused = 0;
  private skipped = 0;

  constructor(options: KubeApiOptions) {
    this.objects = k8s.KubernetesObjectApi.makeApiClient(options.kubeConfig);
    this.custom = options.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.beforeWrite = options.beforeWrite ?? (() => undefined);
  }

  /** Writes sent to the apiserver so far, and writes `beforeWrite` refused. */
  get writes(): { sent: number; refused: number } {
    return { sent: this.sent, refused: this.refused };
  }

  /** Applies not sent because they repeated the last apply to an unchanged object. */
  get skippedApplies(): number {
    return this.skipped;
  }

  /**
   * Applies `object`. With `current`, the object as cached now, an apply that
   * repeats the last one to an object that still holds all of it is skipped,
   * and `current` is returned.
   */
  async apply<T extends k8s.KubernetesObject>(object: T, options: { current?: T } = {}): Promise<T> {
    this.fence();
    const { apiVersion = "", kind = "", ...fields } = object;
    const id = objectId(apiVersion, kind, object.metadata?.namespace ?? "", object.metadata?.name ?? "");
    const digest = bodyDigest(object);
    // apiVersion and kind are not compared: list items come without them.
    if (options.current && this.lastApplied.repeats(id, digest, options.current, fields)) {
      this.skipped++;
      return options.current;
    }
    this.sent++;
    try {
      const answer = await this.objects.patch(object, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
      this.lastApplied.record(id, digest);
      return answer;
    } catch (err) {
      throw new KubeApiError(`apply ${object.kind} ${object.metadata?.namespace}/${object.metadata?.name}`, err);
    }
  }

  /** Applies `status` to an MCS object's status subresource; `current` as for apply. */
  async applyMcsStatus(options: { kind: "ServiceExport" | "ServiceImport"; namespace: string; name: string; status: object; current?: k8s.KubernetesObject }): Promise<void> {
    const plural = options.kind === "ServiceExport" ? "serviceexports" : "serviceimports";
    await this.applyStatus({ group: MCS_GROUP, version: MCS_VERSION, plural, ...options });
  }

  /** Applies `status` to a namespaced custom resource's status subresource, with this manager; `current` as for apply. */
  async applyStatus(options: { group: string; version: string; plural: string; kind: string; namespace: string; name: string; status: object; current?: k8s.KubernetesObject }): Promise<void> {
    const { group, version, plural, kind, namespace, name, status } = options;
    this.fence();
    const id = `${objectId(`${group}/${version}`, kind, namespace, name)}/status`;
    const digest = bodyDigest(status);
    if (options.current && this.lastApplied.repeats(id, digest, (options.current as { status?: unknown }).status, status)) {
      this.skipped++;
      return;
    }
    this.sent++;
    try {
      await this.custom.patchNamespacedCustomObjectStatus(
        {
          group,
          version,
          namespace,
          plural,
          name,
          body: { apiVersion: `${group}/${version}`, kind, metadata: { name, namespace }, status },
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        ssa,
      );
      this.lastApplied.record(id, digest);
    } catch (err) {
      throw new KubeApiError(`apply status of ${kind} ${namespace}/${name}`, err);
    }
  }

  /** Deletes an object; already gone is success. */
  async delete(object: { apiVersion: string; kind: string; metadata: { name: string; namespace: string } }): Promise<void> {
    this.fence();
    this.sent++;
    this.lastApplied.forget(objectId(object.apiVersion, object.kind, object.metadata.namespace, object.metadata.name));
    try {
      await this.objects.delete(object);
    } catch (err) {
      if (err instanceof k8s.ApiException && err.code === 404) return;
      throw new KubeApiError(`delete ${object.kind} ${object.metadata.namespace}/${object.metadata.name}`, err);
    }
  }

  /**
   * Adds or removes one finalizer with a merge patch guarded by the object's
   * resourceVersion: unlike apply, a patch never recreates an object that was
   * deleted meanwhile (404, which is success here), and a concurrent change is
   * a retryable 409 instead of clobbering someone else's finalizer.
   */
  async setFinalizer(options: { object: k8s.KubernetesObject; finalizer: string; present: boolean }): Promise<void> {
    const { metadata = {} } = options.object;
    const current = metadata.finalizers ?? [];
    const finalizers = options.present ? [...new Set([...current, options.finalizer])] : current.filter((f) => f !== options.finalizer);
    this.fence();
    this.sent++;
    try {
      await this.custom.patchNamespacedCustomObject(
        {
          group: MCS_GROUP,
          version: MCS_VERSION,
          namespace: metadata.namespace ?? "",
          plural: "serviceexports",
          name: metadata.name ?? "",
          body: { metadata: { finalizers, resourceVersion: metadata.resourceVersion } },
          fieldManager: FIELD_MANAGER,
        },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
    } catch (err) {
      if (err instanceof k8s.ApiException && err.code === 404) return;
      throw new KubeApiError(`set finalizer on ServiceExport ${metadata.namespace}/${metadata.name}`, err);
    }
  }

  private fence(): void {
    try {
      this.beforeWrite();
    } catch (err) {
      this.refused++;
      throw err;
    }
  }
}

const objectId = (apiVersion: string, kind: string, namespace: string, name: string) => `${apiVersion}/${kind}/${namespace}/${name}`;
