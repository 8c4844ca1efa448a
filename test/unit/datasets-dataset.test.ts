import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDataset, summarizeSkipped } from '../../src/datasets/dataset.js';
import { preprocessImage } from '../../src/datasets/preprocess.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import type { Batch, Dataset, SkippedFile } from '../../src/datasets/types.js';
import { UserError } from '../../src/errors.js';

const IMAGES = path.resolve(__dirname, '../fixtures/images');
const BAD = path.resolve(__dirname, '../fixtures/images-bad');
const config = resolvePreprocess({ preset: 'imagenet', size: 64, shorterSide: 72 });
const PER_IMAGE = 3 * 64 * 64;

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-dataset-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function collect(ds: Dataset, onSkip?: (s: SkippedFile) => void): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of ds.batches({ onSkip })) out.push(b);
  return out;
}

/** Per-image tensors, keyed by file, from a list of batches. */
function perImage(batches: Batch[]): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  for (const b of batches) b.files.forEach((f, i) => m.set(f, b.data.slice(i * PER_IMAGE, (i + 1) * PER_IMAGE)));
  return m;
}

describe('createDataset on the test photos', () => {
  it("order 'any' hands over every image once, with the same tensors as file order (only the order may differ)", async () => {
    const ds = await createDataset({ data: IMAGES, preprocess: config, batchSize: 3, inputName: 'input' });
    const inOrder = perImage(await collect(ds));
    const any: Batch[] = [];
    for await (const b of ds.batches({ order: 'any' })) any.push(b);
    expect(any.map((b) => b.files.length)).toEqual([3, 3, 2]);
    const anyImages = perImage(any);
    expect([...anyImages.keys()].sort()).toEqual([...inOrder.keys()].sort());
    for (const [file, data] of inOrder) expect(Buffer.from(anyImages.get(file)!.buffer).equals(Buffer.from(data.buffer)), file).toBe(true);
  });

  it('knows its files, size and shapes; batches hold the files in order, the last one partial', async () => {
    const ds = await createDataset({ data: IMAGES, preprocess: config, batchSize: 3, inputName: 'input' });
    expect(ds.size).toBe(8);
    expect(ds.imageDims).toEqual([3, 64, 64]);
    expect(ds.files.map((f) => path.basename(f))[0]).toBe('opencv_doc__aero1.jpg');
    const batches = await collect(ds);
    expect(batches.map((b) => [b.index, b.dims, b.partial, b.files.length])).toEqual([
      [0, [3, 3, 64, 64], false, 3],
      [1, [3, 3, 64, 64], false, 3],
      [2, [2, 3, 64, 64], true, 2],
    ]);
    expect(batches.flatMap((b) => b.files)).toEqual(ds.files);
    expect(batches[2]!.data.length).toBe(2 * PER_IMAGE);
    // Each image's slot holds exactly what preprocessImage gives for that file.
    const one = await preprocessImage(ds.files[4]!, config);
    expect(batches[1]!.data.subarray(PER_IMAGE, 2 * PER_IMAGE)).toEqual(one);
  });

  it('gives identical data on a second pass, and the same per-image data for batch 1 vs 3 and any concurrency', async () => {
    const ds3 = await createDataset({ data: IMAGES, preprocess: config, batchSize: 3, concurrency: 4 });
    const pass1 = await collect(ds3);
    const pass2 = await collect(ds3);
    expect(pass2.map((b) => b.files)).toEqual(pass1.map((b) => b.files));
    pass1.forEach((b, i) => expect(Buffer.from(pass2[i]!.data.buffer).equals(Buffer.from(b.data.buffer))).toBe(true));

    const ds1 = await createDataset({ data: IMAGES, preprocess: config, batchSize: 1, concurrency: 1, prefetchBatches: 1 });
    const single = perImage(await collect(ds1));
    const triple = perImage(pass1);
    expect([...single.keys()]).toEqual([...triple.keys()]);
    for (const [file, data] of single) expect(Buffer.from(triple.get(file)!.buffer).equals(Buffer.from(data.buffer))).toBe(true);
  });

  it('takes a seeded subset', async () => {
    const a = await createDataset({ data: IMAGES, preprocess: config, maxImages: 3, seed: 1 });
    const b = await createDataset({ files: [...(await createDataset({ data: IMAGES, preprocess: config })).files].reverse(), preprocess: config, maxImages: 3, seed: 1 });
    expect(a.files).toHaveLength(3);
    expect(b.files).toEqual(a.files);
  });
});

describe('bad files', () => {
  it('reports the truncated JPEG, the text file named .png and the empty file by name, and uses the rest', async () => {
    const ds = await createDataset({ data: BAD, preprocess: config, batchSize: 2 });
    expect(ds.size).toBe(6);
    const skipped: SkippedFile[] = [];
    const batches = await collect(ds, (s) => skipped.push(s));
    expect(skipped.map((s) => [path.basename(s.file), s.reason])).toEqual([
      ['corrupt-truncated.jpg', expect.stringMatching(/^corrupt or truncated image/)],
      ['empty.jpg', 'empty file (0 bytes)'],
      ['not-an-image.png', 'not an image, or a format this build of sharp cannot decode'],
    ]);
    // Batches stay full (filled from the next files) except the last.
    expect(batches.map((b) => b.files.map((f) => path.basename(f)))).toEqual([
      ['opencv_doc__hfs_002.jpg', 'opencv_doc__home.jpg'],
      ['python3_skimage__astronaut_rgba.png'],
    ]);
    expect(batches.map((b) => b.partial)).toEqual([false, true]);
    const summary = summarizeSkipped(skipped, 3);
    expect(summary).toContain('3 of 6 image(s) skipped:');
    expect(summary).toContain('empty.jpg: empty file (0 bytes)');
  });

  it('with strict, the first bad file ends the pass with a UserError naming it', async () => {
    const ds = await createDataset({ data: BAD, preprocess: config, batchSize: 2, strict: true });
    const err = await collect(ds).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/Cannot use the image ".*corrupt-truncated\.jpg": corrupt or truncated image/);
    expect((err as Error).stack).toBeDefined(); // present, but the CLI prints only the message for UserErrors
  });

  it('a listed file that does not exist is skipped with "file not found"', async () => {
    const list = path.join(tmp, 'list.txt');
    await writeFile(list, `${path.join(IMAGES, 'opencv_doc__home.jpg')}\nmissing.jpg\n`);
    const skipped: SkippedFile[] = [];
    const batches = await collect(await createDataset({ data: list, preprocess: config }), (s) => skipped.push(s));
    expect(skipped).toEqual([{ file: path.join(tmp, 'missing.jpg'), reason: 'file not found' }]);
    expect(batches).toHaveLength(1);
  });

  it('when every file fails: a UserError after reporting each', async () => {
    const dir = path.join(tmp, 'all-bad');
    await rm(dir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(dir));
    for (const f of ['corrupt-truncated.jpg', 'empty.jpg', 'not-an-image.png']) await copyFile(path.join(BAD, f), path.join(dir, f));
    const skipped: SkippedFile[] = [];
    await expect(collect(await createDataset({ data: dir, preprocess: config }), (s) => skipped.push(s))).rejects.toThrow(
      /None of the 3 selected image\(s\) could be decoded/,
    );
    expect(skipped).toHaveLength(3);
  });
});
