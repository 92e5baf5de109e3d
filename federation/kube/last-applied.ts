import { createHash } from "node:crypto";
import { canonicalJson } from "../exchange/canonical-json.ts";

/** Base64 characters kept of a body's SHA-256: enough to tell bodies apart, small at 10k objects. */
const DIGEST_CHARS = 16;

/** A short digest of an apply body, independent of key order. */
export function bodyDigest(body: object): string {
  return createHash("sha256").update(canonicalJson(body)).digest("base64").slice(0, DIGEST_CHARS);
}

/**
 * Whether `actual` holds every field of `wanted` with the same value: objects
 * by their keys (`actual` may have more, e.g. server defaults), lists item by
 * item and of the same length.
 */
export function holds(actual: unknown, wanted: unknown): boolean {
  if (Array.isArray(wanted)) return Array.isArray(actual) && actual.length === wanted.length && wanted.every((w, i) => holds(actual[i], w));
  if (wanted !== null && typeof wanted === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) return false;
    const fields = actual as Record<string, unknown>;
    return Object.entries(wanted).every(([k, w]) => w === undefined || holds(fields[k], w));
  }
  return actual === wanted;
}

/**
 * Per applied object (and status), the digest of the body last applied with
 * server-side apply. Applying the same body again to an object that still
 * holds all of it is a no-op on the server, so it is skipped: passes over a
 * converged import then cost no request. The digest is what makes that safe:
 * a body that drops a field it set before is a different body, and is sent
 * (server-side apply removes fields its manager stops setting). A miss (a
 * restart, someone else's change) only costs one apply.
 */
export class LastApplied {
  private readonly applied = new Map<string, string>();

  /** Whether applying `body` (digest `digest`) to object `id`, whose cached part is `current`, repeats a no-op. */
  repeats(id: string, digest: string, current: unknown, body: object): boolean {
    return this.applied.get(id) === digest && holds(current, body);
  }

  record(id: string, digest: string): void {
    this.applied.set(id, digest);
  }

  /** Forgets the object and its status. */
  forget(id: string): void {
    this.applied.delete(id);
    this.applied.delete(`${id}/status`);
  }
}
