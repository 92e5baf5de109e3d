import { Backoff, asError, silentLogger, type BackoffOptions, type Logger } from "../common/index.ts";
import { isClockWithTimers, type ClockWithTimers, type TimerHandle } from "./clock.ts";
import { TrustOptionsError } from "./errors.ts";

/** Anything with a certificate validity window: an IssuedLeaf, an IntermediateCa. */
export interface Renewable {
  readonly certificate: { readonly notBefore: Date; readonly notAfter: Date };
}

export interface RenewalSchedulerOptions<T extends Renewable> {
  /** Obtains a fresh credential (calls the issuer). Any rejection is retried. */
  issue: () => Promise<T>;
  clock: ClockWithTimers;
  /** Where in the lifetime to renew: a fixed fraction, or a range drawn uniformly per credential. Default 0.5–0.8. */
  renewAt?: number | { min: number; max: number };
  /** Uniform [0,1) source for the renewal jitter; default Math.random. */
  random?: () => number;
  /** Backoff between failed attempts. Default 1 s doubling to 5 min, 20 % jitter. */
  retry?: BackoffOptions;
  /**
   * The shortest wait between attempts. Retries are never spaced more than
   * half the remaining lifetime apart, nor less than this, so an issuer that is
   * reachable for at least this long before expiry is always reached in time.
   */
  minRetryMs?: number;
  onRenewed?: (credential: T) => void;
  onError?: (error: Error, retryInMs: number) => void;
  logger?: Logger;
}

export const DEFAULT_RENEW_AT = { min: 0.5, max: 0.8 } as const;
export const DEFAULT_MIN_RETRY_MS = 1_000;
const DEFAULT_RETRY: BackoffOptions = { initialMs: 1_000, maxMs: 5 * 60_000, jitter: 0.2 };

/**
 * Keeps one credential fresh: renews it at a jittered fraction of its lifetime,
 * retries failures with backoff that tightens as expiry nears, and reports
 * each new credential through `onRenewed`.
 */
export class RenewalScheduler<T extends Renewable> {
  readonly #opts: Required<Omit<RenewalSchedulerOptions<T>, "onRenewed" | "onError" | "renewAt">> & {
    renewAt: { min: number; max: number };
    onRenewed?: (credential: T) => void;
    onError?: (error: Error, retryInMs: number) => void;
  };
  readonly #backoff: Backoff;
  #current: T | undefined;
  #timer: TimerHandle | undefined;
  #nextAttemptAt: Date | undefined;
  #running = false;
  #inFlight = false;

  constructor(options: RenewalSchedulerOptions<T>) {
    const problems: { path: string; message: string }[] = [];
    if (typeof options.issue !== "function") problems.push({ path: "issue", message: "must be a function" });
    if (!isClockWithTimers(options.clock)) problems.push({ path: "clock", message: "must provide now() and setTimer()" });
    const renewAt = typeof options.renewAt === "number" ? { min: options.renewAt, max: options.renewAt } : (options.renewAt ?? DEFAULT_RENEW_AT);
    if (!(renewAt.min > 0 && renewAt.max < 1 && renewAt.min <= renewAt.max)) problems.push({ path: "renewAt", message: "must lie in (0, 1), min <= max" });
    const minRetryMs = options.minRetryMs ?? DEFAULT_MIN_RETRY_MS;
    if (!(Number.isFinite(minRetryMs) && minRetryMs > 0)) problems.push({ path: "minRetryMs", message: "must be positive" });
    if (problems.length) throw new TrustOptionsError("renewal scheduler options", problems);
    this.#opts = {
      issue: options.issue,
      clock: options.clock,
      renewAt,
      random: options.random ?? Math.random,
      retry: options.retry ?? DEFAULT_RETRY,
      minRetryMs,
      logger: options.logger ?? silentLogger,
      ...(options.onRenewed ? { onRenewed: options.onRenewed } : {}),
      ...(options.onError ? { onError: options.onError } : {}),
    };
    this.#backoff = new Backoff(this.#opts.retry);
  }

  get current(): T | undefined {
    return this.#current;
  }

  /** When the next renewal attempt is due, if one is scheduled. */
  get nextAttemptAt(): Date | undefined {
    return this.#nextAttemptAt;
  }

  /** Starts with `current` (renewing at once if absent or already due). */
  start(current?: T): void {
    if (this.#running) return;
    this.#running = true;
    this.#current = current;
    if (current) this.scheduleRenewal(current);
    else this.schedule(0);
  }

  stop(): void {
    this.#running = false;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#nextAttemptAt = undefined;
  }

  /** The renewal instant for `credential`: notBefore + f × lifetime, f drawn from `renewAt`. */
  renewalTime(credential: T): Date {
    const { min, max } = this.#opts.renewAt;
    const nb = credential.certificate.notBefore.getTime();
    const life = credential.certificate.notAfter.getTime() - nb;
    const f = min + (max - min) * this.#opts.random();
    return new Date(nb + f * life);
  }

  private scheduleRenewal(credential: T): void {
    const delay = this.renewalTime(credential).getTime() - this.#opts.clock.now().getTime();
    this.schedule(Math.max(0, delay));
  }

  private schedule(delayMs: number): void {
    this.#timer?.cancel();
    if (!this.#running) return;
    this.#nextAttemptAt = new Date(this.#opts.clock.now().getTime() + delayMs);
    this.#timer = this.#opts.clock.setTimer(() => void this.attempt(), delayMs);
  }

  private async attempt(): Promise<void> {
    if (!this.#running || this.#inFlight) return;
    this.#inFlight = true;
    this.#timer = undefined;
    this.#nextAttemptAt = undefined;
    try {
      const fresh = await this.#opts.issue();
      if (!this.#running) return;
      this.#current = fresh;
      this.#backoff.reset();
      this.#opts.logger.info("credential renewed", { notAfter: fresh.certificate.notAfter.toISOString() });
      this.#opts.onRenewed?.(fresh);
      this.scheduleRenewal(fresh);
    } catch (err) {
      if (!this.#running) return;
      const delay = this.retryDelay();
      const error = asError(err);
      this.#opts.logger.warn("credential renewal failed", { err: error, retryInMs: delay, failures: this.#backoff.failures });
      this.#opts.onError?.(error, delay);
      this.schedule(delay);
    } finally {
      this.#inFlight = false;
    }
  }

  /** Backoff, but never more than half the remaining lifetime (floored at minRetryMs) while the credential is still valid. */
  private retryDelay(): number {
    const backoff = this.#backoff.next();
    const current = this.#current;
    if (!current) return backoff;
    const remaining = current.certificate.notAfter.getTime() - this.#opts.clock.now().getTime();
    if (remaining <= 0) return backoff;
    return Math.max(this.#opts.minRetryMs, Math.min(backoff, Math.floor(remaining / 2)));
  }
}
