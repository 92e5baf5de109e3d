import { Backoff } from "./backoff.ts";
import { FedgateError, asError } from "./errors.ts";
import { silentLogger, type Logger } from "./logger.ts";

/** What a reconcile decided: done, or look again after a delay (level-triggered polling). */
export type ReconcileResult = { requeueAfterMs?: number } | void;

export interface WorkQueueOptions {
  reconcile: (key: string) => Promise<ReconcileResult>;
  /** Keys processed at once; one key never runs twice at the same time. */
  workers?: number;
  /** Per-key backoff after a retryable failure. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  logger?: Logger;
  /** Called for every failure; `terminal` ones are not retried. */
  onError?: (key: string, error: Error, terminal: boolean) => void;
  /** Collect keys but run nothing until `resume()`: a controller acts only once its caches have synced. */
  paused?: boolean;
}

/**
 * The controller work queue: de-duplicates keys, never runs one key
 * concurrently (a key added while it runs is run again afterwards), and
 * requeues retryable failures with per-key exponential backoff. An error that
 * is a FedgateError with `retryable: false` is terminal: logged and counted,
 * not retried until the key is added again.
 */
export class WorkQueue {
  private readonly options: Required<Omit<WorkQueueOptions, "onError" | "logger" | "paused">> & Pick<WorkQueueOptions, "onError">;
  private readonly log: Logger;
  private readonly queue = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly delayed = new Map<string, NodeJS.Timeout>();
  private readonly backoffs = new Map<string, Backoff>();
  private readonly idleWaiters: (() => void)[] = [];
  private active = 0;
  private stopped = false;
  private paused: boolean;

  constructor(options: WorkQueueOptions) {
    this.options = { workers: 2, retryInitialMs: 100, retryMaxMs: 30_000, ...options };
    this.log = options.logger ?? silentLogger;
    this.paused = options.paused ?? false;
  }

  /** Stops starting keys (those running finish); keys added meanwhile wait for `resume()`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  add(key: string): void {
    if (this.stopped) return;
    const timer = this.delayed.get(key);
    if (timer) {
      clearTimeout(timer);
      this.delayed.delete(key);
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    this.queue.add(key);
    this.pump();
  }

  /** Adds the key after `ms`, unless it is added sooner. */
  addAfter(key: string, ms: number): void {
    if (this.stopped || this.delayed.has(key)) return;
    this.delayed.set(
      key,
      setTimeout(() => {
        this.delayed.delete(key);
        this.add(key);
      }, ms),
    );
  }

  get length(): number {
    return this.queue.size + this.delayed.size;
  }

  /** Resolves when nothing is queued, running or waiting to run. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops taking keys and waits for the reconciles in flight. */
  async shutDown(): Promise<void> {
    this.stopped = true;
    for (const t of this.delayed.values()) clearTimeout(t);
    this.delayed.clear();
    this.queue.clear();
    this.dirty.clear();
    while (this.active > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.active === 0 && this.queue.size === 0 && this.delayed.size === 0;
  }

  private pump(): void {
    while (!this.stopped && !this.paused && this.active < this.options.workers && this.queue.size > 0) {
      const key = this.queue.values().next().value as string;
      this.queue.delete(key);
      this.running.add(key);
      this.active++;
      void this.process(key);
    }
    if (this.isIdle() || this.active === 0) this.notifyIdle();
  }

  private async process(key: string): Promise<void> {
    try {
      const result = await this.options.reconcile(key);
      this.backoffs.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (thrown) {
      const err = asError(thrown);
      const terminal = err instanceof FedgateError && !err.retryable;
      this.options.onError?.(key, err, terminal);
      if (terminal) {
        this.log.error("reconcile failed terminally", { key, err });
        this.backoffs.delete(key);
      } else {
        let backoff = this.backoffs.get(key);
        if (!backoff) this.backoffs.set(key, (backoff = new Backoff({ initialMs: this.options.retryInitialMs, maxMs: this.options.retryMaxMs })));
        const delay = backoff.next();
        this.log.warn("reconcile failed; retrying", { key, err, retryInMs: delay, failures: backoff.failures });
        this.addAfter(key, delay);
      }
    } finally {
      this.running.delete(key);
      this.active--;
      if (this.dirty.delete(key)) this.queue.add(key);
      this.pump();
    }
  }

  private notifyIdle(): void {
    if (!(this.isIdle() || (this.stopped && this.active === 0))) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
