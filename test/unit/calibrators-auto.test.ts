import { describe, expect, it } from 'vitest';
import { candidatesOf, chooseAmaxes } from '../../src/calibrators/auto.js';
import type { Batch, Dataset } from '../../src/datasets/types.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, makeTensor, tensorToProto } from '../../src/onnx/model.js';
import { roundHalfEven } from '../../src/onnx/qdq.js';

function oneImage(values: number[], dims: number[]): Dataset {
  return {
    inputName: 'x',
    preprocess: {} as Dataset['preprocess'],
    files: ['a.png'],
    size: 1,
    batchSize: 1,
    imageDims: dims,
    async *batches(): AsyncIterable<Batch> {
      yield { index: 0, data: Float32Array.from(values), dims: [1, ...dims], files: ['a.png'], partial: false };
    },
  };
}

/** Sum of squared fake-quantization errors of `values` at `amax` (scale amax/127, clamp to [-127, 127]). */
function sse(values: number[], amax: number): number {
  const s = Math.fround(amax / 127);
  return values.reduce((acc, v) => {
    const q = Math.max(-127, Math.min(127, roundHalfEven(v / s))) * s;
    return acc + (q - v) ** 2;
  }, 0);
}

describe('--algo auto', () => {
  it('candidates: the distinct amaxes in algorithm order, then the geometric midpoints of sorted neighbours', () => {
    const c = candidatesOf(new Map([['entropy2', 2], ['entropy', 2], ['minmax', 8], ['percentile', 4], ['mse', 0]]), ['entropy2', 'entropy', 'minmax', 'percentile', 'mse']);
    expect(c).toEqual([
      { amax: 2, source: 'entropy2' },
      { amax: 8, source: 'minmax' },
      { amax: 4, source: 'percentile' },
      { amax: Math.fround(Math.sqrt(8)), source: 'entropy2~percentile' },
      { amax: Math.fround(Math.sqrt(32)), source: 'percentile~minmax' },
    ]);
  });

  it('chooses by the error of the consuming layer, not the tensor\'s own error', async () => {
    // x: channel 0 = [0.1, 0.2, 0.3, 0.4], channel 1 = [0, 0, 0, 10]; the Conv reads channel 0 only (weights [1, 0]).
    // Amax 0.4 clips channel 1's outlier (own error 9.6^2) but is fine for what the Conv computes; amax 10 keeps the
    // outlier but rounds channel 0 coarsely. The tensor's own error prefers 10, the Conv's output error 0.4.
    const model = makeModel({
      nodes: [makeNode('Conv', ['x', 'w'], ['y'], { name: 'conv' })],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 2, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 1, 2, 2])],
      initializers: [tensorToProto('w', makeTensor('float32', [1, 2, 1, 1], [1, 0]))],
    });
    const ch0 = [0.1, 0.2, 0.3, 0.4];
    const ch1 = [0, 0, 0, 10];
    const candidates = new Map([
      ['x', [{ amax: 0.4, source: 'percentile' }, { amax: 10, source: 'minmax' }]],
      ['y', [{ amax: 0.4, source: 'percentile' }, { amax: 10, source: 'minmax' }]],
    ]);
    const choices = await chooseAmaxes({ model, file: 'conv.onnx', candidates, dataset: oneImage([...ch0, ...ch1], [2, 2, 2]) });
    const x = choices.get('x')!;
    expect(x.source).toBe('percentile');
    expect(x.errors[0]).toBeCloseTo(sse(ch0, 0.4), 9);
    expect(x.errors[1]).toBeCloseTo(sse(ch0, 10), 6);
    expect(sse([...ch0, ...ch1], 0.4)).toBeGreaterThan(sse([...ch0, ...ch1], 10)); // its own error would pick 10
    // y feeds nothing: its own error decides (y = channel 0 exactly).
    const y = choices.get('y')!;
    expect(y.source).toBe('percentile');
    expect(y.errors[1]).toBeCloseTo(sse(ch0, 10), 6);
  });
});
