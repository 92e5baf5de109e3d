import { createHash } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import { canonicalJson } from "../exchange/canonical-json.ts";

/** Base64 characters kept of a body's SHA-256: enough to tell bodies apart, small at 10k objects. */
const DIGEST_CHARS = 16;

/** A short digest of an apply body, independent of key order. */
export function bodyDigest(body: object): string {
  return createHash("sha256").update(canonicalJson(body)).digest("base64").slice(0, DIGEST_CHARS);
}

/**
 * Per applied object (and status), the digest of the body last applied and the
 * resourceVersion the apiserver answered. While the cached object still has
 * that resourceVersion nobody has changed it since, so applying the same body
 * again is a known no-op and is skipped: re-reconciles after convergence then
 * cost no request. A miss (a restart, someone else's write, a cache not caught
 * up yet) only costs one apply that the server treats as a no-op.
 */
export class LastApplied {
  private readonly applied = new Map<string, string>();

  /** Whether applying a body with `digest` to object `id`, cached now as `current`, repeats the last apply. */
  repeats(id: string, digest: string, current: k8s.KubernetesObject | undefined): boolean {
    const version = current?.metadata?.resourceVersion;
    return version !== undefined && this.applied.get(id) === `${version} ${digest}`;
  }

  record(id: string, digest: string, answer: unknown): void {
    const version = (answer as k8s.KubernetesObject | undefined)?.metadata?.resourceVersion;
    if (version === undefined) this.applied.delete(id);
    else this.applied.set(id, `${version} ${digest}`);
  }

  /** Forgets the object and its status. */
  forget(id: string): void {
    this.applied.delete(id);
    this.applied.delete(`${id}/status`);
  }
}
