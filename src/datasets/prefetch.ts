/**
 * Ordered, bounded parallel map: runs an async task over a list with at most `concurrency` tasks in
 * flight and at most `window` results started but not yet taken by the consumer, and yields the
 * results in the list's order whatever order they finish in. Memory is bounded by `window` results,
 * whatever the list's length; while the consumer is busy (e.g. the model runs a batch), up to `window`
 * items are prepared ahead.
 */

export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface MapOrderedOptions {
  /** Tasks running at once (>= 1). */
  concurrency: number;
  /** Items started but not yet yielded (>= concurrency). */
  window: number;
  signal?: AbortSignal;
}

export async function* mapOrdered<T, R>(
  items: readonly T[],
  task: (item: T, index: number) => Promise<R>,
  options: MapOrderedOptions,
): AsyncGenerator<Settled<R>, void, undefined> {
  const concurrency = Math.max(1, Math.floor(options.concurrency));
  const window = Math.max(concurrency, Math.floor(options.window));
  const { signal } = options;
  const results = new Map<number, Settled<R>>();
  let launched = 0;
  let consumed = 0;
  let inFlight = 0;
  let closed = false;
  let wake: (() => void) | undefined;
  const wakeUp = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const pump = () => {
    while (!closed && inFlight < concurrency && launched < items.length && launched - consumed < window) {
      const i = launched++;
      inFlight++;
      Promise.resolve()
        .then(() => task(items[i]!, i))
        .then(
          (value): Settled<R> => ({ ok: true, value }),
          (error: unknown): Settled<R> => ({ ok: false, error }),
        )
        .then((settled) => {
          inFlight--;
          if (closed) return;
          results.set(i, settled);
          pump();
          if (i === consumed) wakeUp();
        });
    }
  };

  signal?.addEventListener('abort', wakeUp);
  try {
    pump();
    while (consumed < items.length) {
      signal?.throwIfAborted();
      let settled = results.get(consumed);
      while (settled === undefined) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        signal?.throwIfAborted();
        settled = results.get(consumed);
      }
      results.delete(consumed);
      consumed++;
      pump();
      yield settled;
    }
  } finally {
    // Stop launching; tasks still running finish on their own and their results are dropped.
    closed = true;
    results.clear();
    signal?.removeEventListener('abort', wakeUp);
  }
}
