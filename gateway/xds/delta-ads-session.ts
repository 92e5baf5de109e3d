import { AdsSessionBase, type ChangedNames, type SessionHost, type TypeState, type XdsNode } from "./ads-session-base.ts";
import type { EncodedResource } from "./resource-validation.ts";
import { RESOURCE_KINDS, TYPE_URL, wildcardWhenEmpty, type ResourceKind } from "./type-urls.ts";

/** A decoded DeltaDiscoveryRequest (incremental xDS). */
export interface DeltaDiscoveryRequest {
  node: XdsNode | undefined;
  typeUrl: string;
  subscribe: string[];
  unsubscribe: string[];
  /** name -> version the node already holds; only read on a type's first request of a stream. */
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail: { code: number; message: string } | undefined;
}

/** A DeltaDiscoveryResponse before encoding; each resource's version is its content hash. */
export interface DeltaDiscoveryResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: readonly EncodedResource[];
  removedResources: readonly string[];
}

const WILDCARD = "*";

/** Per type, what the incremental protocol must remember beyond the shared state. */
interface DeltaTypeState {
  /** name -> version the node holds or has been sent (ACK pending): the base of every diff. */
  known: Map<string, string>;
  /** Subscribed names the node has been told do not exist, so it is told once. */
  absent: Set<string>;
  /** Responses not yet answered, by nonce: an ACK applies exactly what its response carried. */
  inflight: Map<string, { version: string; upserts: readonly EncodedResource[]; removed: readonly string[] }>;
}

/**
 * The incremental (delta) ADS protocol for one stream, free of gRPC. Each
 * resource's version is its content hash, so a push carries only the
 * resources whose hash changed for this node and the names that went away;
 * a node no change concerns gets nothing. Subscriptions change by
 * subscribe/unsubscribe; `*` (or, for LDS and CDS, an empty first request)
 * is a wildcard. On reconnect `initial_resource_versions` says what the node
 * still has, and none of that is re-sent. A NACK leaves the node's running
 * config (what it ACKed) in place, and the rejected content is not re-sent
 * until the translation changes it, exactly as in state of the world.
 */
export class DeltaAdsSession extends AdsSessionBase {
  readonly protocol = "delta";
  private readonly send: (response: DeltaDiscoveryResponse) => void;
  private readonly deltas = new Map<ResourceKind, DeltaTypeState>();

  constructor(options: { stream: number; host: SessionHost; send: (response: DeltaDiscoveryResponse) => void }) {
    super(options);
    this.send = options.send;
  }

  /** Handles one request; throws `XdsProtocolError` when the stream must end. */
  handleRequest(request: DeltaDiscoveryRequest): void {
    const begun = this.begin(request.node, request.typeUrl);
    if (!begun) return;
    const { kind, state, first } = begun;
    let delta = this.deltas.get(kind);
    if (!delta) {
      delta = { known: new Map(), absent: new Set(), inflight: new Map() };
      this.deltas.set(kind, delta);
    }
    if (request.responseNonce !== "") this.answer(kind, state, delta, request);
    const initial = first ? Object.entries(request.initialResourceVersions) : [];
    if (first) {
      if (request.subscribe.length === 0 && wildcardWhenEmpty(kind)) state.wildcard = true;
      this.adoptInitialVersions(kind, state, delta, initial);
    }
    for (const name of request.subscribe) {
      if (name === WILDCARD) state.wildcard = true;
      else state.subscribed.add(name);
    }
    for (const name of request.unsubscribe) {
      if (name === WILDCARD) state.wildcard = false;
      else {
        state.subscribed.delete(name);
        delta.known.delete(name);
        delta.absent.delete(name);
      }
    }
    // A bare ACK or NACK changes nothing the node wants: every push and refresh left it holding all of it.
    if (!first && request.subscribe.length === 0 && request.unsubscribe.length === 0) return;
    // A first request is answered even when empty: the node waits for it to finish initialising.
    this.push(kind, state, delta, first && initial.length === 0);
  }

  refresh(changed?: ChangedNames): void {
    for (const kind of RESOURCE_KINDS) {
      const state = this.types.get(kind);
      const delta = this.deltas.get(kind);
      if (!state || !delta) continue;
      const names = this.changedOf(changed, kind);
      if (names && this.hasSnapshot()) this.emitDiff(kind, state, delta, this.diffOf(kind, names, state, delta), false);
      else this.push(kind, state, delta, false);
    }
  }

  private answer(kind: ResourceKind, state: TypeState, delta: DeltaTypeState, request: DeltaDiscoveryRequest): void {
    const flight = delta.inflight.get(request.responseNonce);
    // A nonce from an earlier stream or server is not an answer to anything sent here.
    if (!flight) return;
    delta.inflight.delete(request.responseNonce);
    state.pending = delta.inflight.size > 0;
    if (request.errorDetail) {
      this.recordNack(kind, state, { version: flight.version, nonce: request.responseNonce, errorDetail: request.errorDetail });
      return;
    }
    // In place: this stream's own map, and copying ~800 entries per ACK was a large part of an export's server CPU.
    for (const r of flight.upserts) state.acked.set(r.name, r);
    for (const name of flight.removed) state.acked.delete(name);
    this.recordAck(kind, state, flight.version, state.acked);
  }

  /** What a reconnecting node says it holds counts as sent and, where it matches, as running. */
  private adoptInitialVersions(kind: ResourceKind, state: TypeState, delta: DeltaTypeState, initial: [string, string][]): void {
    if (initial.length === 0) return;
    const all = this.flavour ? this.host.resources(this.flavour)?.[kind] : undefined;
    for (const [name, version] of initial) {
      delta.known.set(name, version);
      const current = all?.get(name);
      if (current?.hash === version) state.acked.set(name, current);
    }
  }

  /** Diffs everything the node wants against what it holds; `force` answers even when nothing differs. */
  private push(kind: ResourceKind, state: TypeState, delta: DeltaTypeState, force: boolean): void {
    const snapshot = this.hasSnapshot();
    if (!snapshot && !force) return;
    const desired = this.desired(kind, state);
    const upserts: EncodedResource[] = [];
    for (const [name, r] of desired) if (delta.known.get(name) !== r.hash) upserts.push(r);
    const removed: string[] = [];
    for (const name of delta.known.keys()) {
      if (desired.has(name)) continue;
      delta.known.delete(name);
      // Gone from what the node asked for: tell it. No longer asked for: it dropped it already.
      if (state.wildcard || state.subscribed.has(name)) {
        removed.push(name);
        delta.absent.add(name);
      }
    }
    if (snapshot) {
      for (const name of state.subscribed) {
        if (desired.has(name) || delta.absent.has(name)) continue;
        removed.push(name);
        delta.absent.add(name);
      }
    }
    this.emitDiff(kind, state, delta, { upserts, removed }, force);
  }

  /**
   * The same diff as `push`, over the names a snapshot changed alone: after
   * every push the node holds (or has been sent) exactly what it wants, so
   * only those names can differ.
   */
  private diffOf(kind: ResourceKind, names: ReadonlySet<string>, state: TypeState, delta: DeltaTypeState): { upserts: EncodedResource[]; removed: string[] } {
    const all = this.flavour ? this.host.resources(this.flavour) : undefined;
    const upserts: EncodedResource[] = [];
    const removed: string[] = [];
    for (const name of names) {
      const wanted = state.wildcard || state.subscribed.has(name);
      const r = wanted ? all?.[kind].get(name) : undefined;
      if (r) {
        if (delta.known.get(name) !== r.hash) upserts.push(r);
        continue;
      }
      const held = delta.known.delete(name);
      if (wanted && (held || (state.subscribed.has(name) && !delta.absent.has(name)))) {
        removed.push(name);
        delta.absent.add(name);
      }
    }
    return { upserts, removed };
  }

  private emitDiff(kind: ResourceKind, state: TypeState, delta: DeltaTypeState, diff: { upserts: EncodedResource[]; removed: string[] }, force: boolean): void {
    const { upserts, removed } = diff;
    if (!force && upserts.length === 0 && removed.length === 0) return;
    for (const r of upserts) {
      delta.known.set(r.name, r.hash);
      delta.absent.delete(r.name);
    }
    const sent = new Map(upserts.map((r) => [r.name, r]));
    const { version, nonce } = this.recordPush(kind, state, sent, upserts.map((r) => r.name));
    delta.inflight.set(nonce, { version, upserts, removed });
    this.send({ systemVersionInfo: version, typeUrl: TYPE_URL[kind], nonce, resources: upserts, removedResources: removed });
  }
}
