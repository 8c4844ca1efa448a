/**
 * The TensorRT bridge's batch feeder (native/src/feeder), driven through feederSelfTest exactly as TensorRT drives
 * an IInt8Calibrator: from a native thread that is not the JS thread, getBatchSize, readCalibrationCache, getBatch
 * until it returns false, writeCalibrationCache. No TensorRT or GPU needed: the "device" is host memory, and the
 * log says what reached it (a checksum per batch), so every byte of every batch is checked.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrationFeed, type BatchLike } from '../../src/backends/tensorrt.js';
import type { FeederCallbacks, FeederSelfTestOptions } from '../../src/backends/tensorrt-native.js';
import { formatCalibrationCache } from '../../src/cache/trt-cache.js';
import { createDataset } from '../../src/datasets/dataset.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import { loadNative } from '../../src/native.js';
import { writeFileAtomic } from '../../src/util/fs.js';

const native = loadNative();
// A full garbage collection between measurements (what --expose-gc gives, without changing the test runner's flags).
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const IMAGES = path.resolve(__dirname, '../fixtures/images');

/** FNV-1a 64 of a Float32Array's bytes, as the native self-test computes it on what reached the device buffer. */
function fnv1a64(data: Float32Array): string {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, '0');
}

/** A small Dataset-like source: `count` images of 3x4x4, batches of `batch`, the last one partial (as Dataset does). */
async function* images(count: number, batch: number, log?: { closed: boolean }): AsyncGenerator<BatchLike> {
  const per = 3 * 4 * 4;
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const data = new Float32Array(n * per);
      for (let i = 0; i < data.length; i++) data[i] = Math.sin(start * per + i) * 3 + 0.25;
      await new Promise((r) => setImmediate(r)); // decoding takes a turn of the event loop
      yield { data, dims: [n, 3, 4, 4], partial: n < batch };
    }
  } finally {
    if (log) log.closed = true;
  }
}

async function collect(source: AsyncIterable<BatchLike>): Promise<BatchLike[]> {
  const out: BatchLike[] = [];
  for await (const b of source) out.push(b);
  return out;
}

function selfTest(options: FeederSelfTestOptions, callbacks: FeederCallbacks) {
  return native.feederSelfTest(options, callbacks);
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-feeder-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('batch feeder, driven like TensorRT from a native thread', () => {
  it('delivers every full batch of a Dataset-like source intact and in order, then ends; the partial batch is dropped and counted', { timeout: 10_000 }, async () => {
    const expected = (await collect(images(11, 4))).filter((b) => !b.partial);
    const feed = calibrationFeed(images(11, 4), [4, 3, 4, 4]);
    const log = await selfTest({ input: 'images', dims: [4, 3, 4, 4] }, feed.callbacks).done;

    expect(log.memory).toBe('host');
    expect(log.batchSize).toBe(4);
    expect(log.calibrated).toBe(true);
    expect(log.cacheRead).toBeNull();
    // 11 images in batches of 4: two full batches reach the device, the last 3 images are dropped.
    expect(log.batches).toHaveLength(2);
    expect(log.batches.map((b) => b.checksum)).toEqual(expected.map((b) => fnv1a64(b.data)));
    log.batches.forEach((b, i) => {
      expect(b.elements).toBe(4 * 48);
      expect(b.sum).toBeCloseTo(expected[i]!.data.reduce((s, v) => s + v, 0), 3);
    });
    expect(feed.stats).toEqual({ batches: 2, images: 8, droppedImages: 3 });
    expect(log.cacheWrites).toBe(0);
  });

  it('feeds real images from test/fixtures through a Dataset, byte for byte', { timeout: 30_000 }, async () => {
    const dataset = await createDataset({ data: IMAGES, preprocess: resolvePreprocess({ preset: 'raw01', size: 32 }), batchSize: 3, inputName: 'x' });
    const dims = [dataset.batchSize, ...dataset.imageDims];
    const reference = (await collect(dataset.batches())).filter((b) => !b.partial);
    const progress: number[] = [];
    const feed = calibrationFeed(dataset.batches(), dims, { inputName: 'x', onBatch: (s) => progress.push(s.images) });
    const log = await selfTest({ input: 'x', dims }, feed.callbacks).done;

    expect(dims).toEqual([3, 3, 32, 32]);
    // 8 photos, batches of 3: 2 full batches, 2 images dropped.
    expect(log.batches.map((b) => b.checksum)).toEqual(reference.map((b) => fnv1a64(b.data)));
    expect(log.batches).toHaveLength(2);
    expect(feed.stats).toEqual({ batches: 2, images: 6, droppedImages: 2 });
    expect(progress).toEqual([3, 6]);
  });

  it('accepts answers given synchronously as well as promises', { timeout: 10_000 }, async () => {
    let n = 0;
    const log = await selfTest({ input: 'x', dims: [2, 2] }, { nextBatch: () => (++n <= 3 ? new Float32Array([n, n, n, n]) : null) }).done;
    expect(log.batches.map((b) => b.sum)).toEqual([4, 8, 12]);
  });

  it('a JavaScript error thrown mid-way aborts with that very error, and no batch is asked for after it', { timeout: 10_000 }, async () => {
    const boom = new RangeError('image 7 could not be decoded');
    let calls = 0;
    const task = selfTest({ input: 'x', dims: [1, 4] }, {
      nextBatch: async () => {
        calls += 1;
        if (calls === 3) throw boom;
        return new Float32Array(4);
      },
    });
    await expect(task.done).rejects.toBe(boom);
    expect(calls).toBe(3);
  });

  it('a rejected cache write fails the run with its error', { timeout: 10_000 }, async () => {
    const denied = new Error('EACCES: permission denied');
    const task = selfTest({ input: 'x', dims: [1, 1], cacheToWrite: new Uint8Array([1]) }, {
      nextBatch: async () => null,
      writeCache: async () => {
        throw denied;
      },
    });
    await expect(task.done).rejects.toBe(denied);
  });

  it('a batch of the wrong shape or type is a TypeError that says what was expected', { timeout: 10_000 }, async () => {
    await expect(selfTest({ input: 'x', dims: [2, 3] }, { nextBatch: () => new Float32Array(5) }).done).rejects.toThrow(
      /Expected a Float32Array of 6 elements \(2x3\) or null for calibration batch 0 of input "x" but received a Float32Array of 5 elements/,
    );
    await expect(selfTest({ input: 'x', dims: [2, 3] }, { nextBatch: () => new Float64Array(6) as unknown as Float32Array }).done).rejects.toThrow(
      /but received a Float64Array of 6 elements/,
    );
  });

  it('TensorRT asking for another input than the dataset feeds is a clear error', { timeout: 10_000 }, async () => {
    await expect(
      selfTest({ input: 'images', dims: [1, 2], bindingNames: ['images', 'im_info'] }, { nextBatch: () => new Float32Array(2) }).done,
    ).rejects.toMatchObject({ code: 'ERR_TRT_CALIB_NATIVE', message: expect.stringMatching(/input "im_info", but the dataset feeds "images" only/) });
  });

  it('cancel() wakes the builder thread while it waits for a batch that never comes: no deadlock', { timeout: 5_000 }, async () => {
    let asked = 0;
    const task = selfTest({ input: 'x', dims: [1, 1] }, {
      nextBatch: () => {
        asked += 1;
        return new Promise<Float32Array>(() => {}); // a decoder that hangs
      },
    });
    setTimeout(() => task.cancel('stopped by the user'), 50);
    const started = Date.now();
    await expect(task.done).rejects.toMatchObject({ code: 'ABORT_ERR', message: 'stopped by the user' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(asked).toBe(1);
  });

  it('an early abort mid-way closes the source (no more decoding) and writes no cache', { timeout: 10_000 }, async () => {
    const source = { closed: false };
    const feed = calibrationFeed(images(40, 2, source), [2, 3, 4, 4]);
    let written = 0;
    const task = selfTest({ input: 'x', dims: [2, 3, 4, 4], cacheToWrite: new Uint8Array([1, 2]) }, {
      nextBatch: async () => {
        const batch = await feed.callbacks.nextBatch();
        if (feed.stats.batches === 3) task.cancel('aborted after 3 batches');
        return batch;
      },
      writeCache: () => {
        written += 1;
      },
    });
    await expect(task.done).rejects.toMatchObject({ code: 'ABORT_ERR' });
    await feed.close();
    expect(source.closed).toBe(true);
    expect(feed.stats.batches).toBe(3);
    expect(written).toBe(0);
    // Cancelling a finished task is harmless.
    task.cancel('again');
  });

  it('a cache written by our calibrators is handed to TensorRT byte for byte, and TensorRT then skips calibration', { timeout: 10_000 }, async () => {
    const text = formatCalibrationCache({
      trtVersion: { major: 10, minor: 3, patch: 0 },
      algorithm: 'EntropyCalibration2',
      entries: [
        { name: 'input', scale: Math.fround(2.64 / 127) },
        { name: '(Unnamed Layer* 3) [Shuffle]_output', scale: Math.fround(0.5 / 127) },
        { name: 'conv1: out', scale: Math.fround(13.7 / 127) },
      ],
    });
    const file = path.join(tmp, 'model.entropy2.cache');
    await writeFileAtomic(file, text);
    const bytes = await readFile(file);
    let batchesAsked = 0;
    const kinds: string[] = [];
    const log = await selfTest({ input: 'input', dims: [1, 3] }, {
      readCache: async (kind) => {
        kinds.push(kind);
        return readFile(file);
      },
      nextBatch: async () => {
        batchesAsked += 1;
        return null;
      },
    }).done;
    expect(kinds).toEqual(['calibration']);
    expect(log.cacheRead).not.toBeNull();
    expect(Buffer.compare(log.cacheRead!, bytes)).toBe(0);
    expect(log.cacheRead!.toString('utf8')).toBe(text);
    expect(log.calibrated).toBe(false);
    expect(batchesAsked).toBe(0);
  });

  it('an empty or missing cache means calibrate; a cache-only run (no nextBatch) reports that batches were asked for', { timeout: 10_000 }, async () => {
    const empty = await selfTest({ input: 'x', dims: [1, 1] }, { readCache: () => new Uint8Array(0), nextBatch: () => null }).done;
    expect(empty.cacheRead).toBeNull();
    expect(empty.calibrated).toBe(true);
    const cacheOnly = await selfTest({ input: 'x', dims: [1, 1] }, { readCache: () => null }).done;
    expect(cacheOnly.batchRequestedWithoutSource).toBe(true);
    expect(cacheOnly.batches).toEqual([]);
  });

  it('the cache the builder writes lands in a file through the TypeScript callback', { timeout: 10_000 }, async () => {
    const produced = Buffer.from('TRT-100300-EntropyCalibration2\ninput: 3c010a14\nconv1: 3d4ccccd\n');
    const out = path.join(tmp, 'calib-cache', 'model.tensorrt-entropy2.cache');
    let n = 0;
    const log = await selfTest({ input: 'x', dims: [1, 2], cacheToWrite: produced }, {
      nextBatch: async () => (++n <= 2 ? new Float32Array([1, 2]) : null),
      writeCache: async (bytes, kind) => {
        expect(kind).toBe('calibration');
        await writeFileAtomic(out, bytes);
      },
    }).done;
    expect(log.batches).toHaveLength(2);
    expect(log.cacheWrites).toBe(1);
    expect(log.cacheBytesWritten).toBe(produced.length);
    expect(Buffer.compare(await readFile(out), produced)).toBe(0);
  });

  it('rejects unusable options at the boundary', () => {
    expect(() => selfTest({ input: 'x', dims: [2, 0] }, {})).toThrow(/must all be fixed and >= 1/);
    expect(() => selfTest({ input: '', dims: [2] }, {})).toThrow(/needs a name/);
    expect(() => (native.feederSelfTest as unknown as (a: unknown) => unknown)(1)).toThrow(/expected two objects/);
  });
});

describe('batch feeder: no leaks, no deadlock', () => {
  it('200 runs leave the resident memory flat', { timeout: 60_000 }, async () => {
    const dims = [4, 3, 32, 32];
    const per = 4 * 3 * 32 * 32;
    const runOnce = async () => {
      let n = 0;
      // useCacheIfPresent false: read a cache and still calibrate, so every path allocates.
      const log = await selfTest({ input: 'x', dims, cacheToWrite: new Uint8Array(4096), useCacheIfPresent: false }, {
        readCache: async () => new Uint8Array(4096),
        nextBatch: async () => (++n <= 4 ? new Float32Array(per).fill(n) : null),
        writeCache: async () => {},
      }).done;
      if (log.batches.length !== 4 || log.cacheRead?.length !== 4096 || log.cacheWrites !== 1) throw new Error('a run lost data');
    };
    const settle = async () => {
      gc();
      await new Promise((r) => setTimeout(r, 20));
      gc();
    };
    // Warm up until the allocators (glibc's per-thread arenas: each run starts a thread) and V8's heap reach their
    // working size. Measured: rss grows ~20 MiB over the first ~700 runs, then stays within 0.2 MiB per 200 runs.
    for (let i = 0; i < 800; i++) await runOnce();
    await settle();
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 200; i++) await runOnce();
    await settle();
    const grown = process.memoryUsage().rss - before;
    // Each run moves 4 x 48 KiB batches and two 4 KiB caches. A planted leak of one 48 KiB copy per batch grew rss
    // by 33 MiB over these 200 runs; without it the growth measured 0-0.8 MiB.
    expect(grown).toBeLessThan(3 * 1024 * 1024);
  });

  it('many runs at once each finish with their own batches', { timeout: 20_000 }, async () => {
    const runs = Array.from({ length: 16 }, (_, k) => {
      let n = 0;
      return selfTest({ input: 'x', dims: [1, 2] }, { nextBatch: async () => (++n <= 5 ? new Float32Array([k, n]) : null) }).done;
    });
    const logs = await Promise.all(runs);
    logs.forEach((log, k) => expect(log.batches.map((b) => b.sum)).toEqual([1, 2, 3, 4, 5].map((n) => k + n)));
  });
});
