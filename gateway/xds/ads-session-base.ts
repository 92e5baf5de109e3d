import type { Logger } from "../../common/index.ts";
import { XdsProtocolError } from "./errors.ts";
import type { EncodedResource, EncodedSet } from "./resource-validation.ts";
import type { Flavour } from "./translate.ts";
import { kindOfTypeUrl, type ResourceKind } from "./type-urls.ts";

/** The parts of an Envoy `Node` the server uses. */
export interface XdsNode {
  id: string;
  cluster: string;
  userAgentName: string;
  /** `node.metadata.FEDGATE_DATAPLANE`: "gateway" or "proxyless", overriding the user-agent guess. */
  dataplane: string | undefined;
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

export type XdsProtocolKind = "sotw" | "delta";

export interface NodeStatus {
  stream: number;
  protocol: XdsProtocolKind;
  node: XdsNode | undefined;
  flavour: Flavour | undefined;
  connectedAt: number;
  types: Partial<Record<ResourceKind, TypeStatus>>;
}

export type SessionEvent =
  | { type: "push"; stream: number; nodeId: string; kind: ResourceKind; version: string; names: string[]; at: number }
  | { type: "ack"; stream: number; nodeId: string; kind: ResourceKind; version: string; at: number }
  | { type: "nack"; stream: number; nodeId: string; kind: ResourceKind; nack: NackRecord };

/**
 * What changed in the last applied snapshot, per flavour and type: the names
 * whose content changed or that went away. A flavour mapped to undefined, or
 * absent, may have changed everywhere.
 */
export type ChangedNames = ReadonlyMap<Flavour, Readonly<Record<ResourceKind, ReadonlySet<string>>> | undefined>;

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
export interface TypeState extends Omit<TypeStatus, "subscribed"> {
  subscribed: Set<string>;
  /** What the last response carried (SotW: the whole set; delta: the upserts). */
  sent: Map<string, EncodedResource>;
  /** What the node last ACKed: its running config (a NACK leaves it in place). */
  acked: Map<string, EncodedResource>;
}

export function flavourOf(node: XdsNode): Flavour {
  if (node.dataplane === "proxyless" || node.dataplane === "gateway") return node.dataplane;
  return /^grpc/i.test(node.userAgentName) ? "proxyless" : "gateway";
}

/**
 * What both ADS protocols (state of the world, incremental) share for one
 * stream: the node, per-type subscription state, which resources a node
 * wants, and the bookkeeping of pushes, ACKs and NACKs behind `status()`,
 * the config dump, logs and metrics. Subclasses decide what goes on the wire.
 */
export abstract class AdsSessionBase {
  readonly stream: number;
  readonly connectedAt: number;
  abstract readonly protocol: XdsProtocolKind;
  protected readonly host: SessionHost;
  protected readonly types = new Map<ResourceKind, TypeState>();
  protected nodeInfo: XdsNode | undefined;
  protected logger: Logger;
  private nonces = 0;

  constructor(options: { stream: number; host: SessionHost }) {
    this.stream = options.stream;
    this.host = options.host;
    this.connectedAt = options.host.now();
    this.logger = options.host.logger.child({ stream: options.stream });
  }

  get node(): XdsNode | undefined {
    return this.nodeInfo;
  }

  get flavour(): Flavour | undefined {
    return this.nodeInfo ? flavourOf(this.nodeInfo) : undefined;
  }

  /**
   * Pushes every type whose resources changed for this node; a node no change
   * concerns gets nothing. With `changed`, only those names are looked at
   * (a push's cost follows the change, not the size of the config).
   */
  abstract refresh(changed?: ChangedNames): void;

  /** The names of `kind` that changed for this node's flavour; undefined: any may have. */
  protected changedOf(changed: ChangedNames | undefined, kind: ResourceKind): ReadonlySet<string> | undefined {
    const flavour = this.flavour;
    return changed && flavour ? changed.get(flavour)?.[kind] : undefined;
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
    return { stream: this.stream, protocol: this.protocol, node: this.nodeInfo, flavour: this.flavour, connectedAt: this.connectedAt, types };
  }

  /** What the node runs (ACKed) and what is in flight, per type, as encoded resources. */
  served(kind: ResourceKind): { acked: ReadonlyMap<string, EncodedResource>; sent: ReadonlyMap<string, EncodedResource>; state: TypeStatus | undefined } {
    const s = this.types.get(kind);
    return { acked: s?.acked ?? new Map(), sent: s?.sent ?? new Map(), state: this.status().types[kind] };
  }

  /** Records the node of the stream's first request; returns the type the request is about, if fedgate serves it. */
  protected begin(node: XdsNode | undefined, typeUrl: string): { kind: ResourceKind; state: TypeState; first: boolean } | undefined {
    if (!this.nodeInfo) {
      if (!node?.id) throw new XdsProtocolError("the first DiscoveryRequest of a stream must carry node.id");
      this.nodeInfo = node;
      this.logger = this.logger.child({ node: node.id });
    }
    const kind = kindOfTypeUrl(typeUrl);
    if (!kind) {
      this.logger.debug("ignoring a request for a type fedgate does not serve", { typeUrl });
      return undefined;
    }
    let state = this.types.get(kind);
    const first = !state;
    if (!state) {
      state = newTypeState();
      this.types.set(kind, state);
    }
    return { kind, state, first };
  }

  /** Every resource of `kind` the node subscribes to that exists now. */
  protected desired(kind: ResourceKind, state: TypeState): Map<string, EncodedResource> {
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

  protected hasSnapshot(): boolean {
    return this.host.resources(this.flavour ?? "gateway") !== undefined;
  }

  /** Stamps a push on the type's state and reports it; returns its version and nonce. */
  protected recordPush(kind: ResourceKind, state: TypeState, sent: Map<string, EncodedResource>, names: string[]): { version: string; nonce: string } {
    const version = this.host.nextVersion();
    const nonce = String(++this.nonces);
    state.sent = sent;
    state.sentVersion = version;
    state.sentNonce = nonce;
    state.sentAt = this.host.now();
    state.pending = true;
    state.pushes += 1;
    this.host.emit({ type: "push", stream: this.stream, nodeId: this.nodeInfo?.id ?? "", kind, version, names, at: state.sentAt });
    return { version, nonce };
  }

  /** The node applied a response: `acked` is now what it runs. */
  protected recordAck(kind: ResourceKind, state: TypeState, version: string, acked: Map<string, EncodedResource>): void {
    state.acked = acked;
    state.ackedVersion = version;
    state.ackedAt = this.host.now();
    this.host.emit({ type: "ack", stream: this.stream, nodeId: this.nodeInfo?.id ?? "", kind, version, at: state.ackedAt });
  }

  /** The node rejected a response and keeps running what it last ACKed. */
  protected recordNack(kind: ResourceKind, state: TypeState, rejected: { version: string; nonce: string; errorDetail: { code: number; message: string } | undefined }): void {
    const nack: NackRecord = {
      version: rejected.version,
      nonce: rejected.nonce,
      message: rejected.errorDetail?.message ?? "",
      code: rejected.errorDetail?.code ?? 0,
      at: this.host.now(),
    };
    state.nacks += 1;
    state.lastNack = nack;
    this.logger.warn("data plane rejected a config; it keeps its last accepted one", { kind, protocol: this.protocol, rejectedVersion: nack.version, runningVersion: state.ackedVersion, error: nack.message });
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
