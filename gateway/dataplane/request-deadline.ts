/**
 * A request's end: its route timeout fired or its client left. A plain
 * listener list, because an `AbortController` builds a DOMException on every
 * abort, and every request ends (the profile showed it at ~7 % of an L7
 * gateway's CPU). The list is an array made on first use (a request usually
 * has one or two listeners at a time), not a Set per request.
 */
export class RequestDeadline {
  private expired = false;
  private listeners: (() => void)[] | undefined;

  get aborted(): boolean {
    return this.expired;
  }

  /** Calls `listener` once when the deadline passes (`remove` takes it back). */
  onAbort(listener: () => void): void {
    (this.listeners ??= []).push(listener);
  }

  /** Takes back a listener given to `onAbort`. */
  remove(listener: () => void): void {
    const listeners = this.listeners;
    const i = listeners ? listeners.indexOf(listener) : -1;
    if (i >= 0) listeners!.splice(i, 1);
  }

  abort(): void {
    if (this.expired) return;
    this.expired = true;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const l of listeners) l();
  }
}
