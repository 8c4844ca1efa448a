import { describe, expect, it } from 'vitest';
import { mapOrdered } from '../../src/datasets/prefetch.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('mapOrdered', () => {
  it('yields results in input order whatever order they finish in, with bounded concurrency', async () => {
    const items = Array.from({ length: 30 }, (_, i) => i);
    let inFlight = 0;
    let maxInFlight = 0;
    const finished: number[] = [];
    const out: number[] = [];
    for await (const r of mapOrdered(
      items,
      async (i) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await sleep((i * 7) % 5); // later items often finish first
        inFlight--;
        finished.push(i);
        return i * 10;
      },
      { concurrency: 4, window: 8 },
    )) {
      expect(r.ok).toBe(true);
      if (r.ok) out.push(r.value);
    }
    expect(out).toEqual(items.map((i) => i * 10));
    expect(maxInFlight).toBe(4);
    expect(finished).not.toEqual(items); // they really finished out of order
  });

  it('starts at most `window` items ahead of a slow consumer', async () => {
    let started = 0;
    const gen = mapOrdered(
      Array.from({ length: 100 }, (_, i) => i),
      async (i) => {
        started++;
        return i;
      },
      { concurrency: 3, window: 6 },
    );
    const first = await gen.next();
    expect(first.value).toEqual({ ok: true, value: 0, index: 0 });
    await sleep(20); // consumer busy: the producer fills the window and stops
    expect(started).toBe(7); // item 0 taken + 6 ahead
    await gen.next();
    await sleep(20);
    expect(started).toBe(8);
    await gen.return(undefined);
    await sleep(20);
    expect(started).toBe(8); // closing stops launching
  });

  it('reports failures as settled results without stopping the rest', async () => {
    const out = [];
    for await (const r of mapOrdered(
      [1, 2, 3],
      async (i) => {
        if (i === 2) throw new Error('bad');
        return i;
      },
      { concurrency: 2, window: 2 },
    )) {
      out.push(r.ok ? r.value : (r.error as Error).message);
    }
    expect(out).toEqual([1, 'bad', 3]);
  });

  it('stops when the signal aborts', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    await expect(async () => {
      for await (const r of mapOrdered(
        [1, 2, 3, 4],
        async (i) => {
          await sleep(5);
          return i;
        },
        { concurrency: 1, window: 1, signal: controller.signal },
      )) {
        if (r.ok) seen.push(r.value);
        if (seen.length === 2) controller.abort();
      }
    }).rejects.toThrow(/abort/i);
    expect(seen).toEqual([1, 2]);
  });

  it('with ordered: false, yields results as they finish, each with its index, still within the window', async () => {
    // Item 0 is slow: in order it would hold up everything; unordered, the others come first.
    const delays = [60, 5, 5, 5, 5, 5];
    let started = 0;
    const out: Array<[number, number]> = [];
    for await (const r of mapOrdered(
      delays.map((_, i) => i),
      async (i) => {
        started++;
        await sleep(delays[i]!);
        return i * 10;
      },
      { concurrency: 2, window: 3, ordered: false },
    )) {
      if (r.ok) out.push([r.index, r.value]);
      expect(started - out.length).toBeLessThanOrEqual(3);
    }
    expect(out.map(([i]) => i)).not.toEqual([0, 1, 2, 3, 4, 5]);
    expect(out[0]![0]).not.toBe(0);
    expect([...out].sort((a, b) => a[0] - b[0])).toEqual(delays.map((_, i) => [i, i * 10]));
  });
});
