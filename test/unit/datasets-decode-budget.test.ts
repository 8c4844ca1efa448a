/**
 * The pixel budget of whole-image decodes (src/datasets/decode-budget.ts): which images wait for which, and that
 * decodeImage() goes through it only for the formats libvips decodes whole.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodeBudget, decodeBudget, decodesWhole } from '../../src/datasets/decode-budget.js';
import { decodeImage } from '../../src/datasets/preprocess.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';

/** Lets every settled promise's continuations run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('DecodeBudget', () => {
  it('lets decodes run together while their pixels fit, and makes the next one wait for room', async () => {
    const budget = new DecodeBudget(10);
    const log: string[] = [];
    const a = await budget.acquire(4);
    const b = await budget.acquire(6); // 4 + 6 = 10: fits
    const c = budget.acquire(3).then((release) => (log.push('c'), release));
    await settle();
    expect(log).toEqual([]); // 13 > 10
    a();
    await settle();
    expect(log).toEqual(['c']); // 6 + 3
    b();
    (await c)();
    expect(budget.peak).toBe(10);
  });

  it('lets one image larger than the budget decode, alone', async () => {
    const budget = new DecodeBudget(10);
    const big = await budget.acquire(25);
    let small = false;
    const next = budget.acquire(1).then((release) => ((small = true), release));
    await settle();
    expect(small).toBe(false);
    big();
    (await next)();
    expect(small).toBe(true);
    expect(budget.peak).toBe(25);
  });

  it('serves waiters first come, first served: a small image does not overtake a waiting large one', async () => {
    const budget = new DecodeBudget(10);
    const order: string[] = [];
    const first = await budget.acquire(8);
    const large = budget.acquire(9).then((release) => (order.push('large'), release));
    const small = budget.acquire(1).then((release) => (order.push('small'), release)); // 8 + 1 would fit
    await settle();
    expect(order).toEqual([]);
    first();
    const releaseLarge = await large;
    const releaseSmall = await small;
    expect(order).toEqual(['large', 'small']); // then 9 + 1 fit together
    releaseLarge();
    releaseLarge(); // a second call gives nothing back twice
    releaseSmall();
    expect((await budget.acquire(10))).toBeTypeOf('function');
  });
});

describe('decodesWhole', () => {
  it('is false only for baseline JPEG and non-interlaced PNG', () => {
    expect(decodesWhole({ format: 'jpeg', isProgressive: false })).toBe(false);
    expect(decodesWhole({ format: 'png', isProgressive: false })).toBe(false);
    expect(decodesWhole({ format: 'jpeg', isProgressive: true })).toBe(true);
    expect(decodesWhole({ format: 'png', isProgressive: true })).toBe(true);
    for (const format of ['webp', 'gif', 'tiff', 'heif', 'avif']) expect(decodesWhole({ format })).toBe(true);
  });
});

describe('decodeImage and the process-wide budget', () => {
  let tmp: string;
  const files: Record<string, string> = {};
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-budget-'));
    const source = () => sharp({ create: { width: 300, height: 200, channels: 3, background: { r: 200, g: 100, b: 50 } } });
    files.progressive1 = path.join(tmp, 'p1.jpg');
    files.progressive2 = path.join(tmp, 'p2.jpg');
    files.baseline = path.join(tmp, 'b.jpg');
    await source().jpeg({ progressive: true }).toFile(files.progressive1);
    await source().jpeg({ progressive: true }).toFile(files.progressive2);
    await source().jpeg({ progressive: false }).toFile(files.baseline);
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('decodes whole-image formats one at a time when two do not fit; streaming ones never wait', async () => {
    const config = resolvePreprocess({ preset: 'raw01' }, { name: 'x', dims: [1, 3, 32, 32] });
    const saved = decodeBudget.budget;
    try {
      decodeBudget.budget = 100_000; // below 2 x 300 x 200
      decodeBudget.peak = 0;
      const [p1, p2] = await Promise.all([decodeImage(files.progressive1!, config), decodeImage(files.progressive2!, config)]);
      expect(decodeBudget.peak).toBe(60_000); // never both at once
      expect(Buffer.compare(p1.pixels, p2.pixels)).toBe(0);
      decodeBudget.peak = 0;
      await Promise.all([decodeImage(files.baseline!, config), decodeImage(files.baseline!, config)]);
      expect(decodeBudget.peak).toBe(0); // not counted at all
      decodeBudget.budget = 1_000_000;
      decodeBudget.peak = 0;
      await Promise.all([decodeImage(files.progressive1!, config), decodeImage(files.progressive2!, config)]);
      expect(decodeBudget.peak).toBe(120_000); // both fit: together
    } finally {
      decodeBudget.budget = saved;
    }
  });
});
