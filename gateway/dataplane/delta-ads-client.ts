import { DELTA_ADS_METHOD_PATH, type DecodedDeltaDiscoveryResponse } from "../xds/ads-codec.ts";
import type { DeltaDiscoveryRequest } from "../xds/delta-ads-session.ts";
import { kindOfTypeUrl, RESOURCE_KINDS, TYPE_URL, type ResourceKind } from "../xds/type-urls.ts";
import { AdsStream, decodeResource, nackDetail, type AdsClientOptions, type DecodedResource } from "./ads-stream.ts";

const WILDCARD = "*";
/** An initial resource version no content hash equals: "held, but send it again". */
const UNKNOWN_VERSION = "";

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
  /** The last response of the type was NACKed: part of what is held may not be running. */
  nacked: boolean;
}

/**
 * The data plane's incremental (delta) ADS client on @grpc/grpc-js. Clusters
 * and Listeners are wildcard subscriptions (`*`); the rest are subscribed and
 * unsubscribed by name. Each response's upserts and removals are applied to
 * the held set of its type and the WHOLE resulting set goes to `onResponse`,
 * so the appliers are those of state of the world. A NACKed response is held
 * all the same: the appliers ran what they could of it (listeners bind
 * best-effort), and the server will not re-send what it did not change, so
 * the next response of the type hands them the same set again, the rejected
 * part included, as state of the world does. A resource that cannot be
 * decoded is not held: its last good version stays. A reconnect resubscribes with `initial_resource_versions`
 * of what is held, so the server re-sends only what changed meanwhile; after a NACK the type's names go
 * with no version, so the server re-sends all of them that still exist (and removes the rest) and what
 * did not run (a listener whose port was taken) is tried again, as a state-of-the-world reconnect does.
 */
export class DeltaAdsClient extends AdsStream<DeltaDiscoveryRequest, DecodedDeltaDiscoveryResponse> {
  private readonly types = new Map<ResourceKind, DeltaType>();
  /** Types whose first request went out on the current stream. */
  private readonly opened = new Set<ResourceKind>();

  constructor(options: AdsClientOptions) {
    super(options, DELTA_ADS_METHOD_PATH);
    for (const kind of ["cluster", "listener"] as const) this.types.set(kind, { wildcard: true, names: new Set(), held: new Map(), nacked: false });
  }

  /** Sets the names of a by-name type; sends only the difference, and drops what is no longer wanted. */
  subscribe(kind: ResourceKind, names: readonly string[]): void {
    const wanted = new Set(names);
    let type = this.types.get(kind);
    if (!type) {
      type = { wildcard: false, names: wanted, held: new Map(), nacked: false };
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
    this.send({ typeUrl: TYPE_URL[kind], subscribe, unsubscribe });
  }

  protected encode(request: DeltaDiscoveryRequest): Buffer {
    return this.codec.encodeDeltaRequest(request);
  }

  protected decode(bytes: Buffer): DecodedDeltaDiscoveryResponse {
    return this.codec.decodeDeltaResponse(bytes);
  }

  protected onOpen(): void {
    this.opened.clear();
    // Wildcards first (CDS before EDS, LDS before RDS), then whatever by-name subscriptions we hold.
    for (const kind of RESOURCE_KINDS) if (this.types.has(kind)) this.openType(kind);
  }

  /** A type's first request on this stream: its subscriptions and the versions held. */
  private openType(kind: ResourceKind): void {
    const type = this.types.get(kind);
    if (!type || !this.streaming) return;
    this.opened.add(kind);
    this.send({
      typeUrl: TYPE_URL[kind],
      subscribe: type.wildcard ? [WILDCARD] : [...type.names].sort(),
      initialResourceVersions: Object.fromEntries([...type.held].map(([name, r]) => [name, type.nacked ? UNKNOWN_VERSION : r.version])),
    });
  }

  private send(request: Partial<DeltaDiscoveryRequest> & { typeUrl: string }): void {
    this.write((node) => ({ node, subscribe: [], unsubscribe: [], initialResourceVersions: {}, responseNonce: "", errorDetail: undefined, ...request }));
  }

  protected async onResponse(response: DecodedDeltaDiscoveryResponse): Promise<void> {
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
    const problems = await this.apply(kind, whole, `nonce ${response.nonce}`);
    type.held = next;
    type.nacked = problems.length > 0;
    this.send({ typeUrl: response.typeUrl, responseNonce: response.nonce, ...(problems.length ? { errorDetail: nackDetail(problems) } : {}) });
  }
}
