import { metrics, trace, type Counter, type Meter, type Tracer, type UpDownCounter } from "@opentelemetry/api";
import { silentLogger, type Logger, type Problem } from "../../common/index.ts";
import type { AdsSessionBase, ChangedNames, NodeStatus, SessionEvent, SessionHost, XdsProtocolKind } from "./ads-session-base.ts";
import { AdsSession, type DiscoveryResponse } from "./ads-session.ts";
import { DeltaAdsSession, type DeltaDiscoveryResponse } from "./delta-ads-session.ts";
import { XdsOptionsError, XdsResourceValidationError } from "./errors.ts";
import { FederationSnapshotParser, type FederationSnapshot, type FederationSnapshotInput } from "./input.ts";
import { ProtoRegistry } from "./proto-registry.ts";
import { EncodedResourceCache, validateAndEncode, type EncodedSet } from "./resource-validation.ts";
import { Translator, type Flavour, type Translation } from "./translate.ts";
import { RESOURCE_KINDS, TYPE_URL, type ResourceKind } from "./type-urls.ts";

/** Timers, injected so the debounce is tested without sleeping. */
export interface XdsTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * Debounce, tuned for a change to reach 100 nodes in well under 100 ms p99
 * on a quiet machine (bench/xds-push.ts, BENCHMARKS.md): a push waits for
 * 10 ms of quiet, so a burst from the exchange (one export touching CDS+EDS
 * for several services, a cluster going stale and withdrawing dozens of
 * exports) becomes one push, but never more
 * than 100 ms in total, so a steady trickle cannot starve the data planes.
 * Istio's defaults (100 ms quiet, 10 s max) suit a kube-apiserver's event
 * storms; the exchange already coalesces by key, so shorter suits it.
 */
export const DEFAULT_DEBOUNCE_MS = 10;
export const DEFAULT_MAX_DEBOUNCE_MS = 100;

export interface XdsCoreOptions {
  /** Shared loaded protos; loaded on construction when absent. */
  registry?: ProtoRegistry;
  logger?: Logger;
  meter?: Meter;
  tracer?: Tracer;
  now?: () => number;
  timers?: XdsTimers;
  debounceMs?: number;
  maxDebounceMs?: number;
  /** Replaces the translation (tests inject a broken one to prove the validation gate). */
  translate?: (snapshot: FederationSnapshot, flavour: Flavour) => Translation;
}

export interface TranslationRejection {
  at: number;
  flavour: Flavour;
  problems: Problem[];
}

export interface ServerStatus {
  generation: number;
  lastAppliedAt: number | undefined;
  lastRejection: TranslationRejection | undefined;
  warnings: Problem[];
  nodes: NodeStatus[];
}

/** Envoy-like config_dump of one node: per type, what it runs (ACKed) and what it was last sent. */
export interface NodeConfigDump {
  node: NodeStatus["node"];
  protocol: NodeStatus["protocol"];
  flavour: Flavour | undefined;
  stream: number;
  configs: Partial<
    Record<
      ResourceKind,
      {
        typeUrl: string;
        versionInfo: string | undefined;
        resources: { name: string; resource: Record<string, unknown> }[];
        /** Present while the last push is unanswered or was rejected. */
        lastSent?: { versionInfo: string | undefined; names: string[] };
        lastNack?: NonNullable<NodeStatus["types"][ResourceKind]>["lastNack"];
      }
    >
  >;
}

const FLAVOURS: readonly Flavour[] = ["gateway", "proxyless"];

/**
 * The transport-free heart of the xDS server: takes federation snapshots,
 * debounces, translates per data-plane flavour, validates everything, and
 * tells each connected session to push what concerns it. A snapshot that
 * fails translation or validation is rejected as a whole and the last good
 * resources stay served.
 */
export class XdsCore {
  readonly registry: ProtoRegistry;
  private readonly logger: Logger;
  private readonly tracer: Tracer;
  private readonly now: () => number;
  private readonly timers: XdsTimers;
  private readonly debounceMs: number;
  private readonly maxDebounceMs: number;
  private readonly translate: (snapshot: FederationSnapshot, flavour: Flavour) => Translation;
  private readonly sessions = new Set<AdsSessionBase>();
  private readonly listeners = new Set<(event: SessionEvent) => void>();
  private readonly current = new Map<Flavour, EncodedSet>();
  private readonly encodedCache: EncodedResourceCache;
  private readonly parser = new FederationSnapshotParser();
  private pending: FederationSnapshot | undefined;
  private pendingSince: number | undefined;
  private timer: unknown;
  private version = 0;
  private streamIds = 0;
  private generation = 0;
  private lastAppliedAt: number | undefined;
  private lastRejection: TranslationRejection | undefined;
  private warnings: Problem[] = [];
  private readonly counters: { pushes: Counter; nacks: Counter; acks: Counter; rejections: Counter; connected: UpDownCounter };

  constructor(options: XdsCoreOptions = {}) {
    const problems: Problem[] = [];
    const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    const maxDebounceMs = options.maxDebounceMs ?? DEFAULT_MAX_DEBOUNCE_MS;
    if (!Number.isInteger(debounceMs) || debounceMs < 0) problems.push({ path: "debounceMs", message: "must be an integer >= 0" });
    if (!Number.isInteger(maxDebounceMs) || maxDebounceMs < debounceMs) problems.push({ path: "maxDebounceMs", message: "must be an integer >= debounceMs" });
    if (problems.length) throw new XdsOptionsError("XdsCore options", problems);
    this.registry = options.registry ?? ProtoRegistry.load();
    this.encodedCache = new EncodedResourceCache({ registry: this.registry });
    this.logger = (options.logger ?? silentLogger).child({ component: "xds" });
    this.tracer = options.tracer ?? trace.getTracer("fedgate.gateway.xds");
    this.now = options.now ?? (() => performance.now());
    this.timers = options.timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
    this.debounceMs = debounceMs;
    this.maxDebounceMs = maxDebounceMs;
    const translator = new Translator();
    this.translate = options.translate ?? ((snapshot, flavour) => translator.translate(snapshot, flavour));
    const meter = options.meter ?? metrics.getMeter("fedgate.gateway.xds");
    this.counters = {
      pushes: meter.createCounter("fedgate.xds.pushes", { description: "DiscoveryResponses sent" }),
      acks: meter.createCounter("fedgate.xds.acks", { description: "DiscoveryResponses ACKed by a data plane" }),
      nacks: meter.createCounter("fedgate.xds.nacks", { description: "DiscoveryResponses rejected by a data plane (alert on this)" }),
      rejections: meter.createCounter("fedgate.xds.translation_rejections", { description: "snapshots whose translation failed validation; last good config kept" }),
      connected: meter.createUpDownCounter("fedgate.xds.connected_streams", { description: "open ADS streams" }),
    };
  }

  /**
   * Accepts a new federation snapshot (parsed here; an invalid one throws
   * `XdsInputError` and changes nothing). The push follows after the debounce.
   */
  setSnapshot(input: FederationSnapshotInput): void {
    this.pending = this.parser.parse(input);
    const now = this.now();
    this.pendingSince ??= now;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    const delay = Math.max(0, Math.min(this.debounceMs, this.maxDebounceMs - (now - this.pendingSince)));
    this.timer = this.timers.setTimeout(() => this.flush(), delay);
  }

  /** Applies the pending snapshot now; returns false when its translation was rejected. */
  flush(): boolean {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.pendingSince = undefined;
    const snapshot = this.pending;
    this.pending = undefined;
    if (!snapshot) return true;
    return this.tracer.startActiveSpan("xds.apply_snapshot", (span) => {
      try {
        const next = new Map<Flavour, EncodedSet>();
        const warnings: Problem[] = [];
        for (const flavour of FLAVOURS) {
          const translation = this.translate(snapshot, flavour);
          if (flavour === "gateway") warnings.push(...translation.warnings);
          const outcome = validateAndEncode(this.encodedCache, translation.resources);
          if (!outcome.encoded) {
            this.lastRejection = { at: this.now(), flavour, problems: outcome.problems };
            this.counters.rejections.add(1, { flavour });
            const error = new XdsResourceValidationError(outcome.problems);
            this.logger.error("translation produced invalid resources; keeping the last good config", { flavour, error, problems: outcome.problems.length });
            span.recordException(error);
            return false;
          }
          next.set(flavour, outcome.encoded);
        }
        for (const w of warnings) this.logger.warn("snapshot input skipped", { path: w.path, problem: w.message });
        this.warnings = warnings;
        const changed: ChangedNames = new Map([...next].map(([flavour, set]) => [flavour, changedNames(this.current.get(flavour), set)]));
        for (const [flavour, set] of next) this.current.set(flavour, set);
        this.generation += 1;
        this.lastAppliedAt = this.now();
        span.setAttribute("fedgate.xds.generation", this.generation);
        span.setAttribute("fedgate.xds.streams", this.sessions.size);
        for (const session of this.sessions) session.refresh(changed);
        return true;
      } finally {
        this.encodedCache.endGeneration();
        span.end();
      }
    });
  }

  /** The validated, encoded resources served to a flavour (tests and the config dump read them). */
  resources(flavour: Flavour): EncodedSet | undefined {
    return this.current.get(flavour);
  }

  /** Opens a state-of-the-world session for one ADS stream; `close` it when the stream ends. */
  openSession(send: (response: DiscoveryResponse) => void): { session: AdsSession; close: () => void } {
    return this.track(new AdsSession({ stream: ++this.streamIds, host: this.sessionHost(), send: (response) => this.counted(response.typeUrl, "sotw", () => send(response)) }));
  }

  /** Opens an incremental (delta) session for one ADS stream, served from the same snapshots. */
  openDeltaSession(send: (response: DeltaDiscoveryResponse) => void): { session: DeltaAdsSession; close: () => void } {
    return this.track(new DeltaAdsSession({ stream: ++this.streamIds, host: this.sessionHost(), send: (response) => this.counted(response.typeUrl, "delta", () => send(response)) }));
  }

  private sessionHost(): SessionHost {
    return {
      resources: (flavour) => this.current.get(flavour),
      nextVersion: () => String(++this.version),
      now: () => this.now(),
      emit: (event) => this.emit(event),
      logger: this.logger,
    };
  }

  private counted(typeUrl: string, protocol: XdsProtocolKind, send: () => void): void {
    this.counters.pushes.add(1, { type: TYPE_URL_SHORT[typeUrl] ?? typeUrl, protocol });
    send();
  }

  private track<S extends AdsSessionBase>(session: S): { session: S; close: () => void } {
    this.sessions.add(session);
    this.counters.connected.add(1);
    let open = true;
    return {
      session,
      close: () => {
        if (!open) return;
        open = false;
        this.sessions.delete(session);
        this.counters.connected.add(-1);
      },
    };
  }

  /** Subscribes to pushes, ACKs and NACKs; returns the unsubscribe function. */
  onEvent(listener: (event: SessionEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): ServerStatus {
    return {
      generation: this.generation,
      lastAppliedAt: this.lastAppliedAt,
      lastRejection: this.lastRejection,
      warnings: this.warnings,
      nodes: [...this.sessions].map((s) => s.status()),
    };
  }

  /** The config served to a node (its newest stream), decoded to JSON; undefined when not connected. */
  configDump(nodeId: string): NodeConfigDump | undefined {
    const session = [...this.sessions].filter((s) => s.node?.id === nodeId).at(-1);
    if (!session) return undefined;
    const configs: NodeConfigDump["configs"] = {};
    for (const kind of RESOURCE_KINDS) {
      const { acked, sent, state } = session.served(kind);
      if (!state) continue;
      const entry: NonNullable<NodeConfigDump["configs"][ResourceKind]> = {
        typeUrl: TYPE_URL[kind],
        versionInfo: state.ackedVersion,
        resources: [...acked.values()].map((r) => ({ name: r.name, resource: this.registry.decodeAny(TYPE_URL[kind], r.bytes) })),
      };
      if (state.pending || state.lastNack) entry.lastSent = { versionInfo: state.sentVersion, names: [...sent.keys()] };
      if (state.lastNack) entry.lastNack = state.lastNack;
      configs[kind] = entry;
    }
    return { node: session.node, protocol: session.protocol, flavour: session.flavour, stream: session.stream, configs };
  }

  /** Cancels a pending debounce; sessions are closed by the transport. */
  close(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private emit(event: SessionEvent): void {
    if (event.type === "ack") this.counters.acks.add(1, { type: event.kind });
    if (event.type === "nack") this.counters.nacks.add(1, { type: event.kind });
    for (const listener of this.listeners) listener(event);
  }
}

/**
 * Per type, the names whose content changed (or that went away) from one
 * applied set to the next, computed once per flush so each session looks at
 * these alone; undefined (every name may have changed) for a flavour's first set.
 */
function changedNames(previous: EncodedSet | undefined, next: EncodedSet): Record<ResourceKind, ReadonlySet<string>> | undefined {
  if (!previous) return undefined;
  const changed = Object.fromEntries(RESOURCE_KINDS.map((k) => [k, new Set<string>()])) as Record<ResourceKind, Set<string>>;
  for (const kind of RESOURCE_KINDS) {
    for (const [name, r] of next[kind]) if (previous[kind].get(name)?.hash !== r.hash) changed[kind].add(name);
    for (const name of previous[kind].keys()) if (!next[kind].has(name)) changed[kind].add(name);
  }
  return changed;
}

const TYPE_URL_SHORT: Record<string, string> = Object.fromEntries(RESOURCE_KINDS.map((k) => [TYPE_URL[k], k]));
