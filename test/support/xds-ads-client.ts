import * as grpc from "@grpc/grpc-js";
import {
  ADS_METHOD_PATH,
  createAdsCodec,
  DELTA_ADS_METHOD_PATH,
  TYPE_URL,
  type DecodedDeltaDiscoveryResponse,
  type DecodedDiscoveryResponse,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  type ProtoRegistry,
  type ResourceKind,
} from "../../gateway/internal.ts";

/** Resolves when `predicate` holds after some response; rejects after `timeoutMs`. */
function waitUntil(nodeId: string, waiters: Set<() => void>, predicate: () => boolean, timeoutMs: number): Promise<void> {
  if (predicate()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    // Checked on every response and polled, for conditions on the server side (an ACK landing).
    const poll = setInterval(() => check(), 5);
    const timer = setTimeout(() => {
      waiters.delete(check);
      clearInterval(poll);
      reject(new Error(`${nodeId}: condition not met within ${timeoutMs} ms`));
    }, timeoutMs);
    const check = () => {
      if (!predicate()) return;
      clearTimeout(timer);
      clearInterval(poll);
      waiters.delete(check);
      resolve();
    };
    waiters.add(check);
  });
}

export interface ReceivedType {
  versionInfo: string;
  nonce: string;
  /** name -> decoded JSON, as this client received it on the wire. */
  resources: Map<string, Record<string, unknown>>;
  responses: number;
}

export interface AdsTestClientOptions {
  address: string;
  registry: ProtoRegistry;
  nodeId: string;
  dataplane?: "gateway" | "proxyless";
  /** Default true; false: resources are held as `{}` (the benchmark's cheapest honest node). */
  decodeResources?: boolean;
  /** A TCP connection of its own, like a real node, instead of grpc-js's shared subchannel. */
  ownConnection?: boolean;
  /**
   * Default true: every response is kept in `responses`. The benchmark's nodes
   * keep none, as a real node does: each kept response pins its whole received
   * message (~100 KB for a gateway's export listener), growing the nodes' heap every change.
   */
  keepResponses?: boolean;
  /**
   * The HTTP/2 receive window, stream and connection (`grpc-node.flow_control_window`); absent:
   * grpc-js's 64 KiB, which holds a ~100 KB response halfway until this client's WINDOW_UPDATE
   * reaches the server. Envoy's default `initial_stream_window_size` is 256 MiB.
   */
  flowControlWindowBytes?: number;
}

function channelOptions(options: AdsTestClientOptions): grpc.ChannelOptions {
  return {
    ...(options.ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
    ...(options.flowControlWindowBytes ? { "grpc-node.flow_control_window": options.flowControlWindowBytes } : {}),
  };
}

/**
 * A raw ADS client on @grpc/grpc-js that records every DiscoveryResponse and
 * ACKs it (or NACKs it when `nack` says so). For tests and the benchmark.
 */
export class AdsTestClient {
  readonly received = new Map<ResourceKind, ReceivedType>();
  readonly responses: DecodedDiscoveryResponse[] = [];
  private readonly call: grpc.ClientDuplexStream<DiscoveryRequest, DecodedDiscoveryResponse>;
  private readonly client: grpc.Client;
  private readonly subscriptions = new Map<ResourceKind, string[]>();
  private readonly waiters = new Set<() => void>();
  private readonly nodeId: string;
  private readonly registry: ProtoRegistry;
  private readonly decodeResources: boolean;
  private readonly keepResponses: boolean;
  nack: ((response: DecodedDiscoveryResponse) => string | undefined) | undefined;

  constructor(options: AdsTestClientOptions) {
    const codec = createAdsCodec(options.registry);
    this.registry = options.registry;
    this.nodeId = options.nodeId;
    this.decodeResources = options.decodeResources ?? true;
    this.keepResponses = options.keepResponses ?? true;
    this.client = new grpc.Client(options.address, grpc.credentials.createInsecure(), channelOptions(options));
    this.call = this.client.makeBidiStreamRequest(ADS_METHOD_PATH, (r: DiscoveryRequest) => codec.encodeRequest(r), (b: Buffer) => codec.decodeResponse(b));
    this.call.on("data", (response: DecodedDiscoveryResponse) => this.onResponse(response));
    this.call.on("error", () => undefined);
    this.first = { id: options.nodeId, cluster: "a", userAgentName: "fedgate-test", dataplane: options.dataplane };
  }

  private first: DiscoveryRequest["node"];

  subscribe(kind: ResourceKind, names: string[]): void {
    this.subscriptions.set(kind, names);
    const state = this.received.get(kind);
    this.send({ versionInfo: state?.versionInfo ?? "", node: this.first, resourceNames: names, typeUrl: TYPE_URL[kind], responseNonce: state?.nonce ?? "", errorDetail: undefined });
    this.first = undefined;
  }

  waitFor(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
    return waitUntil(this.nodeId, this.waiters, predicate, timeoutMs);
  }

  close(): void {
    this.call.end();
    this.client.close();
  }

  private send(request: DiscoveryRequest): void {
    this.call.write(request);
  }

  private onResponse(response: DecodedDiscoveryResponse): void {
    if (this.keepResponses) this.responses.push(response);
    const kind = (Object.keys(TYPE_URL) as ResourceKind[]).find((k) => TYPE_URL[k] === response.typeUrl);
    if (!kind) return;
    const reason = this.nack?.(response);
    const previous = this.received.get(kind);
    if (reason === undefined) {
      const resources = new Map<string, Record<string, unknown>>();
      for (const r of response.resources) {
        const decoded = this.decodeResources ? this.registry.decodeAny(r.typeUrl, r.value) : {};
        const declared = decoded.name ?? decoded.cluster_name;
        const name = typeof declared === "string" ? declared : String(resources.size);
        resources.set(name, decoded);
      }
      this.received.set(kind, { versionInfo: response.versionInfo, nonce: response.nonce, resources, responses: (previous?.responses ?? 0) + 1 });
      this.send({ versionInfo: response.versionInfo, node: undefined, resourceNames: this.subscriptions.get(kind) ?? [], typeUrl: response.typeUrl, responseNonce: response.nonce, errorDetail: undefined });
    } else {
      const kept = previous ?? { versionInfo: "", nonce: "", resources: new Map(), responses: 0 };
      this.received.set(kind, { ...kept, nonce: response.nonce, responses: kept.responses + 1 });
      this.send({ versionInfo: kept.versionInfo, node: undefined, resourceNames: this.subscriptions.get(kind) ?? [], typeUrl: response.typeUrl, responseNonce: response.nonce, errorDetail: { code: 3, message: reason } });
    }
    for (const w of [...this.waiters]) w();
  }
}

/** One resource as a delta client holds it. */
export interface HeldResource {
  version: string;
  /** Decoded JSON; `{}` when the client does not decode. */
  resource: Record<string, unknown>;
}

/**
 * A raw incremental (DeltaAggregatedResources) ADS client on @grpc/grpc-js:
 * applies each response's upserts and removals to what it holds per type, and
 * ACKs it (or NACKs it when `nack` says so, keeping what it held).
 */
export class DeltaAdsTestClient {
  /** name -> resource, per type: what the client runs. */
  readonly held = new Map<ResourceKind, Map<string, HeldResource>>();
  readonly responses: DecodedDeltaDiscoveryResponse[] = [];
  private readonly call: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DecodedDeltaDiscoveryResponse>;
  private readonly client: grpc.Client;
  private readonly waiters = new Set<() => void>();
  private readonly nodeId: string;
  private readonly registry: ProtoRegistry;
  private readonly decodeResources: boolean;
  private readonly keepResponses: boolean;
  private first: DeltaDiscoveryRequest["node"];
  nack: ((response: DecodedDeltaDiscoveryResponse) => string | undefined) | undefined;

  constructor(options: AdsTestClientOptions) {
    const codec = createAdsCodec(options.registry);
    this.registry = options.registry;
    this.nodeId = options.nodeId;
    this.decodeResources = options.decodeResources ?? true;
    this.keepResponses = options.keepResponses ?? true;
    this.client = new grpc.Client(options.address, grpc.credentials.createInsecure(), channelOptions(options));
    this.call = this.client.makeBidiStreamRequest(DELTA_ADS_METHOD_PATH, (r: DeltaDiscoveryRequest) => codec.encodeDeltaRequest(r), (b: Buffer) => codec.decodeDeltaResponse(b));
    this.call.on("data", (response: DecodedDeltaDiscoveryResponse) => this.onResponse(response));
    this.call.on("error", () => undefined);
    this.first = { id: options.nodeId, cluster: "a", userAgentName: "fedgate-test", dataplane: options.dataplane };
  }

  /** Subscribes to more names (`*`: the wildcard; none on a type's first request: the legacy wildcard for LDS/CDS). */
  subscribe(kind: ResourceKind, names: string[], initialResourceVersions: Record<string, string> = {}): void {
    this.request({ typeUrl: TYPE_URL[kind], subscribe: names, initialResourceVersions });
  }

  unsubscribe(kind: ResourceKind, names: string[]): void {
    this.request({ typeUrl: TYPE_URL[kind], unsubscribe: names });
  }

  /** name -> version of what the client holds: the `initial_resource_versions` of a reconnect. */
  versions(kind: ResourceKind): Record<string, string> {
    return Object.fromEntries([...(this.held.get(kind) ?? new Map<string, HeldResource>())].map(([name, r]) => [name, r.version]));
  }

  /** The responses of one type received so far. */
  responsesOf(kind: ResourceKind): DecodedDeltaDiscoveryResponse[] {
    return this.responses.filter((r) => r.typeUrl === TYPE_URL[kind]);
  }

  waitFor(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
    return waitUntil(this.nodeId, this.waiters, predicate, timeoutMs);
  }

  close(): void {
    this.call.end();
    this.client.close();
  }

  private request(r: Partial<DeltaDiscoveryRequest> & { typeUrl: string }): void {
    this.call.write({ node: this.first, subscribe: [], unsubscribe: [], initialResourceVersions: {}, responseNonce: "", errorDetail: undefined, ...r });
    this.first = undefined;
  }

  private onResponse(response: DecodedDeltaDiscoveryResponse): void {
    if (this.keepResponses) this.responses.push(response);
    const kind = (Object.keys(TYPE_URL) as ResourceKind[]).find((k) => TYPE_URL[k] === response.typeUrl);
    if (!kind) return;
    const reason = this.nack?.(response);
    if (reason === undefined) {
      const held = this.held.get(kind) ?? new Map<string, HeldResource>();
      for (const r of response.resources) held.set(r.name, { version: r.version, resource: this.decodeResources ? this.registry.decodeAny(r.typeUrl, r.value) : {} });
      for (const name of response.removedResources) held.delete(name);
      this.held.set(kind, held);
      this.request({ typeUrl: response.typeUrl, responseNonce: response.nonce });
    } else {
      this.request({ typeUrl: response.typeUrl, responseNonce: response.nonce, errorDetail: { code: 3, message: reason } });
    }
    for (const w of [...this.waiters]) w();
  }
}
