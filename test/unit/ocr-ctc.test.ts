/**
 * OCR metrics worked out by hand: greedy CTC decoding, edit distance, CER summed over images, keys files (with
 * PaddleOCR's trailing space), text labels files and their errors.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { alignmentCost, alignTexts, createOcrEvaluator, ctcGreedyDecode, editDistance, parseKeys, readKeys, readTextLabels, recognizeOcr, resolveKeys } from '../../src/compare/task/ocr/index.js';
import type { ImageGeometry } from '../../src/compare/task/types.js';
import type { Tensor } from '../../src/tensor.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-ocr-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** [N, T, C] with probability 0.9 on each step's class (0.1 / (C - 1) on the others). */
function sequences(paths: number[][], classes: number): Tensor {
  const steps = paths[0]!.length;
  const data = new Float32Array(paths.length * steps * classes).fill(0.1 / (classes - 1));
  paths.forEach((p, n) => p.forEach((k, t) => (data[(n * steps + t) * classes + k] = 0.9)));
  return { dtype: 'float32', dims: [paths.length, steps, classes], data };
}

function geometry(file: string): ImageGeometry {
  return { file, width: 100, height: 32, inputWidth: 100, inputHeight: 32, scaleX: 1, scaleY: 1, offsetX: 0, offsetY: 0 };
}

describe('ctcGreedyDecode', () => {
  it('merges repeats, then drops blanks: [a a - a b b - -] is "aab"', () => {
    // classes: 0 blank, 1 a, 2 b
    const t = sequences([[1, 1, 0, 1, 2, 2, 0, 0]], 3);
    expect(ctcGreedyDecode(t.data as Float32Array, 8, 3, 0)).toEqual([1, 1, 2]);
    // No blank between repeats: one character; leading blanks and a blank class other than 0.
    expect(ctcGreedyDecode(sequences([[0, 0, 2, 2, 2, 1]], 3).data as Float32Array, 6, 3, 0)).toEqual([2, 1]);
    expect(ctcGreedyDecode(sequences([[2, 0, 0, 2, 1]], 3).data as Float32Array, 5, 3, 2)).toEqual([0, 1]);
  });

  it('takes the first class on a tie, as argmax does', () => {
    // step 0: 0.4 / 0.4 / 0.2 -> class 0 (blank); step 1: 0.1 / 0.45 / 0.45 -> class 1
    expect(ctcGreedyDecode(Float32Array.of(0.4, 0.4, 0.2, 0.1, 0.45, 0.45), 2, 3, 0)).toEqual([1]);
  });
});

describe('editDistance', () => {
  it('is Levenshtein distance', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3); // k->s, e->i, +g
    expect(editDistance('flaw', 'lawn')).toBe(2); // -f, +n
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('abc', '')).toBe(3);
    expect(editDistance('same', 'same')).toBe(0);
    expect(editDistance([1, 2, 3], [1, 3])).toBe(1);
    expect(editDistance([5, 6], [6, 5])).toBe(2);
  });

  it('counts code points, not UTF-16 units', () => {
    expect(editDistance('a😀b', 'ab')).toBe(1);
    expect(editDistance('中文字', '中字')).toBe(1);
  });
});

describe('alignTexts (the marks of a text pair)', () => {
  it('gives one optimal alignment in runs: kitten -> sitting', () => {
    expect(alignTexts('kitten', 'sitting')).toEqual([
      { kind: 'replace', reference: 'k', variant: 's' },
      { kind: 'equal', reference: 'itt', variant: 'itt' },
      { kind: 'replace', reference: 'e', variant: 'i' },
      { kind: 'equal', reference: 'n', variant: 'n' },
      { kind: 'insert', reference: '', variant: 'g' },
    ]);
    expect(alignTexts('', '')).toEqual([]);
    expect(alignTexts('ab', '')).toEqual([{ kind: 'delete', reference: 'ab', variant: '' }]);
  });

  it('costs the edit distance and rebuilds both texts, on many pairs', () => {
    const words = ['', 'a', 'ab', 'ba', 'abc', 'flaw', 'lawn', '中文字', 'a😀b', 'banana', 'ananas', 'INT8', 'lNT8'];
    for (const x of words) {
      for (const y of words) {
        const edits = alignTexts(x, y);
        expect(alignmentCost(edits), `${x} -> ${y}`).toBe(editDistance(x, y));
        expect(edits.map((e) => e.reference).join('')).toBe(x);
        expect(edits.map((e) => e.variant).join('')).toBe(y);
      }
    }
  });
});

describe('the OCR evaluator', () => {
  const keys = ['a', 'b', 'c', 'd'];
  // 5 classes: blank, a, b, c, d. FP32: "abc" and "ab"; int8: "abd" (1 substitution) and "" (2 deletions).
  const fp32 = sequences([[1, 2, 3, 0], [1, 0, 2, 0]], 5);
  const int8 = sequences([[1, 2, 4, 4], [0, 0, 0, 0]], 5);
  const images = [geometry('/d/x.png'), geometry('/d/y.png')];

  it('sums edit distances and reference lengths over images: CER (1 + 2) / (3 + 2) = 3/5', () => {
    // (The mean of per-image CERs would be (1/3 + 2/2) / 2 = 2/3.)
    const ev = createOcrEvaluator({ output: 'rec', keys, labels: new Map([['/d/x.png', 'abc'], ['/d/y.png', 'abb']]) });
    ev.addReference({ rec: fp32 }, images);
    ev.addVariant('fp32', { rec: fp32 }, images);
    ev.addVariant('int8', { rec: int8 }, images);
    const r = ev.finish();
    expect(r.get('fp32')).toMatchObject({ kind: 'ocr', metric: '1 - CER', value: 1 });
    // FP32 against the labels: "abc" = "abc"; "ab" vs "abb" is 1 deletion: CER 1 / (3 + 3) = 1/6.
    expect(r.get('fp32')!.valueLabels).toBeCloseTo(1 - 1 / 6, 15);
    expect(r.get('fp32')!.ocr).toMatchObject({ exactMatch: 1, cer: 0, exactMatchLabels: 0.5, labelledImages: 2, unlabelledImages: 0 });
    const v = r.get('int8')!;
    expect(v.value).toBeCloseTo(1 - 3 / 5, 15);
    expect(v.ocr!.cer).toBeCloseTo(3 / 5, 15);
    expect(v.ocr!.exactMatch).toBe(0);
    // int8 against the labels: "abd" vs "abc" 1, "" vs "abb" 3: 4 / 6.
    expect(v.ocr!.cerLabels).toBeCloseTo(4 / 6, 15);
    expect(v.valueLabels).toBeCloseTo(1 - 4 / 6, 15);
    // Worst first: y (distance 2), then x (1).
    expect(v.ocr!.samples).toEqual([
      { file: '/d/y.png', reference: 'ab', variant: '', label: 'abb', labelDistance: 3, distance: 2 },
      { file: '/d/x.png', reference: 'abc', variant: 'abd', label: 'abc', labelDistance: 1, distance: 1 },
    ]);
    // FP32's own samples: the pair that differs from its label only.
    expect(r.get('fp32')!.ocr!.samples.map((s) => s.file)).toEqual(['/d/y.png']);
  });

  it('breaks ties between samples by file name, whatever the order of images', () => {
    const files = ['/d/b.png', '/d/a.png'];
    const ev = createOcrEvaluator({ output: 'rec', keys });
    const ref = sequences([[1, 0], [1, 0]], 5);
    ev.addReference({ rec: ref }, files.map(geometry));
    ev.addVariant('int8', { rec: sequences([[2, 0], [3, 0]], 5) }, files.map(geometry));
    expect(ev.finish().get('int8')!.ocr!.samples.map((s) => [s.file, s.variant])).toEqual([['/d/a.png', 'c'], ['/d/b.png', 'b']]);
  });

  it('reads time-major [T, N, C] outputs as their [N, T, C] transpose', () => {
    const transpose = (t: Tensor): Tensor => {
      const [n, steps, c] = t.dims as [number, number, number];
      const src = t.data as Float32Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < n; i++) for (let s = 0; s < steps; s++) out.set(src.subarray((i * steps + s) * c, (i * steps + s + 1) * c), (s * n + i) * c);
      return { dtype: 'float32', dims: [steps, n, c], data: out };
    };
    const ev = createOcrEvaluator({ output: 'rec', keys, timeMajor: true });
    ev.addReference({ rec: transpose(fp32) }, images);
    ev.addVariant('int8', { rec: transpose(int8) }, images);
    const v = ev.finish().get('int8')!;
    expect(v.ocr!.cer).toBeCloseTo(3 / 5, 15);
    expect(v.ocr!.samples.map((s) => [s.reference, s.variant])).toEqual([['ab', ''], ['abc', 'abd']]);
    expect(() => createOcrEvaluator({ output: 'rec', timeMajor: true }).addReference({ rec: fp32 }, images)).toThrow(/expected \[T, N, C\]/);
  });

  it('without keys compares class ids, and texts are the ids joined', () => {
    const ev = createOcrEvaluator({ output: 'rec' });
    ev.addReference({ rec: fp32 }, images);
    ev.addVariant('int8', { rec: int8 }, images);
    const v = ev.finish().get('int8')!;
    expect(v.ocr!.cer).toBeCloseTo(3 / 5, 15);
    expect(v.ocr!.samples[1]).toMatchObject({ reference: '1 2 3', variant: '1 2 4' });
  });

  it('refuses labels without keys, keys of another size, and outputs that are no sequence', () => {
    expect(() => createOcrEvaluator({ output: 'rec', labels: new Map() })).toThrow(/--keys/);
    const ev = createOcrEvaluator({ output: 'rec', keys: ['a', 'b'], keysFile: 'k.txt' });
    expect(() => ev.addReference({ rec: fp32 }, images)).toThrow(/k.txt lists 2 characters, but the output 'rec' has 5 classes/);
    const ev2 = createOcrEvaluator({ output: 'rec' });
    expect(() => ev2.addReference({ rec: { dtype: 'float32', dims: [2, 5], data: new Float32Array(10) } }, images)).toThrow(UserError);
  });
});

describe('keys files', () => {
  it('keeps a trailing space character, drops the last newline and CRs', async () => {
    const file = path.join(tmp, 'keys.txt');
    await writeFile(file, '\ufeffa\r\nb\r\n中\n \n');
    expect(await readKeys(file)).toEqual(['a', 'b', '中', ' ']);
    expect(parseKeys('x\ny', 'k')).toEqual(['x', 'y']);
  });

  it('names the file and line of an empty line, and a missing file', async () => {
    expect(() => parseKeys('a\n\nb\n', 'dict.txt')).toThrow(/dict.txt:2: empty line/);
    await expect(readKeys(path.join(tmp, 'nope.txt'))).rejects.toThrow(/nope.txt does not exist/);
  });

  it('maps classes to characters: blank first, and PaddleOCR\'s appended space when C = keys + 2', () => {
    expect(resolveKeys(['a', 'b'], 3, 0, { output: 'o' })).toEqual(['', 'a', 'b']);
    expect(resolveKeys(['a', 'b'], 4, 0, { output: 'o' })).toEqual(['', 'a', 'b', ' ']);
    expect(resolveKeys(['a', 'b'], 3, 2, { output: 'o' })).toEqual(['a', 'b', '']);
    expect(() => resolveKeys(['a', 'b', ' '], 5, 0, { output: 'o' })).toThrow(/3 characters, but the output 'o' has 5 classes/);
  });
});

describe('text labels files', () => {
  it('reads path<TAB>text lines relative to the data folder, keeps spaces, lists lines for images not in the data', async () => {
    const file = path.join(tmp, 'rec_gt.txt');
    await writeFile(file, 'word_1.png\tHello World\r\nsub/word_2.png\t 42 \n\nother.png\tx\nword_1.png\tHello World\n');
    const data = path.join(tmp, 'data');
    const r = await readTextLabels(file, [path.join(data, 'word_1.png'), path.join(data, 'sub', 'word_2.png'), path.join(data, 'word_3.png')], data);
    expect([...r.labels]).toEqual([
      [path.join(data, 'word_1.png'), 'Hello World'],
      [path.join(data, 'sub', 'word_2.png'), ' 42 '],
    ]);
    expect(r.unmatched).toEqual(['other.png']);
  });

  it('a line without a tab is a UserError naming file and line', async () => {
    const file = path.join(tmp, 'bad.txt');
    await writeFile(file, 'a.png\tok\nb.png\tfine\nc.png  no tab here\n');
    const err = await readTextLabels(file, [], tmp).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(`${file}:3: expected "path<TAB>text"`);
    await writeFile(file, 'a.png\tone\na.png\ttwo\n');
    await expect(readTextLabels(file, [], tmp)).rejects.toThrow(/bad.txt:2: a.png is labelled again with another text \(first on line 1\)/);
  });
});

describe('recognizeOcr', () => {
  it('takes one [N, T, C] output with a softmax over C or a text-line input, and says why not otherwise', () => {
    const out = [{ name: 'softmax_11.tmp_0', dims: ['N', 40, 97] as (number | string)[] }];
    const probs = sequences([[1, 0, 2]], 97);
    expect(recognizeOcr(out, { sample: { 'softmax_11.tmp_0': probs } }).options).toEqual({ output: 'softmax_11.tmp_0', blank: 0 });
    expect(recognizeOcr(out, { input: { dims: ['N', 3, 48, 320] } }).reason).toMatch(/text line/);
    // YOLOv8's [1, 84, 8400]: same rank; its rows are boxes and scores, not distributions, and the input is square.
    const yolo = recognizeOcr([{ name: 'output0', dims: [1, 84, 8400] }], { input: { dims: [1, 3, 640, 640] }, sample: { output0: { dtype: 'float32', dims: [1, 2, 3], data: Float32Array.of(300, 2, 0.1, 5, 6, 0.2) } } });
    expect(yolo.options).toBeUndefined();
    expect(yolo.reason).toMatch(/could be a CTC recogniser/);
    expect(recognizeOcr([{ name: 'logits', dims: ['N', 1000] }]).reason).toMatch(/no output/);
  });
});
