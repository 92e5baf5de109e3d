import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FedgateError } from "../../common/index.ts";
import {
  LeaderElector,
  LeaderElectionOptionsError,
  LeadershipLostError,
  LeaseConflictError,
  NotLeaderError,
  type Clock,
  type LeaseLock,
  type LeaseRecord,
  type ObservedLease,
} from "../../federation/internal.ts";

/** Time stands still until the test advances it; due timers fire in order, with pending promises settled between them. */
class FakeClock implements Clock {
  private t = 1_800_000_000_000;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const id = this.seq++;
    this.timers.set(id, { at: this.t + ms, fn });
    return () => this.timers.delete(id);
  }

  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

class UnreachableError extends FedgateError {
  constructor() {
    super("TEST_UNREACHABLE", "apiserver unreachable", { retryable: true });
  }
}

/** One stored lease with resourceVersion checks, as the apiserver keeps it. */
class MemoryLease {
  lease: ObservedLease | undefined;
  private version = 0;

  store(record: LeaseRecord): ObservedLease {
    this.lease = { record: { ...record }, resourceVersion: String(++this.version) };
    return this.lease;
  }
}

/** One replica's connection to the shared lease, which a test can cut (failing fast) or hang (never answering). */
class Link implements LeaseLock {
  readonly description = "test/lease";
  mode: "up" | "cut" | "hang" = "up";
  writes = 0;
  private readonly shared: MemoryLease;

  constructor(shared: MemoryLease) {
    this.shared = shared;
  }

  async get(signal: AbortSignal): Promise<ObservedLease | undefined> {
    await this.reach(signal);
    return this.shared.lease && { ...this.shared.lease, record: { ...this.shared.lease.record } };
  }

  async create(record: LeaseRecord, signal: AbortSignal): Promise<ObservedLease> {
    await this.reach(signal);
    if (this.shared.lease) throw new LeaseConflictError(this.description);
    this.writes++;
    return this.shared.store(record);
  }

  async update(record: LeaseRecord, resourceVersion: string, signal: AbortSignal): Promise<ObservedLease> {
    await this.reach(signal);
    if (this.shared.lease?.resourceVersion !== resourceVersion) throw new LeaseConflictError(this.description);
    this.writes++;
    return this.shared.store(record);
  }

  private async reach(signal: AbortSignal): Promise<void> {
    if (this.mode === "cut") throw new UnreachableError();
    if (this.mode === "hang") await new Promise((_, reject) => signal.addEventListener("abort", () => reject(new Error("aborted")), { once: true }));
  }
}

interface Replica {
  elector: LeaderElector;
  link: Link;
  events: string[];
  terms: AbortSignal[];
}

const LEASE_MS = 15_000;
const RENEW_DEADLINE_MS = 10_000;
const RETRY_MS = 2_000;
/** Longer than the largest jittered acquire retry (retryPeriod × 2.2). */
const ACQUIRE_RETRY_BOUND_MS = 4_500;

function replica(identity: string, shared: MemoryLease, clock: FakeClock, log: string[] = []): Replica {
  const link = new Link(shared);
  const r: Replica = { link, events: log, terms: [], elector: undefined as unknown as LeaderElector };
  r.elector = new LeaderElector({
    lock: link,
    identity,
    leaseDurationMs: LEASE_MS,
    renewDeadlineMs: RENEW_DEADLINE_MS,
    retryPeriodMs: RETRY_MS,
    clock,
    onStartedLeading: (term) => {
      r.terms.push(term);
      log.push(`${identity} started`);
    },
    onStoppedLeading: () => log.push(`${identity} stopped`),
  });
  return r;
}

const election = suite("LeaderElector timing (fake clock, in-memory lease)");

election("rejects unsafe options, listing every problem", () => {
  const err = (() => {
    try {
      new LeaderElector({ lock: new Link(new MemoryLease()), identity: "", leaseDurationMs: 2_500, renewDeadlineMs: 3_000, retryPeriodMs: 2_900 });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.instance(err, LeaderElectionOptionsError);
  const paths = (err as LeaderElectionOptionsError).problems.map((p) => p.path).sort();
  assert.equal(paths, ["identity", "leaseDurationMs", "renewDeadlineMs", "retryPeriodMs"]);
});

election("creates a missing lease, leads, and renews every retry period", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  const a = replica("a", shared, clock);
  a.elector.start();
  await clock.advance(0);
  assert.ok(a.elector.isLeader());
  assert.equal(a.events, ["a started"]);
  const first = shared.lease?.record;
  assert.is(first?.holderIdentity, "a");
  assert.is(first?.leaseTransitions, 0);
  assert.is(first?.leaseDurationSeconds, 15);
  await clock.advance(RETRY_MS * 3);
  assert.is(shared.lease?.record.renewTimeMs, clock.now());
  assert.is(shared.lease?.record.acquireTimeMs, first?.acquireTimeMs);
  assert.is(a.link.writes, 4);
  await a.elector.stop();
});

election("of two candidates exactly one leads while the leader keeps renewing", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  const a = replica("a", shared, clock);
  const b = replica("b", shared, clock);
  a.elector.start();
  b.elector.start();
  for (let i = 0; i < 20; i++) {
    await clock.advance(1_000);
    assert.is(Number(a.elector.isLeader()) + Number(b.elector.isLeader()), 1);
  }
  const leader = shared.lease?.record.holderIdentity;
  assert.equal([...a.events, ...b.events], [`${leader} started`]);
  assert.is(b.elector.observedLeader(), leader);
  await a.elector.stop();
  await b.elector.stop();
});

election("a follower judges expiry by its own clock since it first saw the record, not by the record's timestamps", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  // Written by a holder whose clock is an hour behind: by timestamps it expired long ago.
  shared.store({ holderIdentity: "gone", leaseDurationSeconds: 15, acquireTimeMs: clock.now() - 3_600_000, renewTimeMs: clock.now() - 3_600_000, leaseTransitions: 4 });
  const b = replica("b", shared, clock);
  b.elector.start();
  await clock.advance(LEASE_MS - 1);
  assert.not.ok(b.elector.isLeader());
  assert.is(shared.lease?.record.holderIdentity, "gone");
  await clock.advance(ACQUIRE_RETRY_BOUND_MS);
  assert.ok(b.elector.isLeader());
  assert.is(shared.lease?.record.holderIdentity, "b");
  assert.is(shared.lease?.record.leaseTransitions, 5);
  await b.elector.stop();
});

election("a leader cut off from the lease ends its term at the renew deadline, before a follower may take over", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  const log: string[] = [];
  const a = replica("a", shared, clock, log);
  a.elector.start();
  await clock.advance(0);
  const b = replica("b", shared, clock, log);
  b.elector.start();
  await clock.advance(RETRY_MS);
  const lastRenewal = shared.lease?.record.renewTimeMs ?? 0;
  a.link.mode = "cut";
  await clock.advance(lastRenewal + RENEW_DEADLINE_MS - 1 - clock.now());
  assert.ok(a.elector.isLeader());
  assert.not.ok(a.terms[0]?.aborted);
  await clock.advance(1);
  assert.not.ok(a.elector.isLeader());
  assert.instance(a.terms[0]?.reason, LeadershipLostError);
  assert.is((a.terms[0]?.reason as LeadershipLostError).reason, "renew-deadline");
  assert.throws(() => a.elector.assertLeader(), (e: unknown) => e instanceof NotLeaderError);
  await clock.advance(LEASE_MS + ACQUIRE_RETRY_BOUND_MS);
  assert.ok(b.elector.isLeader());
  assert.equal(log, ["a started", "a stopped", "b started"]);
  await a.elector.stop();
  await b.elector.stop();
});

election("a leader whose requests hang still ends its term at the renew deadline", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  const a = replica("a", shared, clock);
  a.elector.start();
  await clock.advance(0);
  const acquiredAt = clock.now();
  a.link.mode = "hang";
  await clock.advance(RENEW_DEADLINE_MS - 1);
  assert.ok(a.elector.isLeader());
  await clock.advance(1);
  assert.not.ok(a.elector.isLeader());
  assert.is(clock.now(), acquiredAt + RENEW_DEADLINE_MS);
  await a.elector.stop({ release: false });
});

election("a leader that sees another holder steps down at once and campaigns again", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  const a = replica("a", shared, clock);
  a.elector.start();
  await clock.advance(0);
  const now = clock.now();
  shared.store({ holderIdentity: "intruder", leaseDurationSeconds: 15, acquireTimeMs: now, renewTimeMs: now, leaseTransitions: 1 });
  await clock.advance(RETRY_MS);
  assert.not.ok(a.elector.isLeader());
  assert.is((a.terms[0]?.reason as LeadershipLostError).reason, "lost");
  // The intruder never renews: after the lease duration on a's clock, a leads again in a new term.
  await clock.advance(LEASE_MS + ACQUIRE_RETRY_BOUND_MS);
  assert.ok(a.elector.isLeader());
  assert.is(a.terms.length, 2);
  assert.not.ok(a.terms[1]?.aborted);
  assert.is(shared.lease?.record.leaseTransitions, 2);
  await a.elector.stop();
});

election("a graceful stop releases the lease and the follower takes over within one retry", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  const a = replica("a", shared, clock);
  a.elector.start();
  await clock.advance(0);
  const b = replica("b", shared, clock);
  b.elector.start();
  await clock.advance(RETRY_MS);
  await a.elector.stop();
  assert.ok(a.terms[0]?.aborted);
  assert.is(shared.lease?.record.holderIdentity, "");
  assert.is(shared.lease?.record.leaseTransitions, 0);
  await clock.advance(ACQUIRE_RETRY_BOUND_MS);
  assert.ok(b.elector.isLeader());
  assert.is(shared.lease?.record.leaseTransitions, 1);
  await b.elector.stop();
});

election("a leader that vanishes without releasing is replaced only after the lease duration", async () => {
  const clock = new FakeClock();
  const shared = new MemoryLease();
  const a = replica("a", shared, clock);
  a.elector.start();
  await clock.advance(0);
  const b = replica("b", shared, clock);
  b.elector.start();
  await clock.advance(RETRY_MS);
  await a.elector.stop({ release: false });
  assert.is(shared.lease?.record.holderIdentity, "a");
  await clock.advance(LEASE_MS - RETRY_MS);
  assert.not.ok(b.elector.isLeader());
  // b may see a's last renewal (made by RETRY_MS) only at its next jittered poll, and acquires at the first poll after that view expires.
  await clock.advance(RETRY_MS + 2 * ACQUIRE_RETRY_BOUND_MS);
  assert.ok(b.elector.isLeader());
  await b.elector.stop();
});

election.run();
