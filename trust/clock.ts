/**
 * Time, injected. Everything in trust/ that reads the time or waits takes a
 * `Clock` (and, to wait, `Timers`), so expiry and renewal are tested with a
 * fake clock instead of sleeping.
 */
export interface Clock {
  now(): Date;
}

export interface TimerHandle {
  cancel(): void;
}

export interface Timers {
  /** Calls `callback` once after `delayMs`; `cancel()` prevents it. */
  setTimer(callback: () => void, delayMs: number): TimerHandle;
}

export interface ClockWithTimers extends Clock, Timers {}

/** setTimeout's ceiling (2^31-1 ms, about 24.8 days); longer waits are chained. */
export const MAX_TIMER_DELAY_MS = 2_147_483_647;

/** The real clock and timers. Long delays are split so a root's year-long renewal does not overflow setTimeout. */
export function createSystemClock(): ClockWithTimers {
  return {
    now: () => new Date(),
    setTimer(callback, delayMs) {
      let timer: NodeJS.Timeout | undefined;
      let cancelled = false;
      const due = Date.now() + Math.max(0, delayMs);
      const arm = () => {
        const left = due - Date.now();
        timer = setTimeout(
          () => {
            if (cancelled) return;
            if (due - Date.now() > 0) arm();
            else callback();
          },
          Math.min(Math.max(0, left), MAX_TIMER_DELAY_MS),
        );
        timer.unref?.();
      };
      arm();
      return {
        cancel() {
          cancelled = true;
          if (timer) clearTimeout(timer);
        },
      };
    },
  };
}

export function isClock(value: unknown): value is Clock {
  return typeof value === "object" && value !== null && typeof (value as { now?: unknown }).now === "function";
}

export function isClockWithTimers(value: unknown): value is ClockWithTimers {
  return isClock(value) && typeof (value as { setTimer?: unknown }).setTimer === "function";
}
