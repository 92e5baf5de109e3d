import { ExchangeError, exchange } from "../test/support/gateway-harness.ts";

/** One short TCP exchange: when it ended, who served it, or how it failed. */
export interface LoadSample {
  /** ms since the load started. */
  at: number;
  servedBy?: string;
  /** A new connection that never reached a backend, or one cut after a backend answered. */
  failure?: "new-connection" | "in-flight";
  error?: string;
}

/** The cluster part of an echo reply `<cluster>/<replica>`. */
export const clusterOf = (servedBy: string | undefined) => servedBy?.split("/")[0];

/**
 * Steady L4 load: `workers` loops, each opening a new connection to
 * `host:port`, reading the backend's name and checking one echo round trip.
 * Every exchange is recorded with its time, for failures and settle times.
 */
export class SteadyLoad {
  readonly samples: LoadSample[] = [];
  readonly startedAt = performance.now();
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(options: { host: string; port: number; workers: number }) {
    this.loops = Array.from({ length: options.workers }, async () => {
      while (this.running) {
        try {
          const servedBy = await exchange(options.port, "ping", 10_000, options.host);
          this.samples.push({ at: this.now(), servedBy });
        } catch (err) {
          if (!(err instanceof ExchangeError)) throw err;
          this.samples.push({ at: this.now(), failure: err.established ? "in-flight" : "new-connection", error: err.message });
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
    firstOnTargetMs: first ? round(first.at - from) : undefined,
    settledMs: settledAt ? round(settledAt.at - from) : undefined,
    servedBy,
    errors: window.flatMap((s) => (s.error ? [s.error] : [])).slice(0, MAX_ERRORS_KEPT),
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;
