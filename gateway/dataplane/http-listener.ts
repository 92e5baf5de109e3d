import { createServer as createH2Server, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { createServer, type Server, type Socket } from "node:net";
import { Readable } from "node:stream";
import { asError } from "../../common/index.ts";
import { h2Downstream, type Downstream } from "./http-downstream.ts";
import { H1ServerConnection } from "./http-h1-downstream.ts";
import { forward, localReply, type ForwardContext } from "./http-forwarder.ts";
import { matchRoute, matchVirtualHost } from "./http-router.ts";
import { HttpUpstreamPool } from "./http-upstream-pool.ts";
import { boundPort, listen } from "./import-listener.ts";
import type { ListenerContext } from "./listener-context.ts";
import type { MetricSeries } from "./metrics.ts";
import { replayed } from "./replayed-socket.ts";
import type { HttpListenerSpec } from "./resources.ts";

/** Request header block limit (HTTP/1.1 head, HTTP/2 header list): above it, 431. */
export const MAX_HEADER_BYTES = 16 * 1024;
/**
 * What HTTP/2 clients are told (SETTINGS_MAX_HEADER_LIST_SIZE). Node resets a
 * stream over it (ENHANCE_YOUR_CALM) before the gateway sees the request, so
 * it is above MAX_HEADER_BYTES: a header list between the two gets its 431.
 */
export const H2_MAX_HEADER_LIST_BYTES = 4 * MAX_HEADER_BYTES;
/** RFC 9113 §6.5.2: a header field's size is its name and value octets plus 32. */
const H2_HEADER_FIELD_OVERHEAD_BYTES = 32;
/** How often stalled request heads and idle HTTP/1.1 connections are looked for. */
const HEADERS_CHECK_INTERVAL_MS = 1_000;
/** An idle HTTP/2 connection is closed after this. */
const H2_IDLE_TIMEOUT_MS = 120_000;
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * An L7 import listener: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one
 * port, told apart by the connection preface. Each request is routed by
 * Host / :authority and path through the listener's RDS route configuration
 * and forwarded on its own (per-request balancing, also within one long-lived
 * h2 connection). Bad input is answered (431, 400, 408) or cut, counted by
 * reason and logged, and never stops the listener.
 */
export class HttpListener {
  spec: HttpListenerSpec;
  private readonly server: Server;
  /** Open HTTP/1.1 connections, for the stalled-head sweep and for closing. */
  private readonly h1 = new Set<H1ServerConnection>();
  private readonly sweep: NodeJS.Timeout;
  /** The body of requests without one (never read). */
  private readonly emptyBody = new Readable({ read: () => undefined });
  private readonly h2: Http2Server;
  private readonly ctx: ListenerContext;
  private readonly pool: HttpUpstreamPool;
  private readonly forwardCtx: ForwardContext;
  /** Request counters by cluster, serving cluster and status class (index: status / 100). */
  private readonly requestSeries = new Map<string, Map<string, MetricSeries[]>>();

  private constructor(spec: HttpListenerSpec, ctx: ListenerContext) {
    this.spec = spec;
    this.ctx = ctx;
    this.pool = new HttpUpstreamPool({ secrets: ctx.secrets, tunnels: ctx.tunnels, onTlsFailure: (reason) => ctx.metrics.tlsFailures.labels({ side: "upstream", reason }).add() });
    this.forwardCtx = {
      pool: this.pool,
      metrics: ctx.metrics,
      logger: ctx.logger,
      requests: (cluster, servedBy, status) => {
        // Nested lookups: no key string per request.
        let byServer = this.requestSeries.get(cluster);
        if (!byServer) this.requestSeries.set(cluster, (byServer = new Map<string, MetricSeries[]>()));
        let byClass = byServer.get(servedBy);
        if (!byClass) byServer.set(servedBy, (byClass = []));
        const hundreds = Math.floor(status / 100);
        return (byClass[hundreds] ??= ctx.metrics.httpRequests.labels({ cluster, served_by: servedBy, class: `${hundreds}xx` }));
      },
    };
    // A client must send its whole request head (HTTP/2: its preface) within the bootstrap's handshake timeout.
    this.sweep = setInterval(() => {
      const now = Date.now();
      for (const c of this.h1) c.expire(now);
    }, HEADERS_CHECK_INTERVAL_MS);
    this.sweep.unref();
    this.h2 = createH2Server({ settings: { maxHeaderListSize: H2_MAX_HEADER_LIST_BYTES }, maxSessionInvalidFrames: 100 });
    this.h2.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => this.onH2Stream(stream, headers, rawHeaders));
    this.h2.on("sessionError", (err: Error) => this.badInput("h2_protocol", err));
    this.h2.on("session", (session) => {
      session.setTimeout(H2_IDLE_TIMEOUT_MS, () => session.close());
      session.on("frameError", () => this.badInput("h2_frame", undefined));
    });
    this.server = createServer({ noDelay: true }, (socket) => this.onConnection(socket));
  }

  static async start(options: { spec: HttpListenerSpec; host: string; port: number; ctx: ListenerContext }): Promise<HttpListener> {
    const listener = new HttpListener(options.spec, options.ctx);
    await listen(listener.server, options.host, options.port, options.spec.name);
    return listener;
  }

  get port(): number {
    return boundPort(this.server);
  }

  /**
   * Stops accepting; idle keep-alive clients are closed, requests in flight
   * carry on until the gateway drains them. Pooled upstream connections close
   * when idle (`UPSTREAM_H1_IDLE_TIMEOUT_MS`, h2 sessions `UPSTREAM_IDLE_TIMEOUT_MS`).
   */
  close(): void {
    this.server.close();
    for (const c of this.h1) c.closeWhenIdle();
  }

  /** Closes pooled upstream connections (gateway shutdown). */
  closeUpstreams(): void {
    this.pool.close();
    clearInterval(this.sweep);
    for (const c of this.h1) c.socket.destroy();
  }

  private onConnection(socket: Socket): void {
    const name = this.spec.name;
    this.ctx.connections.add(socket, { total: this.ctx.metrics.downstreamConnections.labels({ listener: name }), active: this.ctx.metrics.downstreamActive.labels({ listener: name }) });
    socket.on("error", () => socket.destroy());
    let head = Buffer.alloc(0);
    const timer = setTimeout(() => {
      this.badInput("headers_timeout", undefined);
      socket.destroy();
    }, this.ctx.handshakeTimeoutMs);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const h2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (h2 && n < H2_PREFACE.length) return;
      clearTimeout(timer);
      socket.removeListener("data", onData);
      if (h2) {
        this.h2.emit("connection", replayed(socket, head));
        return;
      }
      this.startH1(socket, head);
    };
    socket.on("data", onData);
    socket.once("close", () => clearTimeout(timer));
  }

  private startH1(socket: Socket, head: Buffer): void {
    const conn = new H1ServerConnection({
      socket,
      maxHeadBytes: MAX_HEADER_BYTES,
      headTimeoutMs: this.ctx.handshakeTimeoutMs,
      emptyBody: this.emptyBody,
      onRequest: (down) => this.dispatch(down),
      onBadInput: (reason, err) => this.badInput(reason, err),
      onClose: (c) => this.h1.delete(c),
    });
    this.h1.add(conn);
    conn.start(head);
  }

  private onH2Stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    stream.on("error", destroyOnError);
    const down = h2Downstream(stream, headers);
    if (h2HeaderListBytes(rawHeaders) > MAX_HEADER_BYTES) {
      this.badInput("header_overflow", undefined);
      // A gRPC caller reads a status, not the HTTP code: trailers-only RESOURCE_EXHAUSTED (8), as gRPC servers answer oversized metadata.
      if (down.grpc) return this.fail(down, 431, 8, "request metadata too large");
      stream.respond({ ":status": 431 }, { endStream: true });
      return;
    }
    this.dispatch(down);
  }

  private dispatch(down: Downstream): void {
    const config = this.ctx.route(this.spec.routeConfig);
    if (!down.authority || !down.path.startsWith("/")) {
      this.badInput("malformed", undefined);
      return this.fail(down, 400, 13, "a request needs a Host (or :authority) and an origin-form path");
    }
    // gRPC UNIMPLEMENTED (12) for a name nothing routes; UNAVAILABLE (14) while config is missing.
    if (!config) return this.fail(down, 503, 14, "no route configuration yet");
    const vhost = matchVirtualHost(config, down.authority);
    const route = vhost && matchRoute(vhost, down.path);
    if (!route) return this.fail(down, 404, 12, `no route for ${down.authority}${down.path}`);
    const cluster = this.ctx.cluster(route.cluster);
    if (!cluster) return this.fail(down, 503, 14, `unknown cluster ${route.cluster}`);
    forward(this.forwardCtx, down, route, cluster).catch((err: unknown) => {
      this.ctx.logger.error("request forwarding failed", { listener: this.spec.name, err: asError(err) });
      if (!down.headersSent) localReply(this.forwardCtx, down, route.cluster, 502, down.grpc ? 13 : undefined, "gateway error");
      else down.abort();
    });
  }

  private fail(down: Downstream, status: number, grpcStatus: number, message: string): void {
    localReply(this.forwardCtx, down, "", status, down.grpc ? grpcStatus : undefined, message);
  }

  private badInput(reason: string, err: Error | undefined): void {
    this.ctx.metrics.httpDownstreamErrors.labels({ listener: this.spec.name, reason }).add();
    this.ctx.logger.warn("bad downstream HTTP input", { listener: this.spec.name, reason, err: err && asError(err) });
  }
}

/** The header list's size as HTTP/2 counts it, from the flat [name, value, ...] list. */
function h2HeaderListBytes(rawHeaders: readonly string[]): number {
  let bytes = 0;
  for (const field of rawHeaders) bytes += Buffer.byteLength(field);
  return bytes + (rawHeaders.length / 2) * H2_HEADER_FIELD_OVERHEAD_BYTES;
}

/** An error on a stream ends that stream only (shared, so no closure per stream). */
function destroyOnError(this: ServerHttp2Stream): void {
  this.destroy();
}
