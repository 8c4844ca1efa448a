import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareTask } from '../../src/compare/task/index.js';
import type { ImageGeometry } from '../../src/compare/task/types.js';
import type { Tensor } from '../../src/tensor.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-task-prepare-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const geometry = (file: string): ImageGeometry => ({ file, width: 100, height: 32, inputWidth: 100, inputHeight: 32, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 });

/** [N, T, 3] one-hot rows (softmax-like) from class ids per step; class 0 is the CTC blank. */
function sequence(ids: number[][]): Tensor {
  const T = ids[0]!.length;
  const data = new Float32Array(ids.length * T * 3);
  ids.forEach((row, n) => row.forEach((c, t) => (data[(n * T + t) * 3 + c] = 1)));
  return { dtype: 'float32', dims: [ids.length, T, 3], data };
}

describe('prepareTask for OCR: keys, text labels, and the evaluator it makes', () => {
  it('auto sees a CTC sequence from a softmax sample; labels for images not in --data are counted and noted', async () => {
    const data = path.join(tmp, 'lines');
    const files = [path.join(data, 'a.png'), path.join(data, 'b.png')];
    const keys = path.join(tmp, 'keys.txt');
    await writeFile(keys, 'a\nb\n');
    const labels = path.join(tmp, 'rec_gt.txt');
    await writeFile(labels, 'a.png\tab\nb.png\tba\nmissing.png\tzz\n');
    // FP32 reads a: [a a - b] -> "ab", b: [b - a a] -> "ba".
    const fp32 = { softmax: sequence([[1, 1, 0, 2], [2, 0, 1, 1]]) };
    const task = await prepareTask({ flags: { keys, labels }, outputs: [{ name: 'softmax', dims: ['N', 4, 3] }], sample: fp32, datasetFiles: files, dataRoot: data });
    expect(task.kind).toBe('ocr');
    expect(task.selection.reason).toMatch(/CTC/);
    expect(task.labels).toEqual({ source: labels, labelled: 2, unlabelled: 0, unmatched: 1 });
    expect(task.notes.join('\n')).toMatch(/1 line\(s\) of .*rec_gt\.txt name images that are not in --data/);

    const ev = task.create();
    const g = files.map(geometry);
    ev.addReference(fp32, g);
    ev.addVariant('fp32', fp32, g);
    // INT8 reads a: [a - - b] -> "ab" (same), b: [b b - -] -> "b" (one deletion of FP32's 2 characters).
    ev.addVariant('int8', { softmax: sequence([[1, 0, 0, 2], [2, 2, 0, 0]]) }, g);
    const m = ev.finish();
    expect(m.get('fp32')).toMatchObject({ kind: 'ocr', metric: '1 - CER', value: 1, valueLabels: 1 });
    // CER against FP32: 1 edit over 4 reference characters; exact matches 1 of 2.
    expect(m.get('int8')!.value).toBeCloseTo(1 - 1 / 4, 12);
    expect(m.get('int8')!.ocr).toMatchObject({ exactMatch: 0.5, cer: 0.25 });
  });
});
