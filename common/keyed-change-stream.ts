export interface KeyedChangeStreamOptions<T> {
  /** Keys to deliver first: the current state, so a new consumer starts level-triggered. */
  initialKeys: Iterable<string>;
  /** Registers for changed keys; returns the unsubscribe function. */
  subscribe: (push: (keys: Iterable<string>) => void) => () => void;
  /** Reads the current value for a key at delivery time. */
  read: (key: string) => T;
  signal?: AbortSignal;
}

/**
 * An async iterator of changes that coalesces by key: a key changed ten times
 * before the consumer looks is delivered once, with its value at delivery. The
 * backlog is bounded by the number of distinct keys, never by the change rate.
 */
export function keyedChangeStream<T>(options: KeyedChangeStreamOptions<T>): AsyncIterableIterator<T, undefined> {
  const pending = new Set<string>(options.initialKeys);
  let waiter: ((result: IteratorResult<T, undefined>) => void) | undefined;
  let done = false;

  const finish = (): IteratorResult<T, undefined> => {
    done = true;
    unsubscribe();
    options.signal?.removeEventListener("abort", onAbort);
    pending.clear();
    const w = waiter;
    waiter = undefined;
    w?.({ done: true, value: undefined });
    return { done: true, value: undefined };
  };
  const onAbort = () => void finish();

  const deliver = (): IteratorResult<T, undefined> | undefined => {
    const key = pending.values().next();
    if (key.done) return undefined;
    pending.delete(key.value);
    return { done: false, value: options.read(key.value) };
  };

  const unsubscribe = options.subscribe((keys) => {
    if (done) return;
    for (const key of keys) pending.add(key);
    if (waiter) {
      const result = deliver();
      if (result) {
        const w = waiter;
        waiter = undefined;
        w(result);
      }
    }
  });
  if (options.signal?.aborted) finish();
  else options.signal?.addEventListener("abort", onAbort, { once: true });

  return {
    next: () => {
      if (done) return Promise.resolve({ done: true, value: undefined });
      const result = deliver();
      if (result) return Promise.resolve(result);
      return new Promise((resolve) => (waiter = resolve));
    },
    return: () => Promise.resolve(finish()),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
