import * as k8s from "@kubernetes/client-node";
import { z } from "zod";
import { FedgateError } from "../../common/index.ts";

/** The leader-election record a Lease carries, as client-go's LeaderElectionRecord. Times are epoch ms. */
export interface LeaseRecord {
  /** Empty when nobody holds the lease (after a release). */
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTimeMs: number;
  renewTimeMs: number;
  leaseTransitions: number;
}

export interface ObservedLease {
  record: LeaseRecord;
  /** For optimistic concurrency: an update names the version it replaces. */
  resourceVersion: string;
}

/** Where the elector keeps its record; the Kubernetes adapter is `KubeLeaseLock`, unit tests use an in-memory one. */
export interface LeaseLock {
  /** E.g. `kube-system/fedgate-controller`, for logs and errors. */
  readonly description: string;
  get(signal: AbortSignal): Promise<ObservedLease | undefined>;
  /** Throws LeaseConflictError when the lease already exists. */
  create(record: LeaseRecord, signal: AbortSignal): Promise<ObservedLease>;
  /** Throws LeaseConflictError when `resourceVersion` is no longer current: someone else wrote first. */
  update(record: LeaseRecord, resourceVersion: string, signal: AbortSignal): Promise<ObservedLease>;
}

/** Another writer changed the lease first (HTTP 409); the attempt lost and is not retried as such. */
export class LeaseConflictError extends FedgateError {
  constructor(lease: string, cause?: unknown) {
    super("FEDGATE_LEASE_CONFLICT", `lease ${lease} was changed by another writer`, { cause, retryable: true });
  }
}

/** Reading or writing the lease failed (unreachable apiserver, timeout, 5xx, forbidden). */
export class LeaseApiError extends FedgateError {
  readonly status: number | undefined;
  constructor(action: string, lease: string, cause: unknown) {
    const status = cause instanceof k8s.ApiException ? cause.code : undefined;
    super("FEDGATE_LEASE_API", `${action} lease ${lease} failed${status ? ` (HTTP ${status})` : ""}`, { cause, retryable: status !== 401 && status !== 403 && status !== 422 });
    this.status = status;
  }
}

/** The stored Lease does not parse as a leader-election record. */
export class LeaseInvalidError extends FedgateError {
  constructor(lease: string, cause: unknown) {
    super("FEDGATE_LEASE_INVALID", `lease ${lease} holds no valid leader-election record`, { cause, retryable: true });
  }
}

const leaseSchema = z.object({
  metadata: z.object({ resourceVersion: z.string().min(1) }),
  spec: z
    .object({
      holderIdentity: z.string().optional(),
      leaseDurationSeconds: z.number().int().nonnegative().optional(),
      acquireTime: z.coerce.date().optional(),
      renewTime: z.coerce.date().optional(),
      leaseTransitions: z.number().int().nonnegative().optional(),
    })
    .optional(),
});

/** A `coordination.k8s.io/v1` Lease used as the election lock; every call honours its abort signal. */
export class KubeLeaseLock implements LeaseLock {
  readonly description: string;
  private readonly api: k8s.CoordinationV1Api;
  private readonly namespace: string;
  private readonly name: string;

  constructor(options: { kubeConfig: k8s.KubeConfig; namespace: string; name: string }) {
    this.api = options.kubeConfig.makeApiClient(k8s.CoordinationV1Api);
    this.namespace = options.namespace;
    this.name = options.name;
    this.description = `${options.namespace}/${options.name}`;
  }

  async get(signal: AbortSignal): Promise<ObservedLease | undefined> {
    try {
      return this.parse(await this.api.readNamespacedLease({ namespace: this.namespace, name: this.name }, withSignal(signal)));
    } catch (err) {
      if (err instanceof k8s.ApiException && err.code === 404) return undefined;
      throw this.wrap("read", err);
    }
  }

  async create(record: LeaseRecord, signal: AbortSignal): Promise<ObservedLease> {
    try {
      return this.parse(await this.api.createNamespacedLease({ namespace: this.namespace, body: this.body(record) }, withSignal(signal)));
    } catch (err) {
      throw this.wrap("create", err);
    }
  }

  async update(record: LeaseRecord, resourceVersion: string, signal: AbortSignal): Promise<ObservedLease> {
    try {
      return this.parse(await this.api.replaceNamespacedLease({ namespace: this.namespace, name: this.name, body: this.body(record, resourceVersion) }, withSignal(signal)));
    } catch (err) {
      throw this.wrap("update", err);
    }
  }

  private body(record: LeaseRecord, resourceVersion?: string): k8s.V1Lease {
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: this.name, namespace: this.namespace, ...(resourceVersion ? { resourceVersion } : {}) },
      spec: {
        holderIdentity: record.holderIdentity,
        leaseDurationSeconds: record.leaseDurationSeconds,
        // MicroTime: the apiserver wants six fractional digits, which plain Date serialization does not give.
        acquireTime: new k8s.V1MicroTime(record.acquireTimeMs),
        renewTime: new k8s.V1MicroTime(record.renewTimeMs),
        leaseTransitions: record.leaseTransitions,
      },
    };
  }

  private parse(lease: k8s.V1Lease): ObservedLease {
    const parsed = leaseSchema.safeParse(lease);
    if (!parsed.success) throw new LeaseInvalidError(this.description, parsed.error);
    const spec = parsed.data.spec ?? {};
    return {
      resourceVersion: parsed.data.metadata.resourceVersion,
      record: {
        holderIdentity: spec.holderIdentity ?? "",
        leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
        acquireTimeMs: spec.acquireTime?.getTime() ?? 0,
        renewTimeMs: spec.renewTime?.getTime() ?? 0,
        leaseTransitions: spec.leaseTransitions ?? 0,
      },
    };
  }

  private wrap(action: string, err: unknown): FedgateError {
    if (err instanceof LeaseInvalidError) return err;
    if (err instanceof k8s.ApiException && err.code === 409) return new LeaseConflictError(this.description, err);
    return new LeaseApiError(action, this.description, err);
  }
}

/** Per-call options that make the request abort with `signal` (the generated client passes it to fetch). */
function withSignal(signal: AbortSignal): k8s.ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (context) => {
          context.setSignal(signal);
          return new k8s.Observable(Promise.resolve(context));
        },
        post: (response) => new k8s.Observable(Promise.resolve(response)),
      },
    ],
    middlewareMergeStrategy: "append",
  };
}
