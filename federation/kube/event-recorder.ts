import { randomBytes } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { asError, silentLogger, type Logger } from "../../common/index.ts";

export const DEFAULT_REPORTING_CONTROLLER = "fedgate.io/federation-controller";
/** How many distinct events the recorder remembers for deduplication. */
export const DEFAULT_MAX_TRACKED_EVENTS = 4_096;
/** events.k8s.io/v1 rejects a note over 1 kB. */
const MAX_NOTE_BYTES = 1_024;
const MAX_NAME_PREFIX = 200;

export interface EventRecorderOptions {
  kubeConfig: k8s.KubeConfig;
  /** reportingController: which controller emits (a qualified name). */
  controller?: string;
  /** reportingInstance: which replica emits, e.g. `fedgate-<cluster>-<pod>` (≤ 128 characters). */
  instance: string;
  maxTracked?: number;
  now?: () => Date;
  logger?: Logger;
}

export interface EventSpec {
  /** The object the event is about, as read from the apiserver (uid, resourceVersion are copied). */
  regarding: k8s.KubernetesObject;
  type: "Normal" | "Warning";
  /** CamelCase, e.g. `InvalidPolicy`. */
  reason: string;
  /** What the controller did or failed to do, e.g. `Validate`. */
  action: string;
  note: string;
}

interface Tracked {
  name: string;
  namespace: string;
  count: number;
}

/**
 * Emits events.k8s.io/v1 Events the way client-go's recorder does: a repeat
 * of the same (object, type, reason, note) updates the first Event's `series`
 * (count, lastObservedTime) instead of creating another. Events are best
 * effort: `record()` logs failures and never rejects.
 */
export class EventRecorder {
  private readonly api: k8s.EventsV1Api;
  private readonly o: Required<Omit<EventRecorderOptions, "kubeConfig" | "logger">>;
  private readonly log: Logger;
  private readonly tracked = new Map<string, Tracked>();
  /** Per dedup key, the record in flight, so repeats are serialized onto one Event. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(options: EventRecorderOptions) {
    this.api = options.kubeConfig.makeApiClient(k8s.EventsV1Api);
    this.o = { controller: DEFAULT_REPORTING_CONTROLLER, maxTracked: DEFAULT_MAX_TRACKED_EVENTS, now: () => new Date(), ...options };
    this.log = (options.logger ?? silentLogger).child({ component: "event-recorder" });
  }

  record(event: EventSpec): Promise<void> {
    const m = event.regarding.metadata;
    const key = [m?.uid ?? `${event.regarding.kind}/${m?.namespace ?? ""}/${m?.name ?? ""}`, event.type, event.reason, event.note].join("\u0000");
    const previous = this.inFlight.get(key) ?? Promise.resolve();
    const next = previous.then(() => this.emit(key, event));
    this.inFlight.set(key, next);
    void next.finally(() => {
      if (this.inFlight.get(key) === next) this.inFlight.delete(key);
    });
    return next;
  }

  private async emit(key: string, event: EventSpec): Promise<void> {
    const now = new k8s.V1MicroTime(this.o.now().getTime());
    const seen = this.tracked.get(key);
    try {
      if (seen) {
        const count = seen.count + 1;
        try {
          await this.api.patchNamespacedEvent(
            { name: seen.name, namespace: seen.namespace, body: { series: { count, lastObservedTime: now } } },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
          );
          this.remember(key, { ...seen, count });
          return;
        } catch (err) {
          // The Event expired (the apiserver's event TTL): start a new one.
          if (!(err instanceof k8s.ApiException && err.code === 404)) throw err;
        }
      }
      const namespace = event.regarding.metadata?.namespace || "default";
      const created = await this.api.createNamespacedEvent({ namespace, body: this.body(event, namespace, now) });
      this.remember(key, { name: created.metadata?.name ?? "", namespace, count: 1 });
    } catch (err) {
      this.log.warn("could not record event", { err: asError(err), reason: event.reason, object: `${event.regarding.metadata?.namespace ?? ""}/${event.regarding.metadata?.name ?? ""}` });
    }
  }

  private body(event: EventSpec, namespace: string, now: k8s.V1MicroTime): k8s.EventsV1Event {
    const m = event.regarding.metadata;
    const prefix = (m?.name ?? "unnamed").slice(0, MAX_NAME_PREFIX);
    return {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: `${prefix}.${randomBytes(8).toString("hex")}`, namespace },
      eventTime: now,
      type: event.type,
      reason: event.reason,
      action: event.action,
      note: truncateUtf8(event.note, MAX_NOTE_BYTES),
      reportingController: this.o.controller,
      reportingInstance: this.o.instance,
      regarding: {
        ...(event.regarding.apiVersion ? { apiVersion: event.regarding.apiVersion } : {}),
        ...(event.regarding.kind ? { kind: event.regarding.kind } : {}),
        ...(m?.name ? { name: m.name } : {}),
        ...(m?.namespace ? { namespace: m.namespace } : {}),
        ...(m?.uid ? { uid: m.uid } : {}),
        ...(m?.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      },
    };
  }

  /** Keeps the most recently used keys, up to `maxTracked`. */
  private remember(key: string, tracked: Tracked): void {
    this.tracked.delete(key);
    this.tracked.set(key, tracked);
    if (this.tracked.size > this.o.maxTracked) {
      const oldest = this.tracked.keys().next();
      if (!oldest.done) this.tracked.delete(oldest.value);
    }
  }
}

function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  // Cut on a character boundary, leaving room for the ellipsis (3 bytes).
  let end = maxBytes - 3;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return `${bytes.subarray(0, end).toString("utf8")}…`;
}
