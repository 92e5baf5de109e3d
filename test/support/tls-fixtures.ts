/**
 * PKI fixtures for trust tests: a fake clock with timers, and a forger that
 * signs arbitrary leaves with a (leaked) intermediate key, bypassing the
 * issuance policy the way an attacker holding that key would.
 */
import {
  LeafEncoder,
  generateLeafKey,
  importPrivateKeyPem,
  type Certificate,
  type ClockWithTimers,
  type IntermediateCa,
  type KeyAlgorithm,
  type TimerHandle,
} from "../../trust/internal.ts";

/** A clock that moves only when told; timers fire in due order as it advances. */
export class FakeClock implements ClockWithTimers {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, { due: number; callback: () => void }>();
  readonly #tracked = new Set<Promise<unknown>>();

  constructor(start: Date | number) {
    this.#now = typeof start === "number" ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  setTimer(callback: () => void, delayMs: number): TimerHandle {
    const id = ++this.#seq;
    this.#timers.set(id, { due: this.#now + Math.max(0, delayMs), callback });
    return { cancel: () => void this.#timers.delete(id) };
  }

  /**
   * Registers async work started by a timer callback (e.g. a WebCrypto-backed
   * issuer call) so `advance` waits for it before moving time again: thread-pool
   * jobs do not finish within a fixed number of event-loop turns.
   */
  track<T>(work: Promise<T>): Promise<T> {
    this.#tracked.add(work);
    const done = () => void this.#tracked.delete(work);
    work.then(done, done);
    return work;
  }

  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, letting async work settle after each. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await this.idle();
      let nextId: number | undefined;
      let nextDue = Infinity;
      for (const [id, t] of this.#timers) if (t.due <= target && t.due < nextDue) [nextId, nextDue] = [id, t.due];
      if (nextId === undefined) break;
      const timer = this.#timers.get(nextId)!;
      this.#timers.delete(nextId);
      this.#now = Math.max(this.#now, timer.due);
      timer.callback();
    }
    this.#now = target;
    await this.idle();
  }

  private async idle(): Promise<void> {
    await settle();
    while (this.#tracked.size) {
      await Promise.allSettled([...this.#tracked]);
      await settle();
    }
  }
}

/** Lets pending promise chains (including WebCrypto jobs) run. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

export function fixedClock(at: Date): { now: () => Date } {
  return { now: () => new Date(at.getTime()) };
}

export interface ForgedLeaf {
  readonly certificate: Certificate;
  readonly chainPem: string;
  readonly privateKeyPem: string;
}

/**
 * Signs a leaf for any `spiffeId` with `intermediate`'s private key, skipping
 * every check IntermediateCa.issueLeaf makes: what a thief of that key can do.
 */
export async function forgeLeaf(options: {
  intermediate: IntermediateCa;
  spiffeId: string;
  notBefore?: Date;
  notAfter?: Date;
  algorithm?: KeyAlgorithm;
}): Promise<ForgedLeaf> {
  const { key, type } = await importPrivateKeyPem(options.intermediate.keyPem);
  const encoder = new LeafEncoder({ issuer: options.intermediate.certificate, signingKey: key, keyType: type });
  const algorithm = options.algorithm ?? "ecdsa-p256";
  const leafKey = await generateLeafKey(algorithm);
  const now = Date.now();
  const certificate = await encoder.encode({
    publicKeyInfo: leafKey.publicKeyInfo,
    spiffeId: options.spiffeId,
    notBefore: options.notBefore ?? new Date(now - 60_000),
    notAfter: options.notAfter ?? new Date(now + 3_600_000),
  });
  return { certificate, chainPem: certificate.pem + options.intermediate.certPem, privateKeyPem: leafKey.privateKeyPem };
}
