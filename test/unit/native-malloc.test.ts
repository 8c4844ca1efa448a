/**
 * keepLargeAllocationsMapped (native/src/addon.cc), applied by configureSharp(): after big decodes, freed memory
 * goes back to the system instead of staying on glibc's arenas. Checked the way a user sees it: resident memory
 * of a process that decodes 12-megapixel progressive JPEGs two at a time, with and without it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/native.js';

const native = loadNative();
const ROOT = path.resolve(__dirname, '../..');
const glibc = process.platform === 'linux' && Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } })?.header?.glibcVersionRuntime);

// The child imports the built addon through dist/ (npm test builds it first).
const CHILD = `
import sharp from 'sharp';
import { readFileSync } from 'node:fs';
import { loadNative } from './dist/native.js';
const rss = () => Number(readFileSync('/proc/self/status', 'utf8').match(/^VmRSS:\\s+(\\d+) kB/m)[1]) / 1024;
sharp.cache(false);
const big = await sharp({ create: { width: 4000, height: 3000, channels: 3, noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
  .jpeg({ progressive: true, quality: 80 }).toBuffer();
if (process.argv[1] === 'on' && !loadNative().keepLargeAllocationsMapped(1 << 20)) throw new Error('not applied');
const before = rss();
for (let i = 0; i < 3; i++) {
  await Promise.all([0, 1].map(() => sharp(big).resize(224, 224, { fit: 'fill', fastShrinkOnLoad: false }).raw().toBuffer()));
}
process.stdout.write(String(rss() - before));
`;

function growthMiB(mode: 'on' | 'off'): number {
  // MALLOC_* variables would change the baseline this compares against: the child gets none.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_') && k !== 'GLIBC_TUNABLES'));
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', CHILD, mode], { cwd: ROOT, env, encoding: 'utf8' }));
}

describe('keepLargeAllocationsMapped', () => {
  it('rejects a missing or out-of-range size', () => {
    expect(() => (native.keepLargeAllocationsMapped as (x?: unknown) => boolean)()).toThrow(/Expected a number of bytes/);
    expect(() => native.keepLargeAllocationsMapped(100)).toThrow(/4096 to 33554432/);
    expect(() => native.keepLargeAllocationsMapped(1 << 30)).toThrow(/4096 to 33554432/);
  });

  it.runIf(glibc && existsSync(path.join(ROOT, 'dist', 'native.js')))(
    'returns the memory of big decodes to the system (glibc)',
    () => {
      const off = growthMiB('off');
      const on = growthMiB('on');
      // Measured: 75 MiB kept without, 6 with.
      expect(on).toBeLessThan(25);
      expect(off - on).toBeGreaterThan(30);
    },
    60_000,
  );
});
