import type { OutgoingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { Backoff, sleep, type Logger } from "../../common/index.ts";
import { attempt, type AttemptFailure, type UpstreamResponse } from "./http-attempt.ts";
import type { Downstream } from "./http-downstream.ts";
import type { HttpUpstreamPool } from "./http-upstream-pool.ts";
import type { GatewayMetrics, MetricSeries } from "./metrics.ts";
import { ReplayBody } from "./replay-body.ts";
import { RequestDeadline } from "./request-deadline.ts";
import type { RetryCondition, RouteSpec } from "./resources.ts";
import { MAX_CONNECT_ATTEMPTS, type UpstreamCluster, type UpstreamHost } from "./upstream-cluster.ts";

/**
 * Request bodies up to this size are held until the request is answered, so
 * they can be replayed on another endpoint; a bigger body streams through and
 * its request gets one try once its first bytes were sent.
 */
export const REPLAY_BUFFER_BYTES = 64 * 1024;
/** Methods that are safe to send twice (RFC 9110 §9.2.2) whatever their body. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
/** gRPC status codes (grpc/doc/statuscodes.md) the retry_on names map to. */
const GRPC_RETRY: Readonly<Record<string, RetryCondition>> = { "1": "cancelled", "4": "deadline-exceeded", "8": "resource-exhausted", "13": "internal", "14": "unavailable" };
const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

/** Why the next try happens; each is a `reason` of the retries metric. */
type RetryReason = AttemptFailure | "5xx" | "gateway_error" | "retriable_4xx" | `grpc_${RetryCondition}`;

/** The retry_on conditions under which a failure may be retried (Envoy's semantics). */
const COVERED_BY: Readonly<Record<RetryReason, readonly RetryCondition[]>> = {
  connect_failure: ["connect-failure", "5xx", "gateway-error"],
  refused_stream: ["refused-stream", "5xx"],
  reset: ["reset", "5xx"],
  timeout: ["reset", "5xx", "gateway-error"],
  "5xx": ["5xx"],
  gateway_error: ["5xx", "gateway-error"],
  retriable_4xx: ["retriable-4xx"],
  "grpc_connect-failure": [],
  "grpc_refused-stream": [],
  grpc_reset: [],
  grpc_5xx: [],
  "grpc_gateway-error": [],
  "grpc_retriable-4xx": [],
  grpc_unavailable: ["unavailable"],
  grpc_cancelled: ["cancelled"],
  "grpc_resource-exhausted": ["resource-exhausted"],
  "grpc_deadline-exceeded": ["deadline-exceeded"],
  grpc_internal: ["internal"],
};

export interface ForwardContext {
  readonly pool: HttpUpstreamPool;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** The request counter for a cluster, serving cluster and response class (cached by the caller). */
  requests(cluster: string, servedBy: string, status: number): MetricSeries;
}

/**
 * Sends one downstream request to its route's cluster and answers the client.
 * Each try picks an endpoint (priority, weight, health, outlier state), never
 * one already tried; a connect failure or refused stream is always tried
 * elsewhere (the request never left), other failures only as the route's
 * retry policy allows and only when the request can be replayed. The route
 * timeout answers 504 (gRPC: DEADLINE_EXCEEDED).
 */
export async function forward(ctx: ForwardContext, down: Downstream, route: RouteSpec, cluster: UpstreamCluster): Promise<void> {
  const name = cluster.spec.name;
  const body = new ReplayBody({ source: down.body, capBytes: REPLAY_BUFFER_BYTES, empty: down.bodyFraming === "none" });
  const http2 = cluster.spec.http2 || down.protocol === "h2";
  const retry = route.retry;
  // At most MAX_CONNECT_ATTEMPTS entries: a list is cheaper than a Set for the usual single try.
  const tried: UpstreamHost[] = [];
  let backoff: Backoff | undefined;
  let retriesLeft = retry?.numRetries ?? 0;
  let firstPriority: number | undefined;
  let lastFailure: AttemptFailure | undefined;

  const deadline = new RequestDeadline();
  const timer = route.timeoutMs > 0 ? setTimeout(() => deadline.abort(), route.timeoutMs) : undefined;
  down.onClose(() => deadline.abort());
  const active = cluster.series.activeRequests;
  try {
    for (let attempts = 1; attempts <= MAX_CONNECT_ATTEMPTS; attempts++) {
      const host = pickHost(cluster, tried, retry?.skipPreviousPriorities ?? false);
      if (!host) break;
      tried.push(host);
      firstPriority ??= host.priority;
      active.add(1);
      const result = await attempt({ pool: ctx.pool, cluster, host, down, body, http2, perTryTimeoutMs: retry?.perTryTimeoutMs ?? 0, deadline });
      if (!result.ok) active.add(-1);
      if (deadline.aborted) {
        if (result.ok) {
          result.response.cancel();
          active.add(-1);
        }
        return timedOut(ctx, down, name);
      }
      let reason: RetryReason;
      if (result.ok) {
        const r = result.response;
        const failed = responseFailure(r, down.grpc);
        // With nowhere else to go, the upstream's own answer is passed on. Only asked on a failure:
        // each pick advances the weighted round robin, and an extra one per request would skip endpoints.
        const elsewhere = failed !== undefined && attempts < MAX_CONNECT_ATTEMPTS && pickHost(cluster, tried, false) !== undefined;
        if (!failed || !elsewhere || !canRetry(failed)) {
          if (r.status >= 500 || failed === "grpc_unavailable") cluster.reportFailure(host, "response");
          else cluster.reportSuccess(host);
          if (firstPriority !== host.priority) ctx.metrics.httpFailovers.labels({ cluster: name }).add();
          if (attempts > 1) cluster.series.failovers.add();
          return await relayResponse(ctx, down, r, { cluster: name, host, attempts, deadline, active });
        }
        r.cancel();
        active.add(-1);
        cluster.reportFailure(host, "response");
        reason = failed;
      } else {
        lastFailure = result.failure;
        cluster.reportFailure(host, result.failure === "connect_failure" ? "connect" : "response");
        reason = result.failure;
        if (!canRetry(reason)) break;
      }
      ctx.metrics.httpRetries.labels({ cluster: name, reason }).add();
      if (reason !== "connect_failure" && reason !== "refused_stream" && retry) {
        backoff ??= new Backoff({ initialMs: retry.backOffBaseMs, maxMs: retry.backOffMaxMs });
        await sleep(backoff.next());
      }
    }
    const noneTried = tried.length === 0;
    if (noneTried) cluster.series.noHealthy.add();
    const status = lastFailure === "timeout" ? 504 : 503;
    localReply(ctx, down, name, status, down.grpc ? (status === 504 ? GRPC_DEADLINE_EXCEEDED : GRPC_UNAVAILABLE) : undefined, noneTried ? "no healthy upstream" : `upstream ${lastFailure ?? "failure"}`);
  } finally {
    if (timer) clearTimeout(timer);
  }

  function canRetry(reason: RetryReason): boolean {
    if (!body.replayable) return false;
    if (reason === "connect_failure" || reason === "refused_stream") return true;
    if (!retry || retriesLeft <= 0 || !COVERED_BY[reason].some((c) => retry.retryOn.has(c))) return false;
    if (!IDEMPOTENT.has(down.method) && !body.complete) return false;
    retriesLeft -= 1;
    return true;
  }
}

/** Whether a response is a failure a retry policy may act on; undefined for a good (or unretryable) answer. */
function responseFailure(r: UpstreamResponse, grpc: boolean): RetryReason | undefined {
  if (grpc && r.headersOnly) {
    const condition = GRPC_RETRY[String(r.raw["grpc-status"] ?? "")];
    if (condition) return `grpc_${condition}`;
  }
  if (r.status === 502 || r.status === 503 || r.status === 504) return "gateway_error";
  if (r.status >= 500) return "5xx";
  if (r.status === 409) return "retriable_4xx";
  return undefined;
}

/**
 * The next endpoint: the cluster's order (weighted pick in the best priority,
 * then the rest), without endpoints already tried and, with
 * `previous_priorities`, preferring a priority not tried yet.
 */
function pickHost(cluster: UpstreamCluster, tried: readonly UpstreamHost[], otherPriority: boolean): UpstreamHost | undefined {
  let first: UpstreamHost | undefined;
  for (const h of cluster.candidates()) {
    if (tried.includes(h)) continue;
    if (!otherPriority || !tried.some((t) => t.priority === h.priority)) return h;
    first ??= h;
  }
  return first;
}

/** Who served a response, and what to settle once it is relayed. */
interface Served {
  readonly cluster: string;
  readonly host: UpstreamHost;
  readonly attempts: number;
  readonly deadline: RequestDeadline;
  /** The cluster's attempts in flight: one less once the response is relayed. */
  readonly active: MetricSeries;
}

async function relayResponse(ctx: ForwardContext, down: Downstream, r: UpstreamResponse, served: Served): Promise<void> {
  const servedBy = served.host.spec.servingCluster;
  ctx.requests(served.cluster, servedBy, r.status).add();
  // The response's own copy (made by endToEndHeaders), so it is extended in place.
  const headers: OutgoingHttpHeaders = r.headers;
  headers["x-fedgate-cluster"] = servedBy;
  if (served.attempts > 1) headers["x-fedgate-attempts"] = String(served.attempts);
  if (down.closed) {
    r.cancel();
    served.active.add(-1);
    return;
  }
  const whole = Buffer.isBuffer(r.body) ? r.body : undefined;
  const trailers = whole && r.trailers();
  // A whole answer without trailers goes on in one write, a chunked one with a length instead (no chunk framing downstream).
  if (whole && !trailers && !r.headersOnly) {
    if (headers["content-length"] === undefined && down.method !== "HEAD" && r.status !== 204 && r.status !== 304) headers["content-length"] = whole.length;
    served.active.add(-1);
    down.respondWhole(r.status, headers, whole);
    return;
  }
  const sink = down.respond(r.status, headers, r.headersOnly);
  if (!sink || whole) {
    served.active.add(-1);
    if (sink) down.end(trailers, whole);
    return;
  }
  const body = r.body as Readable;
  await new Promise<void>((resolve) => {
    let finished = false;
    const finish = (ok: boolean) => {
      if (finished) return;
      finished = true;
      served.active.add(-1);
      if (ok) down.end(r.trailers());
      else {
        r.cancel();
        down.abort();
      }
      resolve();
    };
    body.on("error", () => finish(false));
    body.on("end", () => finish(true));
    body.on("close", () => finish(body.readableEnded));
    down.onClose(() => finish(false));
    // The route timeout bounds the whole exchange: a response still streaming is cut.
    served.deadline.onAbort(() => finish(false));
    body.pipe(sink, { end: false });
  });
}

function timedOut(ctx: ForwardContext, down: Downstream, cluster: string): void {
  if (down.closed) return;
  ctx.metrics.httpTimeouts.labels({ cluster }).add();
  localReply(ctx, down, cluster, 504, down.grpc ? GRPC_DEADLINE_EXCEEDED : undefined, "upstream request timeout");
}

/** An answer made by the gateway itself: a plain status, or for gRPC a trailers-only status. */
export function localReply(ctx: Pick<ForwardContext, "requests">, down: Downstream, cluster: string, status: number, grpcStatus: number | undefined, message: string): void {
  if (down.closed) return;
  if (down.headersSent) return down.abort();
  ctx.requests(cluster, "", grpcStatus === undefined ? status : 200).add();
  if (grpcStatus !== undefined) {
    down.respond(200, { "content-type": "application/grpc", "grpc-status": String(grpcStatus), "grpc-message": encodeURIComponent(message) }, true);
    return;
  }
  const body = Buffer.from(`${message}\n`);
  down.respondWhole(status, { "content-type": "text/plain", "content-length": body.length }, body);
}
