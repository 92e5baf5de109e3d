import type { Logger } from "../../common/index.ts";
import { XdsProtocolError } from "./errors.ts";
import type { EncodedResource, EncodedSet } from "./resource-validation.ts";
import type { Flavour } from "./translate.ts";
import { kindOfTypeUrl, RESOURCE_KINDS, TYPE_URL, wildcardWhenEmpty, type ResourceKind } from "./type-urls.ts";

/** The parts of an Envoy `Node` the server uses. */
export interface XdsNode {
  id: string;
  cluster: string;
  userAgentName: string;
  /** `node.metadata.FEDGATE_DATAPLANE`: "gateway" or "proxyless", overriding the user-agent guess. */
  dataplane: string | undefined;
}

/** A decoded DiscoveryRequest (state of the world). */
export interface DiscoveryRequest {
  versionInfo: string;
  node: XdsNode | undefined;
  resourceNames: string[];
  typeUrl: string;
  responseNonce: string;
  errorDetail: { code: number; message: string } | undefined;
}

/** A DiscoveryResponse before encoding: resources are already-validated bytes. */
export interface DiscoveryResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: readonly EncodedResource[];
}

export interface NackRecord {
  version: string;
  nonce: string;
  message: string;
  code: number;
  at: number;
}

/** One resource type on one stream, as `status()` and a CLI show it. */
export interface TypeStatus {
  subscribed: string[];
  wildcard: boolean;
  sentVersion: string | undefined;
  sentNonce: string | undefined;
  sentAt: number | undefined;
  ackedVersion: string | undefined;
  ackedAt: number | undefined;
  /** Sent, neither ACKed nor NACKed yet. */
  pending: boolean;
  pushes: number;
  nacks: number;
  lastNack: NackRecord | undefined;
}

export interface NodeStatus {
  stream: number;
  node: XdsNode | undefined;
  flavour: Flavour | undefined;
  connectedAt: number;
  types: Partial<Record<ResourceKind, TypeStatus>>;
}

export type SessionEvent =
  | { type: "push"; stream: number; nodeId: string; kind: ResourceKind; version: string; names: string[]; at: number }
  | { type: "ack"; stream: number; nodeId: string; kind: ResourceKind; version: string; at: number }
  | { type: "nack"; stream: number; nodeId: string; kind: ResourceKind; nack: NackRecord };

/** What a session needs from the server that owns it. */
export interface SessionHost {
  /** The resources currently served to a flavour, or undefined before the first good snapshot. */
  resources(flavour: Flavour): EncodedSet | undefined;
  nextVersion(): string;
  now(): number;
  emit(event: SessionEvent): void;
  logger: Logger;
}

/** The live form of `TypeStatus`: sets and maps where the status shows lists. */
interface TypeState extends Omit<TypeStatus, "subscribed"> {
  subscribed: Set<string>;
  /** name -> hash of what was last sent; decides whether a change concerns this node. */
  sent: Map<string, EncodedResource>;
  /** What the node last ACKed: its running config (a NACK leaves it in place). */
  acked: Map<string, EncodedResource>;
}

export function flavourOf(node: XdsNode): Flavour {
  if (node.dataplane === "proxyless" || node.dataplane === "gateway") return node.dataplane;
  return /^grpc/i.test(node.userAgentName) ? "proxyless" : "gateway";
}

/**
 * The state-of-the-world ADS protocol for one stream, free of gRPC: fed
 * decoded requests, it calls `send` with responses. Versions are server-wide
 * and increasing; nonces are per stream. A request carrying a stale nonce is
 * ignored (xDS spec); an ACK moves the node's running config forward; a NACK
 * is recorded and leaves it where it was, and the rejected content is not
 * re-sent until the translation changes.
 */
export class AdsSession {
  readonly stream: number;
  readonly connectedAt: number;
  private readonly host: SessionHost;
  private readonly send: (response: DiscoveryResponse) => void;
  private readonly types = new Map<ResourceKind, TypeState>();
  private nodeInfo: XdsNode | undefined;
  private nonce = 0;
  private logger: Logger;

  constructor(options: { stream: number; host: SessionHost; send: (response: DiscoveryResponse) => void }) {
    this.stream = options.stream;
    this.host = options.host;
    this.send = options.send;
    this.connectedAt = options.host.now();
    this.logger = options.host.logger.child({ stream: options.stream });
  }

  get node(): XdsNode | undefined {
    return this.nodeInfo;
  }

  get flavour(): Flavour | undefined {
    return this.nodeInfo ? flavourOf(this.nodeInfo) : undefined;
  }

  /** Handles one request; throws `XdsProtocolError` when the stream must end. */
  handleRequest(request: DiscoveryRequest): void {
    if (!this.nodeInfo) {
      if (!request.node?.id) throw new XdsProtocolError("the first DiscoveryRequest of a stream must carry node.id");
      this.nodeInfo = request.node;
      this.logger = this.logger.child({ node: request.node.id });
    }
    const kind = kindOfTypeUrl(request.typeUrl);
    if (!kind) {
      this.logger.debug("ignoring a request for a type fedgate does not serve", { typeUrl: request.typeUrl });
      return;
    }
    let state = this.types.get(kind);
    if (!state) {
      state = newTypeState();
      this.types.set(kind, state);
    }
    const first = state.sentNonce === undefined;
    if (!first && request.responseNonce !== "" && request.responseNonce !== state.sentNonce) {
      // A reply to a response that has been superseded: its subscription is stale too.
      return;
    }
    // On a new stream a nonce from an earlier server is meaningless: treat it as the initial request.
    if (!first && request.responseNonce !== "") {
      if (request.errorDetail) this.recordNack(kind, state, request);
      else this.recordAck(kind, state, request);
    }
    const names = new Set(request.resourceNames.filter((n) => n !== "*"));
    const wildcard = request.resourceNames.includes("*") || (request.resourceNames.length === 0 && wildcardWhenEmpty(kind));
    const changed = wildcard !== state.wildcard || names.size !== state.subscribed.size || [...names].some((n) => !state.subscribed.has(n));
    state.subscribed = names;
    state.wildcard = wildcard;
    // LDS and CDS are full state: a reply tells the node which names do not exist.
    if (first || changed) this.push(kind, state, first || kind === "listener" || kind === "cluster");
  }

  /** Pushes every type whose subscribed resources changed; a node no change concerns gets nothing. */
  refresh(): void {
    for (const kind of RESOURCE_KINDS) {
      const state = this.types.get(kind);
      if (state && state.sentNonce !== undefined) this.push(kind, state, false);
    }
  }

  status(): NodeStatus {
    const types: Partial<Record<ResourceKind, TypeStatus>> = {};
    for (const [kind, s] of this.types) {
      types[kind] = {
        subscribed: [...s.subscribed].sort(),
        wildcard: s.wildcard,
        sentVersion: s.sentVersion,
        sentNonce: s.sentNonce,
        sentAt: s.sentAt,
        ackedVersion: s.ackedVersion,
        ackedAt: s.ackedAt,
        pending: s.pending,
        pushes: s.pushes,
        nacks: s.nacks,
        lastNack: s.lastNack,
      };
    }
    return { stream: this.stream, node: this.nodeInfo, flavour: this.flavour, connectedAt: this.connectedAt, types };
  }

  /** What the node runs (ACKed) and what is in flight, per type, as encoded resources. */
  served(kind: ResourceKind): { acked: ReadonlyMap<string, EncodedResource>; sent: ReadonlyMap<string, EncodedResource>; state: TypeStatus | undefined } {
    const s = this.types.get(kind);
    return { acked: s?.acked ?? new Map(), sent: s?.sent ?? new Map(), state: this.status().types[kind] };
  }

  private desired(kind: ResourceKind, state: TypeState): Map<string, EncodedResource> {
    const flavour = this.flavour;
    const all = flavour ? this.host.resources(flavour)?.[kind] : undefined;
    const out = new Map<string, EncodedResource>();
    if (!all) return out;
    if (state.wildcard) for (const [name, r] of all) out.set(name, r);
    for (const name of state.subscribed) {
      const r = all.get(name);
      if (r) out.set(name, r);
    }
    return out;
  }

  private push(kind: ResourceKind, state: TypeState, force: boolean): void {
    if (!this.host.resources(this.flavour ?? "gateway") && !force) return;
    const desired = this.desired(kind, state);
    if (!force && sameContent(desired, state.sent)) return;
    const version = this.host.nextVersion();
    const nonce = String(++this.nonce);
    const resources = [...desired.values()];
    state.sent = desired;
    state.sentVersion = version;
    state.sentNonce = nonce;
    state.sentAt = this.host.now();
    state.pending = true;
    state.pushes += 1;
    this.send({ versionInfo: version, typeUrl: TYPE_URL[kind], nonce, resources });
    this.host.emit({ type: "push", stream: this.stream, nodeId: this.nodeInfo?.id ?? "", kind, version, names: resources.map((r) => r.name), at: state.sentAt });
  }

  private recordAck(kind: ResourceKind, state: TypeState, request: DiscoveryRequest): void {
    if (!state.pending) return;
    state.pending = false;
    state.acked = state.sent;
    state.ackedVersion = request.versionInfo;
    state.ackedAt = this.host.now();
    this.host.emit({ type: "ack", stream: this.stream, nodeId: this.nodeInfo?.id ?? "", kind, version: request.versionInfo, at: state.ackedAt });
  }

  private recordNack(kind: ResourceKind, state: TypeState, request: DiscoveryRequest): void {
    if (!state.pending) return;
    state.pending = false;
    const nack: NackRecord = {
      version: state.sentVersion ?? "",
      nonce: request.responseNonce,
      message: request.errorDetail?.message ?? "",
      code: request.errorDetail?.code ?? 0,
      at: this.host.now(),
    };
    state.nacks += 1;
    state.lastNack = nack;
    this.logger.warn("data plane rejected a config; it keeps its last accepted one", { kind, rejectedVersion: nack.version, runningVersion: request.versionInfo, error: nack.message });
    this.host.emit({ type: "nack", stream: this.stream, nodeId: this.nodeInfo?.id ?? "", kind, nack });
  }
}

function newTypeState(): TypeState {
  return {
    subscribed: new Set(),
    wildcard: false,
    sent: new Map(),
    sentVersion: undefined,
    sentNonce: undefined,
    sentAt: undefined,
    acked: new Map(),
    ackedVersion: undefined,
    ackedAt: undefined,
    pending: false,
    pushes: 0,
    nacks: 0,
    lastNack: undefined,
  };
}

function sameContent(a: ReadonlyMap<string, EncodedResource>, b: ReadonlyMap<string, EncodedResource>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, r] of a) if (b.get(name)?.hash !== r.hash) return false;
  return true;
}
