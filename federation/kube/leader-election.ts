import type * as k8s from "@kubernetes/client-node";
import { z } from "zod";
import { FedgateError, ValidationError, asError, silentLogger, type Logger, type Problem } from "../../common/index.ts";
import { KubeLeaseLock, LeaseConflictError, type LeaseLock, type LeaseRecord, type ObservedLease } from "./lease-lock.ts";

export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
/** client-go's JitterFactor: candidates retry after retryPeriod × [1, 2.2), so they do not move in lockstep. */
const ACQUIRE_JITTER = 1.2;
/** What a released lease advertises, as client-go does: nobody holds it, and it lapses at once. */
const RELEASED_LEASE_DURATION_SECONDS = 1;

/** Local time and timers; injected so the timing rules are tested without sleeping. */
export interface Clock {
  /** Epoch ms; elapsed times are measured on it, and it stamps acquireTime/renewTime. */
  now(): number;
  /** Calls `fn` after `ms`; returns a cancel function. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

interface ElectionSettings {
  /** Unique per replica, e.g. the pod name; it is what the Lease's holderIdentity shows. */
  identity: string;
  /** How long followers wait, after last seeing the record change, before they take the lease over. */
  leaseDurationMs?: number;
  /** How long the leader keeps leading while its renewals fail; must be below leaseDurationMs. */
  renewDeadlineMs?: number;
  /** The pause between attempts to acquire or renew. */
  retryPeriodMs?: number;
  /** Called when this replica becomes leader; `term` aborts the moment the term ends. */
  onStartedLeading?: (term: AbortSignal) => void;
  /** Called right after the term's signal aborted. */
  onStoppedLeading?: () => void;
  /** Called whenever a different holder (or "" for none) is observed. */
  onNewLeader?: (identity: string) => void;
  clock?: Clock;
  logger?: Logger;
}

export type LeaderElectorOptions = ElectionSettings & ({ kubeConfig: k8s.KubeConfig; namespace: string; name: string } | { lock: LeaseLock });

/** The options do not describe a safe election. */
export class LeaderElectionOptionsError extends ValidationError {
  constructor(problems: readonly Problem[]) {
    super("FEDGATE_LEADER_ELECTION_OPTIONS", "leader election options", problems);
  }
}

export type TermEndReason = "renew-deadline" | "lost" | "stopped";

/** Why a term ended; the reason of the term's AbortSignal. */
export class LeadershipLostError extends FedgateError {
  readonly reason: TermEndReason;
  constructor(identity: string, reason: TermEndReason) {
    super("FEDGATE_LEADERSHIP_LOST", `${identity} is no longer leader (${reason})`, { retryable: true });
    this.reason = reason;
  }
}

/** A write was attempted outside a leadership term; retried once this replica leads again. */
export class NotLeaderError extends FedgateError {
  constructor(identity: string) {
    super("FEDGATE_NOT_LEADER", `${identity} is not the leader; write refused`, { retryable: true });
  }
}

/** One lease request took too long; counts as a failed attempt. */
export class LeaseTimeoutError extends FedgateError {
  constructor(lease: string, ms: number) {
    super("FEDGATE_LEASE_TIMEOUT", `lease ${lease} request did not finish within ${ms} ms`, { retryable: true });
  }
}

const settingsSchema = z
  .object({
    identity: z.string().min(1, "must not be empty"),
    leaseDurationMs: z.number().int().min(1_000, "must be at least 1000 (the Lease counts whole seconds)"),
    renewDeadlineMs: z.number().int().positive(),
    retryPeriodMs: z.number().int().positive(),
  })
  .superRefine((s, ctx) => {
    if (s.leaseDurationMs % 1_000 !== 0) ctx.addIssue({ code: "custom", path: ["leaseDurationMs"], message: "must be whole seconds (the Lease stores seconds)" });
    if (s.renewDeadlineMs >= s.leaseDurationMs) ctx.addIssue({ code: "custom", path: ["renewDeadlineMs"], message: "must be below leaseDurationMs, or two leaders can overlap" });
    if (s.renewDeadlineMs <= ACQUIRE_JITTER * s.retryPeriodMs) ctx.addIssue({ code: "custom", path: ["retryPeriodMs"], message: `must be below renewDeadlineMs / ${ACQUIRE_JITTER}` });
  });

interface Observation {
  lease: ObservedLease;
  /** Local time the record was first seen in this form: expiry is judged from here, never from the record's timestamps. */
  at: number;
}

/**
 * Lease-based leader election with client-go's rules:
 * - a candidate takes the lease when nobody holds it, or when the holder's
 *   record has not changed for the record's lease duration as measured on the
 *   candidate's own clock (clocks of different machines are never compared);
 * - every write names the resourceVersion it replaces, so of two candidates
 *   only one wins (the other gets a 409);
 * - the leader renews every retryPeriod and ends its term as soon as it has not
 *   renewed for renewDeadline, which is shorter than the lease duration, so it
 *   has stopped before anyone else may start;
 * - a graceful `stop()` releases the lease so a follower takes over at its next
 *   retry instead of after the lease duration.
 * After a term ends the elector campaigns again until stopped.
 */
export class LeaderElector {
  readonly identity: string;
  private readonly lock: LeaseLock;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly callbacks: Pick<ElectionSettings, "onStartedLeading" | "onStoppedLeading" | "onNewLeader">;
  private readonly stopping = new AbortController();
  private observed: Observation | undefined;
  private reportedLeader: string | undefined;
  private term: AbortController | undefined;
  private cancelDeadline: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(options: LeaderElectorOptions) {
    const settings = {
      identity: options.identity,
      leaseDurationMs: options.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS,
      renewDeadlineMs: options.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS,
      retryPeriodMs: options.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS,
    };
    const parsed = settingsSchema.safeParse(settings);
    if (!parsed.success) throw new LeaderElectionOptionsError(parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })));
    this.identity = settings.identity;
    this.leaseDurationMs = settings.leaseDurationMs;
    this.renewDeadlineMs = settings.renewDeadlineMs;
    this.retryPeriodMs = settings.retryPeriodMs;
    this.lock = "lock" in options ? options.lock : new KubeLeaseLock({ kubeConfig: options.kubeConfig, namespace: options.namespace, name: options.name });
    this.clock = options.clock ?? systemClock;
    this.log = (options.logger ?? silentLogger).child({ component: "leader-election", lease: this.lock.description, identity: this.identity });
    this.callbacks = options;
  }

  /** Starts campaigning in the background; `stop()` ends it. */
  start(): void {
    if (this.running) return;
    this.running = this.run();
  }

  isLeader(): boolean {
    return this.term !== undefined && !this.term.signal.aborted;
  }

  /** The current term's signal, or undefined when not leading. */
  termSignal(): AbortSignal | undefined {
    return this.isLeader() ? this.term?.signal : undefined;
  }

  /** Throws NotLeaderError unless a term is in progress; call it right before every write. */
  assertLeader(): void {
    if (!this.isLeader()) throw new NotLeaderError(this.identity);
  }

  /** The holder last observed in the lease ("" when free), if any read succeeded. */
  observedLeader(): string | undefined {
    return this.observed?.lease.record.holderIdentity;
  }

  /**
   * Ends any term, stops campaigning, and (unless `release` is false) hands the
   * lease back so another replica can take over at once.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.stopping.abort();
    await this.running;
    if (options.release ?? true) await this.release();
  }

  private async run(): Promise<void> {
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      const acquiredAt = await this.acquire();
      if (acquiredAt === undefined) break;
      const term = new AbortController();
      this.term = term;
      this.armDeadline(acquiredAt);
      this.log.info("became leader", { leaseTransitions: this.observed?.lease.record.leaseTransitions });
      this.callbacks.onStartedLeading?.(term.signal);
      await this.renew(term.signal, acquiredAt);
      if (!term.signal.aborted) this.endTerm("stopped");
    }
  }

  /** Retries until the lease is ours; returns the local time the winning attempt began, or undefined when stopped. */
  private async acquire(): Promise<number | undefined> {
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      const startedAt = this.clock.now();
      if (await this.attempt(this.renewDeadlineMs, stop)) return startedAt;
      await this.wait(this.retryPeriodMs * (1 + Math.random() * ACQUIRE_JITTER), stop);
    }
    return undefined;
  }

  /** Renews every retryPeriod until the term ends (deadline passed, lease lost, or stop). */
  private async renew(term: AbortSignal, acquiredAt: number): Promise<void> {
    const stopOrTermEnd = AbortSignal.any([this.stopping.signal, term]);
    let lastRenewedAt = acquiredAt;
    while (!stopOrTermEnd.aborted) {
      await this.wait(this.retryPeriodMs, stopOrTermEnd);
      if (stopOrTermEnd.aborted) return;
      const startedAt = this.clock.now();
      // A request never outlives the term: it is given only the time left before the deadline.
      const left = lastRenewedAt + this.renewDeadlineMs - startedAt;
      const renewed = left > 0 && (await this.attempt(left, stopOrTermEnd));
      if (term.aborted || this.stopping.signal.aborted) return;
      if (renewed) {
        lastRenewedAt = startedAt;
        this.armDeadline(startedAt);
        continue;
      }
      const holder = this.observed?.lease.record.holderIdentity;
      if (holder !== undefined && holder !== this.identity) return this.endTerm("lost");
    }
  }

  /** Ends the term renewDeadline after `renewedAt` unless a later renewal re-arms it. */
  private armDeadline(renewedAt: number): void {
    this.cancelDeadline?.();
    const ms = Math.max(0, renewedAt + this.renewDeadlineMs - this.clock.now());
    this.cancelDeadline = this.clock.setTimer(() => this.endTerm("renew-deadline"), ms);
  }

  private endTerm(reason: TermEndReason): void {
    const term = this.term;
    if (!term || term.signal.aborted) return;
    this.cancelDeadline?.();
    this.cancelDeadline = undefined;
    term.abort(new LeadershipLostError(this.identity, reason));
    this.log.warn("stopped leading", { reason });
    this.callbacks.onStoppedLeading?.();
  }

  /** One tryAcquireOrRenew: true when the lease is ours after it. Failures are logged, never thrown. */
  private async attempt(timeoutMs: number, cancel: AbortSignal): Promise<boolean> {
    const request = new AbortController();
    const cancelTimer = this.clock.setTimer(() => request.abort(new LeaseTimeoutError(this.lock.description, timeoutMs)), timeoutMs);
    const onCancel = () => request.abort(asError(cancel.reason));
    cancel.addEventListener("abort", onCancel, { once: true });
    try {
      return await this.tryAcquireOrRenew(request.signal);
    } catch (thrown) {
      const err = request.signal.aborted ? asError(request.signal.reason) : asError(thrown);
      if (err instanceof LeaseConflictError) this.log.debug("lost a lease write race", { err });
      else this.log.warn("lease attempt failed", { err });
      return false;
    } finally {
      cancelTimer();
      cancel.removeEventListener("abort", onCancel);
    }
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const now = this.clock.now();
    const mine = (previous: LeaseRecord | undefined): LeaseRecord => {
      const renewing = previous?.holderIdentity === this.identity;
      return {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.leaseDurationMs / 1_000,
        acquireTimeMs: renewing ? previous.acquireTimeMs : now,
        renewTimeMs: now,
        leaseTransitions: previous === undefined ? 0 : renewing ? previous.leaseTransitions : previous.leaseTransitions + 1,
      };
    };
    const current = await this.lock.get(signal);
    if (!current) {
      this.observe(await this.lock.create(mine(undefined), signal), this.clock.now());
      return true;
    }
    this.observe(current, this.clock.now());
    const { holderIdentity, leaseDurationSeconds } = current.record;
    const observedAt = (this.observed as Observation).at;
    if (holderIdentity !== "" && holderIdentity !== this.identity && now < observedAt + leaseDurationSeconds * 1_000) return false;
    this.observe(await this.lock.update(mine(current.record), current.resourceVersion, signal), this.clock.now());
    return true;
  }

  /** Remembers the record and when it was first seen unchanged. */
  private observe(lease: ObservedLease, now: number): void {
    if (!this.observed || !sameRecord(this.observed.lease.record, lease.record)) this.observed = { lease, at: now };
    else this.observed = { lease, at: this.observed.at };
    const holder = lease.record.holderIdentity;
    if (holder !== this.reportedLeader) {
      this.reportedLeader = holder;
      this.log.info("observed leader", { leader: holder || "(none)" });
      this.callbacks.onNewLeader?.(holder);
    }
  }

  /** Hands the lease back if we hold it; a failure only means followers wait the lease duration. */
  private async release(): Promise<void> {
    const held = this.observed?.lease;
    if (!held || held.record.holderIdentity !== this.identity) return;
    const request = new AbortController();
    const cancelTimer = this.clock.setTimer(() => request.abort(new LeaseTimeoutError(this.lock.description, this.renewDeadlineMs)), this.renewDeadlineMs);
    try {
      const now = this.clock.now();
      const released: LeaseRecord = {
        holderIdentity: "",
        leaseDurationSeconds: RELEASED_LEASE_DURATION_SECONDS,
        acquireTimeMs: now,
        renewTimeMs: now,
        leaseTransitions: held.record.leaseTransitions,
      };
      this.observe(await this.lock.update(released, held.resourceVersion, request.signal), this.clock.now());
      this.log.info("released the lease");
    } catch (thrown) {
      this.log.warn("could not release the lease; followers take over after the lease duration", { err: asError(thrown) });
    } finally {
      cancelTimer();
    }
  }

  /** Resolves after `ms` or as soon as `signal` aborts. */
  private wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        cancel();
        signal.removeEventListener("abort", done);
        resolve();
      };
      const cancel = this.clock.setTimer(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.acquireTimeMs === b.acquireTimeMs &&
    a.renewTimeMs === b.renewTimeMs &&
    a.leaseTransitions === b.leaseTransitions
  );
}
