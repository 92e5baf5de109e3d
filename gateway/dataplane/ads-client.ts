import * as grpc from "@grpc/grpc-js";
import { asError, Backoff, type Logger, type Problem } from "../../common/index.ts";
import { ADS_METHOD_PATH, createAdsCodec, type DecodedDiscoveryResponse } from "../xds/ads-codec.ts";
import type { DiscoveryRequest, XdsNode } from "../xds/ads-session.ts";
import type { ProtoRegistry } from "../xds/proto-registry.ts";
import { kindOfTypeUrl, RESOURCE_KINDS, TYPE_URL, type ResourceKind } from "../xds/type-urls.ts";

/**
 * The ADS stream's HTTP/2 receive window (stream and connection). grpc-js's
 * default 64 KiB holds a full gateway's export listener (~100 KB at 200
 * exports) halfway until our WINDOW_UPDATE reaches the server, a round trip
 * per push; Envoy's default is 256 MiB. Responses are read as they arrive, so
 * the window bounds nothing we would otherwise buffer.
 */
export const ADS_RECEIVE_WINDOW_BYTES = 16 * 1024 * 1024;

/** One decoded resource of a response (JSON form), or the reason it could not be decoded. */
export type DecodedResource = { ok: true; value: Record<string, unknown> } | { ok: false; problem: Problem };

/** What the gateway drives, whichever ADS protocol the bootstrap chose. */
export interface AdsConnection {
  start(): void;
  /** Sets the names of a by-name type (EDS, RDS, SDS). */
  subscribe(kind: ResourceKind, names: readonly string[]): void;
  close(): void;
}

/** Decodes one Any of a response; a wrong type or undecodable bytes are a problem (a NACK). */
export function decodeResource(registry: ProtoRegistry, responseTypeUrl: string, resource: { typeUrl: string; value: Uint8Array }, index: number): DecodedResource {
  if (resource.typeUrl !== responseTypeUrl) return { ok: false, problem: { path: `resources[${index}]`, message: `type ${resource.typeUrl} in a ${responseTypeUrl} response` } };
  try {
    return { ok: true, value: registry.decodeAny(resource.typeUrl, resource.value) };
  } catch (err) {
    return { ok: false, problem: { path: `resources[${index}]`, message: `cannot decode: ${asError(err).message}` } };
  }
}

/** A NACK's error_detail: google.rpc.Code INVALID_ARGUMENT and the problems. */
export function nackDetail(problems: readonly Problem[]): { code: number; message: string } {
  return { code: 3, message: problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join("; ").slice(0, 4096) };
}

export interface AdsClientOptions {
  /** host:port of the ADS server. */
  address: string;
  registry: ProtoRegistry;
  node: XdsNode;
  logger: Logger;
  reconnect: { initialMs: number; maxMs: number };
  /** Applies one response of a type; returns the problems that make it a NACK (nothing applied then). */
  onResponse(kind: ResourceKind, resources: readonly DecodedResource[]): Problem[] | Promise<Problem[]>;
  onResult?(kind: ResourceKind, accepted: boolean): void;
  onStreamState?(up: boolean): void;
}

/**
 * The data plane's state-of-the-world ADS client on @grpc/grpc-js (this file
 * and delta-ads-client.ts are the only ones of gateway/dataplane that talk gRPC). Clusters and Listeners are
 * wildcard subscriptions; ClusterLoadAssignments, Routes and Secrets are
 * subscribed by name as the config references them. Every response is ACKed
 * or NACKed (with the problems, keeping the last accepted version). A broken
 * stream reconnects with jittered backoff and resubscribes with the versions
 * it holds.
 */
export class AdsClient implements AdsConnection {
  private readonly client: grpc.Client;
  private readonly codec;
  private readonly backoff: Backoff;
  private readonly subscriptions = new Map<ResourceKind, string[]>();
  private readonly accepted = new Map<ResourceKind, string>();
  private readonly nonces = new Map<ResourceKind, string>();
  private call: grpc.ClientDuplexStream<DiscoveryRequest, DecodedDiscoveryResponse> | undefined;
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
    this.subscriptions.set("cluster", []);
    this.subscriptions.set("listener", []);
  }

  start(): void {
    this.open();
  }

  /** Sets the names of a by-name type; sends a request only when they changed. */
  subscribe(kind: ResourceKind, names: readonly string[]): void {
    const sorted = [...new Set(names)].sort();
    const current = this.subscriptions.get(kind);
    if (current && current.length === sorted.length && current.every((n, i) => n === sorted[i])) return;
    this.subscriptions.set(kind, sorted);
    this.request(kind);
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
    const call = this.client.makeBidiStreamRequest(
      ADS_METHOD_PATH,
      (r: DiscoveryRequest) => this.codec.encodeRequest(r),
      (b: Buffer) => this.codec.decodeResponse(b),
    );
    this.call = call;
    call.on("data", (response: DecodedDiscoveryResponse) => {
      this.applying = this.applying.then(() => this.onResponse(response));
    });
    call.on("error", (err: Error) => this.onBroken(call, err));
    call.on("end", () => this.onBroken(call, undefined));
    // Wildcards first (CDS before EDS, LDS before RDS), then whatever by-name subscriptions we hold.
    for (const kind of RESOURCE_KINDS) if (this.subscriptions.has(kind)) this.request(kind);
  }

  private onBroken(call: grpc.ClientDuplexStream<DiscoveryRequest, DecodedDiscoveryResponse>, err: Error | undefined): void {
    if (this.call !== call || this.closed) return;
    this.call = undefined;
    this.options.onStreamState?.(false);
    const delay = this.backoff.next();
    this.options.logger.warn("ADS stream broken; reconnecting", { delayMs: delay, err: err && asError(err) });
    this.nonces.clear();
    this.timer = setTimeout(() => this.open(), delay);
  }

  private request(kind: ResourceKind, errorDetail?: { code: number; message: string }, nonce?: string): void {
    const call = this.call;
    if (!call) return;
    const node = this.nodeSent ? undefined : this.options.node;
    this.nodeSent = true;
    call.write({
      versionInfo: this.accepted.get(kind) ?? "",
      node,
      resourceNames: this.subscriptions.get(kind) ?? [],
      typeUrl: TYPE_URL[kind],
      responseNonce: nonce ?? this.nonces.get(kind) ?? "",
      errorDetail,
    });
  }

  private async onResponse(response: DecodedDiscoveryResponse): Promise<void> {
    this.backoff.reset();
    this.options.onStreamState?.(true);
    const kind = kindOfTypeUrl(response.typeUrl);
    if (!kind) {
      this.options.logger.warn("ADS response of an unknown type ignored", { typeUrl: response.typeUrl });
      return;
    }
    this.nonces.set(kind, response.nonce);
    const decoded = response.resources.map((r, i) => decodeResource(this.options.registry, response.typeUrl, r, i));
    let problems: Problem[];
    try {
      problems = await this.options.onResponse(kind, decoded);
    } catch (err) {
      problems = [{ path: "", message: `applying failed: ${asError(err).message}` }];
    }
    if (problems.length === 0) {
      this.accepted.set(kind, response.versionInfo);
      this.options.onResult?.(kind, true);
      this.request(kind, undefined, response.nonce);
    } else {
      this.options.logger.warn("NACK", { kind, version: response.versionInfo, problems });
      this.options.onResult?.(kind, false);
      this.request(kind, nackDetail(problems), response.nonce);
    }
  }
}
