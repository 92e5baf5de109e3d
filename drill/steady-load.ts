import { request, type Agent } from "node:http";
import { connect as h2connect, constants as h2constants, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { ExchangeError, exchange } from "../test/support/gateway-harness.ts";

/** One short TCP exchange: when it ended, who served it, or how it failed. */
export interface LoadSample {
  /** ms since the load started. */
  at: number;
  servedBy?: string;
  /** L4: a connection closed before the backend's greeting, or cut after it; L7: a request without a good answer. */
  failure?: "new-connection" | "in-flight" | "request";
  error?: string;
}

/** The cluster part of an echo reply `<cluster>/<replica>`. */
export const clusterOf = (servedBy: string | undefined) => servedBy?.split("/")[0];

/** A request that failed, and how: before the backend answered, or after. */
export class LoadFailure extends Error {
  constructor(
    message: string,
    readonly kind: NonNullable<LoadSample["failure"]>,
  ) {
    super(message);
  }
}

/** One request; resolves with who served it (`<cluster>/<replica>`) or rejects with `LoadFailure`. */
export type LoadCall = () => Promise<string>;

/** L4: a new connection to `host:port`, the backend's name, one echo round trip. */
export function tcpCall(host: string, port: number): LoadCall {
  return () =>
    exchange(port, "ping", REQUEST_TIMEOUT_MS, host).catch((err: unknown) => {
      if (!(err instanceof ExchangeError)) throw err;
      throw new LoadFailure(err.message, err.established ? "in-flight" : "new-connection");
    });
}

/** L7: an HTTP/1.1 GET over kept-alive connections; the gateway's `x-fedgate-cluster` and the backend's `x-backend` name who served it. */
export function httpCall(options: { host: string; port: number; authority: string; agent: Agent }): LoadCall {
  return () =>
    new Promise((resolve, reject) => {
      const req = request({ host: options.host, port: options.port, path: "/", agent: options.agent, headers: { host: options.authority }, timeout: REQUEST_TIMEOUT_MS }, (res) => {
        res.resume();
        res.on("end", () => {
          const backend = String(res.headers["x-backend"] ?? "");
          if (res.statusCode === 200 && backend) resolve(backend);
          else reject(new LoadFailure(`HTTP ${res.statusCode} from ${String(res.headers["x-fedgate-cluster"] ?? "?")}`, "request"));
        });
      });
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", (err) => reject(new LoadFailure(err.message, "request")));
      req.end();
    });
}

/**
 * L7 over HTTP/2 with prior knowledge: GETs as streams of one long-lived h2c
 * session to the import port (reopened once it ends), so the gateway balances
 * per stream. `close` ends the session.
 */
export function h2Call(options: { host: string; port: number; authority: string }): { call: LoadCall; close(): void } {
  let session: ClientHttp2Session | undefined;
  const open = () => {
    if (!session || session.closed || session.destroyed) {
      const opened = h2connect(`http://${options.host}:${options.port}`);
      // A session error also fails its open streams, which is where it is counted.
      opened.on("error", (err: Error) => opened.destroy(err));
      session = opened;
    }
    return session;
  };
  const call: LoadCall = () =>
    new Promise((resolve, reject) => {
      const stream = open().request({ ":path": "/", ":authority": options.authority });
      let headers: IncomingHttpHeaders | undefined;
      let error = "";
      stream.setTimeout(REQUEST_TIMEOUT_MS, () => stream.close(h2constants.NGHTTP2_CANCEL));
      stream.on("response", (h: IncomingHttpHeaders) => (headers = h));
      stream.on("error", (err: Error) => (error = err.message));
      stream.on("close", () => {
        const backend = String(headers?.["x-backend"] ?? "");
        if (Number(headers?.[":status"]) === 200 && backend && stream.rstCode === h2constants.NGHTTP2_NO_ERROR) resolve(backend);
        else reject(new LoadFailure(headers ? `h2: HTTP ${String(headers[":status"])} from ${String(headers["x-fedgate-cluster"] ?? "?")}` : `h2: ${error || `stream closed with code ${stream.rstCode}`}`, "request"));
      });
      stream.resume();
      stream.end();
    });
  return { call, close: () => session?.close() };
}

/** Takes turns: one request of each call in order. */
export function alternate(calls: readonly LoadCall[]): LoadCall {
  let next = 0;
  return () => calls[next++ % calls.length]!();
}

const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Steady load: `workers` loops of `call` until stopped. Every request is
 * recorded with its time and who served it, for failures and settle times.
 */
export class SteadyLoad {
  readonly samples: LoadSample[] = [];
  readonly startedAt = performance.now();
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(options: { call: LoadCall; workers: number }) {
    this.loops = Array.from({ length: options.workers }, async () => {
      while (this.running) {
        try {
          const servedBy = await options.call();
          this.samples.push({ at: this.now(), servedBy });
        } catch (err) {
          if (!(err instanceof LoadFailure)) throw err;
          this.samples.push({ at: this.now(), failure: err.kind, error: err.message });
        }
      }
    });
  }

  now(): number {
    return performance.now() - this.startedAt;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** What happened from `from` (ms, the load's clock) on, with respect to traffic moving to `target`. */
export interface Shift {
  requests: number;
  failedNewConnections: number;
  failedInFlight: number;
  /** L7 requests that got no good answer. */
  failedRequests: number;
  /** From `from` to the first reply from `target`. */
  firstOnTargetMs: number | undefined;
  /** From `from` to the first reply from `target` after which only `target` served (no other cluster, no failure). */
  settledMs: number | undefined;
  servedBy: Record<string, number>;
  /** The first few failures' messages, as the client saw them. */
  errors: string[];
}

const MAX_ERRORS_KEPT = 5;

export function shiftAfter(samples: readonly LoadSample[], from: number, target: string, until = Number.POSITIVE_INFINITY): Shift {
  const window = samples.filter((s) => s.at >= from && s.at <= until).sort((a, b) => a.at - b.at);
  const servedBy: Record<string, number> = {};
  for (const s of window) {
    const cluster = clusterOf(s.servedBy);
    if (cluster) servedBy[cluster] = (servedBy[cluster] ?? 0) + 1;
  }
  const onTarget = (s: LoadSample) => clusterOf(s.servedBy) === target;
  const first = window.find(onTarget);
  const lastOther = window.findLast((s) => !onTarget(s));
  const settledAt = lastOther ? window.find((s) => s.at > lastOther.at && onTarget(s)) : first;
  return {
    requests: window.length,
    failedNewConnections: window.filter((s) => s.failure === "new-connection").length,
    failedInFlight: window.filter((s) => s.failure === "in-flight").length,
    failedRequests: window.filter((s) => s.failure === "request").length,
    firstOnTargetMs: first ? round(first.at - from) : undefined,
    settledMs: settledAt ? round(settledAt.at - from) : undefined,
    servedBy,
    errors: window.flatMap((s) => (s.error ? [s.error] : [])).slice(0, MAX_ERRORS_KEPT),
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;
