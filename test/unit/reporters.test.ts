import { describe, expect, it, vi } from 'vitest';
import { createReporter } from '../../src/cli/reporters.js';

function fakeStream(isTTY = false) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, write: (s: string) => (chunks.push(s), true) } as unknown as NodeJS.WriteStream };
}

describe('reporters', () => {
  it('--json and --quiet print no progress and no info, but never swallow warnings', () => {
    for (const opts of [{ json: true }, { quiet: true }]) {
      const { chunks, stream } = fakeStream(true);
      const r = createReporter({ ...opts, stream });
      r.start('calibrating', 10, 'images');
      r.update({ done: 5 });
      r.info('effective configuration');
      r.warn('skipped a.jpg: corrupt');
      r.stop();
      expect(chunks.join('')).toBe('warning: skipped a.jpg: corrupt\n');
    }
  });

  it('plain lines off a terminal: one final line for a short task, intermediate lines every 2 s of a long one', () => {
    const { chunks, stream } = fakeStream(false);
    const r = createReporter({ stream });
    r.start('calibrating', 10, 'images');
    for (let i = 1; i <= 10; i++) r.update({ done: i });
    r.stop();
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toMatch(/^calibrating: 10\/10 images \([\d.]+ images\/s\)\n$/);

    const now = vi.spyOn(performance, 'now');
    let t = 0;
    now.mockImplementation(() => t);
    const long = fakeStream(false);
    const r2 = createReporter({ stream: long.stream });
    r2.start('calibrating', 100, 'images');
    for (let i = 1; i <= 100; i++) {
      t += 100; // 100 ms per image: 10 s in all -> a line at 2, 4, 6, 8, 10 s; the one at 10 s is the final one
      r2.update({ done: i });
    }
    r2.stop();
    expect(long.chunks).toHaveLength(5);
    expect(long.chunks[0]).toMatch(/^calibrating: 20\/100 images \(10\.0 images\/s\)\n$/);
    expect(long.chunks[4]).toMatch(/^calibrating: 100\/100 images/);

    // The last update printed the final count: stop() does not print it a second time (compare did).
    const again = fakeStream(false);
    const r3 = createReporter({ stream: again.stream });
    t = 0;
    r3.start('Comparing fp32, int8-entropy2', 8, 'images');
    t = 2500;
    r3.update({ done: 8 });
    r3.stop();
    // A stop after fewer than all prints where it ended, once; a line is printed again when the count moved on.
    r3.start('calibrating', 4, 'images');
    t = 5000;
    r3.update({ done: 3 });
    r3.stop();
    r3.start('decoding', 4, 'images');
    t = 7500;
    r3.update({ done: 2 });
    r3.update({ done: 4 });
    r3.stop();
    now.mockRestore();
    expect(again.chunks.map((c) => c.replace(/ \(.*$/s, ''))).toEqual(['Comparing fp32, int8-entropy2: 8/8 images', 'calibrating: 3/4 images', 'decoding: 2/4 images', 'decoding: 4/4 images']);
  });
});
