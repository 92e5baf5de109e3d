import { AdsSessionBase, type ChangedNames, type SessionHost, type TypeState, type XdsNode } from "./ads-session-base.ts";
import type { EncodedResource } from "./resource-validation.ts";
import { RESOURCE_KINDS, TYPE_URL, wildcardWhenEmpty, type ResourceKind } from "./type-urls.ts";

export { flavourOf, type NackRecord, type NodeStatus, type SessionEvent, type SessionHost, type TypeStatus, type XdsNode } from "./ads-session-base.ts";

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

/**
 * The state-of-the-world ADS protocol for one stream, free of gRPC: fed
 * decoded requests, it calls `send` with responses. Versions are server-wide
 * and increasing; nonces are per stream. A request carrying a stale nonce is
 * ignored (xDS spec); an ACK moves the node's running config forward; a NACK
 * is recorded and leaves it where it was, and the rejected content is not
 * re-sent until the translation changes.
 */
export class AdsSession extends AdsSessionBase {
  readonly protocol = "sotw";
  private readonly send: (response: DiscoveryResponse) => void;

  constructor(options: { stream: number; host: SessionHost; send: (response: DiscoveryResponse) => void }) {
    super(options);
    this.send = options.send;
  }

  /** Handles one request; throws `XdsProtocolError` when the stream must end. */
  handleRequest(request: DiscoveryRequest): void {
    const begun = this.begin(request.node, request.typeUrl);
    if (!begun) return;
    const { kind, state } = begun;
    const first = state.sentNonce === undefined;
    if (!first && request.responseNonce !== "" && request.responseNonce !== state.sentNonce) {
      // A reply to a response that has been superseded: its subscription is stale too.
      return;
    }
    // On a new stream a nonce from an earlier server is meaningless: treat it as the initial request.
    if (!first && request.responseNonce !== "" && state.pending) {
      state.pending = false;
      if (request.errorDetail) this.recordNack(kind, state, { version: state.sentVersion ?? "", nonce: request.responseNonce, errorDetail: request.errorDetail });
      else this.recordAck(kind, state, request.versionInfo, state.sent);
    }
    const names = new Set(request.resourceNames.filter((n) => n !== "*"));
    const wildcard = request.resourceNames.includes("*") || (request.resourceNames.length === 0 && wildcardWhenEmpty(kind));
    const changed = wildcard !== state.wildcard || names.size !== state.subscribed.size || [...names].some((n) => !state.subscribed.has(n));
    state.subscribed = names;
    state.wildcard = wildcard;
    // LDS and CDS are full state: a reply tells the node which names do not exist.
    if (first || changed) this.push(kind, state, first || kind === "listener" || kind === "cluster");
  }

  refresh(changed?: ChangedNames): void {
    for (const kind of RESOURCE_KINDS) {
      const state = this.types.get(kind);
      if (!state || state.sentNonce === undefined) continue;
      // What was sent is what was desired (each request and refresh pushes any difference), so only a changed name this node wants can make one.
      const names = this.changedOf(changed, kind);
      if (names && ![...names].some((name) => state.wildcard || state.subscribed.has(name))) continue;
      this.push(kind, state, false);
    }
  }

  private push(kind: ResourceKind, state: TypeState, force: boolean): void {
    if (!this.hasSnapshot() && !force) return;
    const desired = this.desired(kind, state);
    if (!force && sameContent(desired, state.sent)) return;
    const resources = [...desired.values()];
    const { version, nonce } = this.recordPush(kind, state, desired, resources.map((r) => r.name));
    this.send({ versionInfo: version, typeUrl: TYPE_URL[kind], nonce, resources });
  }
}

function sameContent(a: ReadonlyMap<string, EncodedResource>, b: ReadonlyMap<string, EncodedResource>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, r] of a) if (b.get(name)?.hash !== r.hash) return false;
  return true;
}
