import { asError } from "./errors.ts";

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Multiplier applied after each failure. */
  factor?: number;
  /** Fraction of the delay drawn at random, 0..1; spreads retries of many peers apart. */
  jitter?: number;
  random?: () => number;
}

/** Exponential backoff with jitter; `reset()` after a success. */
export class Backoff {
  private attempt = 0;
  private readonly opts: Required<BackoffOptions>;

  constructor(options: BackoffOptions) {
    this.opts = { factor: 2, jitter: 0.2, random: Math.random, ...options };
  }

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    const { initialMs, maxMs, factor, jitter, random } = this.opts;
    const base = Math.min(maxMs, initialMs * factor ** this.attempt);
    this.attempt++;
    const spread = base * jitter;
    return Math.max(0, Math.round(base - spread + random() * 2 * spread));
  }

  get failures(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or rejects with the signal's reason when aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(asError(signal.reason));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(asError(signal?.reason));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
