import { spawn } from "node:child_process";
import { z } from "zod";
import { FedgateError } from "../../common/index.ts";
import { binaryPath } from "../../test/env/binaries.ts";

/*
 * Runs test/env/loadgen (a constant-rate HTTP/1.1 keep-alive load generator
 * that measures latency from each request's scheduled send time, like wrk2)
 * and parses its JSON report.
 */

/** One run: `rate` requests per second, spread over `connections`, for `durationMs`. */
export interface LoadgenOptions {
  /** host:port */
  target: string;
  /** The Host header; the target when absent. */
  host?: string;
  path?: string;
  /** Offered requests per second over all connections. */
  rate: number;
  durationMs: number;
  connections: number;
  /** Per-request deadline; loadgen's default (2 s, as wrk) when absent. */
  timeoutMs?: number;
  /**
   * One unmeasured request per connection before the clock starts (default
   * true), so a proxy's upstream connections and TLS handshakes are set up
   * and the run measures keep-alive traffic.
   */
  prime?: boolean;
}

const Latency = z.object({ p50: z.number(), p90: z.number(), p99: z.number(), "p99.9": z.number(), max: z.number(), mean: z.number() });

export const LoadgenReport = z.object({
  target: z.string(),
  path: z.string(),
  connections: z.number().int(),
  offeredRate: z.number(),
  durationSeconds: z.number(),
  /** Requests the timetable held before the end of the run. */
  scheduled: z.number().int(),
  /** Requests written; fewer than `scheduled` when the path could not keep up. */
  sent: z.number().int(),
  completed: z.number().int(),
  errors: z.object({ connect: z.number().int(), write: z.number().int(), read: z.number().int(), timeout: z.number().int(), parse: z.number().int(), status: z.number().int() }),
  /** Completed requests per second of the scheduled window. */
  achievedRate: z.number(),
  bytesRead: z.number().int(),
  latencyMs: Latency,
});
export type LoadgenReport = z.infer<typeof LoadgenReport>;

export class LoadgenFailedError extends FedgateError {
  constructor(exitCode: number | null, stderr: string) {
    super("FEDGATE_BENCH_LOADGEN_FAILED", `loadgen exited ${exitCode}: ${stderr.trim().slice(-2_000)}`);
  }
}

export function loadgenArgs(o: LoadgenOptions): string[] {
  return [
    "-target", o.target,
    "-rate", String(o.rate),
    "-duration", `${o.durationMs}ms`,
    "-connections", String(o.connections),
    "-path", o.path ?? "/",
    ...(o.host ? ["-host", o.host] : []),
    ...(o.timeoutMs ? ["-timeout", `${o.timeoutMs}ms`] : []),
    ...(o.prime === false ? ["-prime=false"] : []),
  ];
}

/** Runs loadgen with raw arguments; resolves with its report, rejects with LoadgenFailedError on a non-zero exit. */
export async function runLoadgenArgs(args: readonly string[]): Promise<LoadgenReport> {
  const bin = await binaryPath("loadgen");
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  if (code !== 0) throw new LoadgenFailedError(code, stderr);
  return LoadgenReport.parse(JSON.parse(stdout));
}

export function runLoadgen(options: LoadgenOptions): Promise<LoadgenReport> {
  return runLoadgenArgs(loadgenArgs(options));
}
