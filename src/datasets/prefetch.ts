/**
 * Ordered, bounded parallel map: runs an async task over a list with at most `concurrency` tasks in
 * flight and at most `window` results started but not yet taken by the consumer, and yields the
 * results in the list's order whatever order they finish in. Memory is bounded by `window` results,
 * whatever the list's length; while the consumer is busy (e.g. the model runs a batch), up to `window`
 * items are prepared ahead.
 *
 * With `ordered: false` the results come as they finish instead (each carries its index): a consumer that does
 * not care about order (statistics are sums) is then never held up by one slow item at the head of the list.
 */

export type Settled<R> = { ok: true; value: R; index: number } | { ok: false; error: unknown; index: number };

export interface MapOrderedOptions {
  /** Tasks running at once (>= 1). */
  concurrency: number;
  /** Items started but not yet yielded (>= concurrency). */
  window: number;
  signal?: AbortSignal;
  /** Yield in list order (default) or in the order the tasks finish. */
  ordered?: boolean;
}

export async function* mapOrdered<T, R>(
  items: readonly T[],
  task: (item: T, index: number) => Promise<R>,
  options: MapOrderedOptions,
): AsyncGenerator<Settled<R>, void, undefined> {
  const concurrency = Math.max(1, Math.floor(options.concurrency));
  const window = Math.max(concurrency, Math.floor(options.window));
  const { signal } = options;
  const ordered = options.ordered ?? true;
  // The next result to hand out: the consumed-th item in order, or the earliest finished one (Map keeps
  // insertion order) when unordered.
  const next = (): Settled<R> | undefined => (ordered ? results.get(consumed) : results.values().next().value);
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
          (value): Settled<R> => ({ ok: true, value, index: i }),
          (error: unknown): Settled<R> => ({ ok: false, error, index: i }),
        )
        .then((settled) => {
          inFlight--;
          if (closed) return;
          results.set(i, settled);
          pump();
          if (!ordered || i === consumed) wakeUp();
        });
    }
  };

  signal?.addEventListener('abort', wakeUp);
  try {
    pump();
    while (consumed < items.length) {
      signal?.throwIfAborted();
      let settled = next();
      while (settled === undefined) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        signal?.throwIfAborted();
        settled = next();
      }
      results.delete(settled.index);
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
