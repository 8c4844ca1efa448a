/** Shard selection (src/app/shard.ts), the image-list hash (src/stats/image-list.ts) and exact merging (src/stats/merge.ts). */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseShard, shardRange, shardRecord, shardImageEntries } from '../../src/app/shard.js';
import { UserError } from '../../src/errors.js';
import { accumulateReference, emptyStatistics } from '../../src/stats/histogram.js';
import { imageListSha256, relativeToCommonFolder } from '../../src/stats/image-list.js';
import { mergeTensorStatistics } from '../../src/stats/merge.js';
import { encodeStatistics } from '../../src/stats/store.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

function userError(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return err as UserError;
  }
  throw new Error('expected a UserError');
}

describe('parseShard', () => {
  it('reads K/N and refuses K outside 1..N, N < 1 and other text', () => {
    expect(parseShard('2/4', {})).toMatchObject({ index: 2, count: 4 });
    expect(parseShard(' 1 / 1 ', {})).toMatchObject({ index: 1, count: 1 });
    expect(userError(() => parseShard('0/4', {})).message).toMatch(/shard 0 is not between 1 and 4/);
    expect(userError(() => parseShard('5/4', {})).message).toMatch(/shard 5 is not between 1 and 4/);
    expect(userError(() => parseShard('1/0', {})).message).toMatch(/at least 1/);
    expect(userError(() => parseShard('2of4', {})).message).toMatch(/not K\/N, auto or auto\/N/);
  });

  it('auto: a Kubernetes Indexed Job (0-based JOB_COMPLETION_INDEX) with N given', () => {
    expect(parseShard('auto/4', { JOB_COMPLETION_INDEX: '0' })).toMatchObject({ index: 1, count: 4 });
    expect(parseShard('auto/4', { JOB_COMPLETION_INDEX: '3' })).toMatchObject({ index: 4, count: 4 });
    expect(userError(() => parseShard('auto/4', { JOB_COMPLETION_INDEX: '4' })).message).toMatch(/shard 5 is not between 1 and 4/);
    expect(userError(() => parseShard('auto', { JOB_COMPLETION_INDEX: '1' })).hint).toMatch(/--shard auto\/N/);
    expect(userError(() => parseShard('auto/4', { JOB_COMPLETION_INDEX: 'x' })).message).toMatch(/JOB_COMPLETION_INDEX="x"/);
  });

  it('auto: a Slurm array maps its first task id to shard 1, whether --array=0-3 or --array=1-4', () => {
    const zeroBased = { SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_MAX: '3' };
    expect(parseShard('auto', { ...zeroBased, SLURM_ARRAY_TASK_ID: '0' })).toMatchObject({ index: 1, count: 4 });
    expect(parseShard('auto', { ...zeroBased, SLURM_ARRAY_TASK_ID: '3' })).toMatchObject({ index: 4, count: 4 });
    const oneBased = { SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '4' };
    expect(parseShard('auto', { ...oneBased, SLURM_ARRAY_TASK_ID: '1' })).toMatchObject({ index: 1, count: 4 });
    expect(parseShard('auto/4', { ...oneBased, SLURM_ARRAY_TASK_ID: '4' })).toMatchObject({ index: 4, count: 4 });
    expect(userError(() => parseShard('auto/3', { ...oneBased, SLURM_ARRAY_TASK_ID: '2' })).message).toMatch(/disagrees with SLURM_ARRAY_TASK_COUNT=4/);
    // --array=0-6:2 (ids 0,2,4,6): 4 tasks but gaps
    const stepped = { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_MAX: '6', SLURM_ARRAY_TASK_STEP: '2' };
    expect(userError(() => parseShard('auto', stepped)).message).toMatch(/consecutive task ids/);
    expect(userError(() => parseShard('auto', { SLURM_ARRAY_TASK_ID: '2' })).message).toMatch(/no SLURM_ARRAY_TASK_COUNT/);
  });

  it('auto with no scheduler says which variables it looked for', () => {
    const err = userError(() => parseShard('auto', {}));
    expect(err.message).toMatch(/JOB_COMPLETION_INDEX/);
    expect(err.message).toMatch(/SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT/);
    expect(err.hint).toMatch(/--shard K\/N/);
  });
});

describe('shardRange', () => {
  const s = (index: number, count: number) => ({ index, count, source: `--shard ${index}/${count}` });
  it('cuts the selection into N contiguous slices, end to end, as even as possible', () => {
    // floor(k * 10 / 4) = 0, 2, 5, 7, 10
    expect([1, 2, 3, 4].map((k) => shardRange(10, s(k, 4)))).toEqual([
      { start: 0, end: 2 },
      { start: 2, end: 5 },
      { start: 5, end: 7 },
      { start: 7, end: 10 },
    ]);
    expect([1, 2, 3, 4].map((k) => shardRange(5, s(k, 4)))).toEqual([
      { start: 0, end: 1 },
      { start: 1, end: 2 },
      { start: 2, end: 3 },
      { start: 3, end: 5 },
    ]);
  });
  it('with a fixed batch, slices start on batch boundaries and only the last holds the short batch', () => {
    // 10 images in batches of 4: 3 batches (4, 4, 2) over 2 shards: 1 batch, then 2
    expect(shardRange(10, s(1, 2), 4)).toEqual({ start: 0, end: 4 });
    expect(shardRange(10, s(2, 2), 4)).toEqual({ start: 4, end: 10 });
  });
  it('refuses a shard that would get no image', () => {
    const err = userError(() => shardRange(3, s(1, 4)));
    expect(err.message).toMatch(/--shard 1\/4: shard 1 of 4 gets no images: 3 images are selected/);
    expect(err.hint).toMatch(/at most 3 shard/);
  });
});

describe('image list hash', () => {
  it('hashes paths relative to the common folder with sizes, whatever the prefix', () => {
    const expected = sha('a/x.jpg\t10\nb/y.jpg\t20\n');
    expect(imageListSha256([['/data/set/a/x.jpg', 10], ['/data/set/b/y.jpg', 20]])).toBe(expected);
    expect(imageListSha256([['/x/a/x.jpg', 10], ['/x/b/y.jpg', 20]])).toBe(expected);
    expect(relativeToCommonFolder(['/d/one.jpg'])).toEqual(['one.jpg']);
    expect(relativeToCommonFolder(['/d/ab/x.jpg', '/d/abc/y.jpg'])).toEqual(['ab/x.jpg', 'abc/y.jpg']);
  });

  it('the shards\' records give the hash of the whole list, even when their own common folders differ', () => {
    const selection = ['/data/a/1.jpg', '/data/a/2.jpg', '/data/b/3.jpg', '/data/b/4.jpg'];
    const sizes = [11, 12, 13, 14];
    const spec = (index: number) => ({ index, count: 2, source: 'test' });
    const first = shardRecord(spec(1), selection, { start: 0, end: 2 }, sizes.slice(0, 2), new Set(), 1);
    const second = shardRecord(spec(2), selection, { start: 2, end: 4 }, sizes.slice(2), new Set(['/data/b/3.jpg']), 1);
    expect(first.images).toEqual([['a/1.jpg', 11], ['a/2.jpg', 12]]);
    expect(second.images).toEqual([['b/4.jpg', 14]]);
    expect(first.selectionSha256).toBe(second.selectionSha256);
    // in either order, the hash of the images used (3.jpg skipped) relative to their common folder /data
    expect(imageListSha256(shardImageEntries([second, first]))).toBe(sha('a/1.jpg\t11\na/2.jpg\t12\nb/4.jpg\t14\n'));
    // a skipped image with a fixed batch > 1 would shift the batches: refused
    expect(userError(() => shardRecord(spec(2), selection, { start: 2, end: 4 }, sizes.slice(2), new Set(['/data/b/3.jpg']), 2)).message).toMatch(/could not be read.*fixed batch of 2/);
  });
});

describe('mergeTensorStatistics', () => {
  it('adds shards into the statistics of one pass over all the values, byte for byte', () => {
    const values = [new Float32Array([0.5, -0.25, 0, 3]), new Float32Array([-7.5, 1e-3, Number.NaN]), new Float32Array([100, -100.5, 0])];
    const one = (name: string, parts: Float32Array[]) => {
      const s = emptyStatistics(name, 64);
      for (const p of parts) accumulateReference(s, p);
      return s;
    };
    const shards = values.map((v) => [one('b', [v]), one('a', [v.map((x) => x * 2)])]);
    const merged = mergeTensorStatistics([shards[2]!, shards[0]!, shards[1]!]);
    const whole = [one('a', values.map((v) => v.map((x) => x * 2))), one('b', values)];
    expect(merged.map((t) => t.name)).toEqual(['a', 'b']);
    expect(merged[1]).toMatchObject({ count: 9, nanCount: 1, zeroCount: 2, min: -100.5, max: 100, absMax: 100.5, range: 128 });
    const provenance = {
      tool: 'trt-calib', toolVersion: '0', modelFile: 'm.onnx', modelSha256: '0'.repeat(64), shapes: {}, preprocess: {},
      imageCount: 3, skippedCount: 0, imageListSha256: '', histogramBins: 64, createdBy: 'test',
    };
    const bytes = (tensors: typeof merged) => encodeStatistics({ format: 'trt-calib-stats', formatVersion: 1, provenance, tensors });
    expect(bytes(merged).equals(bytes(whole))).toBe(true);
    // the inputs are left as they were
    expect(shards[0]![0]!.count).toBe(4);
  });
});
