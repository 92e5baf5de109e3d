import * as grpc from "@grpc/grpc-js";
import { asError, Backoff, type Logger, type Problem } from "../../common/index.ts";
import { createAdsCodec, type AdsCodec } from "../xds/ads-codec.ts";
import type { XdsNode } from "../xds/ads-session.ts";
import type { ProtoRegistry } from "../xds/proto-registry.ts";
import type { ResourceKind } from "../xds/type-urls.ts";

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

/**
 * What both ADS clients share (with ads-client.ts and delta-ads-client.ts,
 * the only files of gateway/dataplane that talk gRPC): one bidi stream,
 * responses applied one at a time in arrival order (applying may bind
 * sockets), the node sent in a stream's first request only, and a broken
 * stream reopened with jittered backoff. A response that arrives after its
 * stream broke is dropped: its nonce means nothing to the next stream, which
 * is sent the current state anew.
 */
export abstract class AdsStream<Req, Res> implements AdsConnection {
  protected readonly options: AdsClientOptions;
  protected readonly codec: AdsCodec;
  private readonly client: grpc.Client;
  private readonly backoff: Backoff;
  private call: grpc.ClientDuplexStream<Req, Res> | undefined;
  private nodeSent = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private applying: Promise<void> = Promise.resolve();
  private readonly methodPath: string;

  protected constructor(options: AdsClientOptions, methodPath: string) {
    this.options = options;
    this.methodPath = methodPath;
    this.codec = createAdsCodec(options.registry);
    this.backoff = new Backoff({ initialMs: options.reconnect.initialMs, maxMs: options.reconnect.maxMs });
    this.client = new grpc.Client(options.address, grpc.credentials.createInsecure(), { "grpc-node.flow_control_window": ADS_RECEIVE_WINDOW_BYTES });
  }

  abstract subscribe(kind: ResourceKind, names: readonly string[]): void;

  start(): void {
    this.open();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.client.close();
  }

  protected abstract encode(request: Req): Buffer;
  protected abstract decode(bytes: Buffer): Res;
  /** A new stream is open: send its first requests. */
  protected abstract onOpen(): void;
  protected abstract onResponse(response: Res): Promise<void>;
  /** The stream broke; the next one opens after the backoff. */
  protected onBroken(): void {}

  protected get streaming(): boolean {
    return this.call !== undefined;
  }

  /** Writes on the current stream (nothing while reconnecting); the node goes in its first request. */
  protected write(request: (node: XdsNode | undefined) => Req): void {
    const call = this.call;
    if (!call) return;
    const node = this.nodeSent ? undefined : this.options.node;
    this.nodeSent = true;
    call.write(request(node));
  }

  /** Hands a type's resources to the gateway: the problems that make it a NACK (none: ACK). */
  protected async apply(kind: ResourceKind, resources: readonly DecodedResource[], response: string): Promise<Problem[]> {
    this.backoff.reset();
    this.options.onStreamState?.(true);
    let problems: Problem[];
    try {
      problems = await this.options.onResponse(kind, resources);
    } catch (err) {
      problems = [{ path: "", message: `applying failed: ${asError(err).message}` }];
    }
    if (problems.length) this.options.logger.warn("NACK", { kind, response, problems });
    this.options.onResult?.(kind, problems.length === 0);
    return problems;
  }

  private open(): void {
    if (this.closed) return;
    this.nodeSent = false;
    const call = this.client.makeBidiStreamRequest(
      this.methodPath,
      (r: Req) => this.encode(r),
      (b: Buffer) => this.decode(b),
    );
    this.call = call;
    call.on("data", (response: Res) => {
      this.applying = this.applying.then(() => (this.call === call ? this.onResponse(response) : undefined));
    });
    call.on("error", (err: Error) => this.broken(call, err));
    call.on("end", () => this.broken(call, undefined));
    this.onOpen();
  }

  private broken(call: grpc.ClientDuplexStream<Req, Res>, err: Error | undefined): void {
    if (this.call !== call || this.closed) return;
    this.call = undefined;
    this.options.onStreamState?.(false);
    const delay = this.backoff.next();
    this.options.logger.warn("ADS stream broken; reconnecting", { delayMs: delay, err: err && asError(err) });
    this.onBroken();
    this.timer = setTimeout(() => this.open(), delay);
  }
}
