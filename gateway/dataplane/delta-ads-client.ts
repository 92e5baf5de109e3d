import * as grpc from "@grpc/grpc-js";
import { asError, Backoff, type Problem } from "../../common/index.ts";
import { createAdsCodec, DELTA_ADS_METHOD_PATH, type DecodedDeltaDiscoveryResponse } from "../xds/ads-codec.ts";
import type { DeltaDiscoveryRequest } from "../xds/delta-ads-session.ts";
import { kindOfTypeUrl, RESOURCE_KINDS, TYPE_URL, type ResourceKind } from "../xds/type-urls.ts";
import { ADS_RECEIVE_WINDOW_BYTES, decodeResource, nackDetail, type AdsClientOptions, type AdsConnection, type DecodedResource } from "./ads-client.ts";

const WILDCARD = "*";

/** One resource as the client runs it: the version the server gave it and its decoded JSON. */
interface HeldResource {
  version: string;
  value: Record<string, unknown>;
}

/** Per type: the wildcard or the subscribed names, and what was last accepted (name -> resource). */
interface DeltaType {
  wildcard: boolean;
  names: Set<string>;
  held: Map<string, HeldResource>;
}

/**
 * The data plane's incremental (delta) ADS client on @grpc/grpc-js. Clusters
 * and Listeners are wildcard subscriptions (`*`); the rest are subscribed and
 * unsubscribed by name. Each response's upserts and removals are applied to
 * the held set of its type and the WHOLE resulting set goes to `onResponse`,
 * so the appliers are those of state of the world. A NACK keeps nothing of the
 * rejected response. A reconnect resubscribes with `initial_resource_versions`
 * of what is held, so the server re-sends only what changed meanwhile.
 */
export class DeltaAdsClient implements AdsConnection {
  private readonly client: grpc.Client;
  private readonly codec;
  private readonly backoff: Backoff;
  private readonly types = new Map<ResourceKind, DeltaType>();
  private call: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DecodedDeltaDiscoveryResponse> | undefined;
  /** Types whose first request went out on the current stream. */
  private readonly opened = new Set<ResourceKind>();
  private nodeSent = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Responses are applied one at a time, in arrival order (applying may bind sockets). */
  private applying: Promise<void> = Promise.resolve();
  private readonly options: AdsClientOptions;

  constructor(options: AdsClientOptions) {
    this.options = options;
    this.codec = createAdsCodec(options.registry);
    this.backoff = new Backoff({ initialMs: options.reconnect.initialMs, maxMs: options.reconnect.maxMs });
    this.client = new grpc.Client(options.address, grpc.credentials.createInsecure(), { "grpc-node.flow_control_window": ADS_RECEIVE_WINDOW_BYTES });
    for (const kind of ["cluster", "listener"] as const) this.types.set(kind, { wildcard: true, names: new Set(), held: new Map() });
  }

  start(): void {
    this.open();
  }

  /** Sets the names of a by-name type; sends only the difference, and drops what is no longer wanted. */
  subscribe(kind: ResourceKind, names: readonly string[]): void {
    const wanted = new Set(names);
    let type = this.types.get(kind);
    if (!type) {
      type = { wildcard: false, names: wanted, held: new Map() };
      this.types.set(kind, type);
      this.openType(kind);
      return;
    }
    const subscribe = [...wanted].filter((n) => !type.names.has(n));
    const unsubscribe = [...type.names].filter((n) => !wanted.has(n));
    if (subscribe.length === 0 && unsubscribe.length === 0) return;
    type.names = wanted;
    // The server sends no removal for an unsubscribed name: it is ours to forget.
    for (const name of unsubscribe) type.held.delete(name);
    if (!this.opened.has(kind)) return this.openType(kind);
    this.write({ typeUrl: TYPE_URL[kind], subscribe, unsubscribe });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.client.close();
  }

  private open(): void {
    if (this.closed) return;
    this.nodeSent = false;
    this.opened.clear();
    const call = this.client.makeBidiStreamRequest(
      DELTA_ADS_METHOD_PATH,
      (r: DeltaDiscoveryRequest) => this.codec.encodeDeltaRequest(r),
      (b: Buffer) => this.codec.decodeDeltaResponse(b),
    );
    this.call = call;
    call.on("data", (response: DecodedDeltaDiscoveryResponse) => {
      this.applying = this.applying.then(() => this.onResponse(call, response));
    });
    call.on("error", (err: Error) => this.onBroken(call, err));
    call.on("end", () => this.onBroken(call, undefined));
    // Wildcards first (CDS before EDS, LDS before RDS), then whatever by-name subscriptions we hold.
    for (const kind of RESOURCE_KINDS) if (this.types.has(kind)) this.openType(kind);
  }

  /** A type's first request on this stream: its subscriptions and the versions held. */
  private openType(kind: ResourceKind): void {
    const type = this.types.get(kind);
    if (!type || !this.call) return;
    this.opened.add(kind);
    this.write({
      typeUrl: TYPE_URL[kind],
      subscribe: type.wildcard ? [WILDCARD] : [...type.names].sort(),
      initialResourceVersions: Object.fromEntries([...type.held].map(([name, r]) => [name, r.version])),
    });
  }

  private onBroken(call: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DecodedDeltaDiscoveryResponse>, err: Error | undefined): void {
    if (this.call !== call || this.closed) return;
    this.call = undefined;
    this.options.onStreamState?.(false);
    const delay = this.backoff.next();
    this.options.logger.warn("ADS stream broken; reconnecting", { delayMs: delay, err: err && asError(err) });
    this.timer = setTimeout(() => this.open(), delay);
  }

  private write(request: Partial<DeltaDiscoveryRequest> & { typeUrl: string }): void {
    const call = this.call;
    if (!call) return;
    const node = this.nodeSent ? undefined : this.options.node;
    this.nodeSent = true;
    call.write({ node, subscribe: [], unsubscribe: [], initialResourceVersions: {}, responseNonce: "", errorDetail: undefined, ...request });
  }

  private async onResponse(call: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DecodedDeltaDiscoveryResponse>, response: DecodedDeltaDiscoveryResponse): Promise<void> {
    // A response of a broken stream: its nonce means nothing to the next one, which re-sends what we lack.
    if (this.call !== call) return;
    this.backoff.reset();
    this.options.onStreamState?.(true);
    const kind = kindOfTypeUrl(response.typeUrl);
    const type = kind && this.types.get(kind);
    if (!kind || !type) {
      this.options.logger.warn("ADS response of an unknown or unsubscribed type ignored", { typeUrl: response.typeUrl });
      return;
    }
    // The candidate set: what is held, with this response's upserts and removals.
    const next = new Map(type.held);
    const failed: DecodedResource[] = [];
    response.resources.forEach((r, i) => {
      // A name unsubscribed while this response was on its way is not taken back.
      if (!type.wildcard && !type.names.has(r.name)) return;
      const decoded = decodeResource(this.options.registry, response.typeUrl, r, i);
      if (decoded.ok) next.set(r.name, { version: r.version, value: decoded.value });
      else failed.push(decoded);
    });
    for (const name of response.removedResources) next.delete(name);
    const whole: DecodedResource[] = [...[...next.values()].map((r): DecodedResource => ({ ok: true, value: r.value })), ...failed];
    let problems: Problem[];
    try {
      problems = await this.options.onResponse(kind, whole);
    } catch (err) {
      problems = [{ path: "", message: `applying failed: ${asError(err).message}` }];
    }
    if (problems.length === 0) {
      type.held = next;
      this.options.onResult?.(kind, true);
      this.write({ typeUrl: response.typeUrl, responseNonce: response.nonce });
    } else {
      this.options.logger.warn("NACK", { kind, nonce: response.nonce, problems });
      this.options.onResult?.(kind, false);
      this.write({ typeUrl: response.typeUrl, responseNonce: response.nonce, errorDetail: nackDetail(problems) });
    }
  }
}
