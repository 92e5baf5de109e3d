import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { constants } from "node:http2";
import type { Readable } from "node:stream";
import { endToEndHeaders, type Downstream } from "./http-downstream.ts";
import type { H1Connection } from "./http-h1-connection.ts";
import { UpstreamConnectError, type HttpUpstreamPool } from "./http-upstream-pool.ts";
import type { ReplayBody } from "./replay-body.ts";
import type { RequestDeadline } from "./request-deadline.ts";
import type { UpstreamCluster, UpstreamHost } from "./upstream-cluster.ts";

/** Why an attempt produced no response; `connect_failure` and `refused_stream` mean the request never reached the server. */
export type AttemptFailure = "connect_failure" | "refused_stream" | "reset" | "timeout";

export interface UpstreamResponse {
  readonly status: number;
  /** End-to-end headers, a fresh object the relay may extend. */
  readonly headers: OutgoingHttpHeaders;
  /** The raw headers, for gRPC's trailers-only status. */
  readonly raw: IncomingHttpHeaders;
  /** The response ended with its headers (no body, no trailers: gRPC trailers-only). */
  readonly headersOnly: boolean;
  /** The body: whole when it had already arrived with the head (relayed in one write), else a stream. */
  readonly body: Buffer | Readable;
  trailers(): IncomingHttpHeaders | undefined;
  /** Abandons the response (and its stream or connection). */
  cancel(): void;
}

export type AttemptResult = { ok: true; response: UpstreamResponse } | { ok: false; failure: AttemptFailure };

export interface AttemptOptions {
  pool: HttpUpstreamPool;
  cluster: UpstreamCluster;
  host: UpstreamHost;
  down: Downstream;
  body: ReplayBody;
  http2: boolean;
  /** 0: no per-try deadline. */
  perTryTimeoutMs: number;
  /** Ends the attempt (the route timeout fired or the client left). */
  deadline: RequestDeadline;
}

/**
 * One try of a request on one endpoint, up to its response headers. The
 * request body comes from the replay buffer, so a failed try leaves it whole
 * for the next one.
 */
export function attempt(options: AttemptOptions): Promise<AttemptResult> {
  return options.http2 ? h2Attempt(options) : h1Attempt(options);
}

/** `startedAt` (performance.now()): the try began there, so its connect counts against the per-try timeout. */
function withDeadline(options: AttemptOptions, startedAt: number, cancel: () => void, run: (settle: (r: AttemptResult) => void) => void): Promise<AttemptResult> {
  return new Promise((resolve) => {
    let done = false;
    const settle = (r: AttemptResult) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      options.deadline.remove(onAbort);
      if (!r.ok) {
        options.body.detach();
        cancel();
      }
      resolve(r);
    };
    const onAbort = () => settle({ ok: false, failure: "timeout" });
    const timer = options.perTryTimeoutMs > 0 ? setTimeout(onAbort, Math.max(0, options.perTryTimeoutMs - (performance.now() - startedAt))) : undefined;
    options.deadline.onAbort(onAbort);
    run(settle);
  });
}

/**
 * Waits for a new connection (or h2 session) within the try's time. A peer
 * that accepts TCP but never finishes the handshake (black-holed, frozen)
 * would otherwise hold the request for the whole connect timeout. Past the
 * per-try timeout the request never left: `undefined`, a connect failure,
 * tried elsewhere at once; a connection that still arrives goes to `late`.
 */
async function connectWithinTry<T>(options: AttemptOptions, connecting: Promise<T>, late: (connection: T) => void): Promise<T | undefined> {
  if (options.perTryTimeoutMs <= 0) return connecting;
  let timer: NodeJS.Timeout | undefined;
  let expired = false;
  const expiry = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), options.perTryTimeoutMs);
  });
  try {
    const connection = await Promise.race([connecting, expiry]);
    expired = connection === undefined;
    return connection;
  } finally {
    clearTimeout(timer);
    // The try already counted as a connect failure; a late failure of the same connect says nothing new.
    if (expired) connecting.then(late, () => undefined);
  }
}

async function h1Attempt(options: AttemptOptions): Promise<AttemptResult> {
  const startedAt = performance.now();
  const pooled = options.pool.idleConnection(options.cluster, options.host);
  if (pooled) {
    const result = await h1Exchange(options, pooled, startedAt);
    // A kept-alive connection the server closed while it sat idle (nothing came back): that says nothing
    // about the endpoint, so the request goes once more on a fresh connection to it, as Go's and Envoy's
    // clients do, rather than counting an endpoint failure and leaving for another cluster.
    if (result.ok || result.failure !== "refused_stream" || !options.body.replayable || options.deadline.aborted) return result;
    options.cluster.series.staleRetries.add();
  }
  let conn: H1Connection | undefined;
  try {
    conn = await connectWithinTry(options, options.pool.newConnection(options.cluster, options.host), (late) => late.park());
  } catch (err) {
    if (err instanceof UpstreamConnectError) return { ok: false, failure: "connect_failure" };
    throw err;
  }
  if (!conn) return { ok: false, failure: "connect_failure" };
  // The route timeout fired (or the client left) while connecting: the new connection waits in the pool for the next request.
  if (options.deadline.aborted) {
    conn.park();
    return { ok: false, failure: "timeout" };
  }
  return h1Exchange(options, conn, startedAt);
}

function h1Exchange(options: AttemptOptions, conn: H1Connection, startedAt: number): Promise<AttemptResult> {
  const { down } = options;
  return withDeadline(options, startedAt, () => conn.destroy(), (settle) => {
    conn.send({ method: down.method, path: down.path, authority: down.authority, headers: down.headers, framing: down.bodyFraming, body: options.body }, settle);
  });
}

async function h2Attempt(options: AttemptOptions): Promise<AttemptResult> {
  const startedAt = performance.now();
  const { down } = options;
  let session;
  try {
    // A late session stays in the pool for the next request.
    session = await connectWithinTry(options, options.pool.session(options.cluster, options.host), () => undefined);
  } catch (err) {
    if (err instanceof UpstreamConnectError) return { ok: false, failure: "connect_failure" };
    throw err;
  }
  if (!session) return { ok: false, failure: "connect_failure" };
  if (options.deadline.aborted) return { ok: false, failure: "timeout" };
  let stream;
  try {
    stream = session.request({ ...down.headers, ":method": down.method, ":path": down.path, ":authority": down.authority, ":scheme": "http" }, { endStream: false });
  } catch (err) {
    // The session is closing or went away: the stream was never opened.
    if ((err as { code?: unknown }).code === "ERR_HTTP2_GOAWAY_SESSION" || (err as { code?: unknown }).code === "ERR_HTTP2_INVALID_SESSION") return { ok: false, failure: "refused_stream" };
    throw err;
  }
  const s = stream;
  let trailers: IncomingHttpHeaders | undefined;
  s.on("trailers", (t: IncomingHttpHeaders) => (trailers = t));
  return withDeadline(options, startedAt, () => s.close(constants.NGHTTP2_CANCEL), (settle) => {
    const failed = () => settle({ ok: false, failure: s.rstCode === constants.NGHTTP2_REFUSED_STREAM ? "refused_stream" : "reset" });
    s.on("error", failed);
    s.on("close", failed);
    s.on("response", (headers: IncomingHttpHeaders & { ":status"?: number }, flags: number) => {
      settle({
        ok: true,
        response: {
          status: Number(headers[":status"] ?? 502),
          headers: endToEndHeaders(headers),
          raw: headers,
          headersOnly: (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0,
          body: s,
          trailers: () => trailers,
          cancel: () => s.close(constants.NGHTTP2_CANCEL),
        },
      });
    });
    options.body.attach(s);
  });
}
