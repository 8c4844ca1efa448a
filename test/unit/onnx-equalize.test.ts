import { describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { equalizeModel } from '../../src/onnx/equalize.js';
import { makeConstantNode, makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, graphOf, makeTensor, saveOnnxModel, tensorFromProto, tensorToProto, type OnnxModel } from '../../src/onnx/model.js';

const f32 = (dims: number[], values: number[]) => makeTensor('float32', dims, values);

async function run(model: OnnxModel, x: Float32Array, dims: number[]): Promise<Float32Array> {
  const session = await onnxruntimeBackend.open({ path: 'test.onnx', bytes: saveOnnxModel(model) }, { threads: 1 });
  try {
    const out = await session.run({ x: { dtype: 'float32', dims, data: x } }, ['y']);
    return out.y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function weight(model: OnnxModel, name: string): Float32Array {
  const g = graphOf(model);
  const init = g.initializer.find((t) => t.name === name);
  if (init) return tensorFromProto(init).data as Float32Array;
  const c = g.node.find((n) => n.opType === 'Constant' && n.output[0] === name)!;
  return tensorFromProto(c.attribute.find((a) => a.name === 'value')!.t!).data as Float32Array;
}

/** Deterministic values in [-1, 1) (a small LCG), so the test needs no data files. */
function values(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 30 - 1;
  });
}

describe('cross-layer equalization', () => {
  it('one 1x1 pair through Relu, by hand: s_i = sqrt(r1_i r2_i) / r2_i, ranges matched, outputs unchanged', async () => {
    // A: 1 -> 2 channels, W_A = [4, -0.5], b_A = [2, 1]; B: 2 -> 1, W_B = [0.25, 8], b_B = [0.1].
    // r1 = [4, 0.5], r2 = [0.25, 8]: s = [sqrt(1)/0.25, sqrt(4)/8] = [4, 0.25].
    // W_A' = [1, -2], b_A' = [0.5, 4], W_B' = [1, 2]: both ranges become [1, 2].
    const model = makeModel({
      nodes: [makeNode('Conv', ['x', 'wa', 'ba'], ['a'], { name: 'A' }), makeNode('Relu', ['a'], ['r'], { name: 'relu' }), makeNode('Conv', ['r', 'wb', 'bb'], ['y'], { name: 'B' })],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 1, 2, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 1, 2, 2])],
      initializers: [tensorToProto('wa', f32([2, 1, 1, 1], [4, -0.5])), tensorToProto('ba', f32([2], [2, 1])), tensorToProto('wb', f32([1, 2, 1, 1], [0.25, 8])), tensorToProto('bb', f32([1], [0.1]))],
    });
    const r = equalizeModel(model);
    expect(r.pairs.map((p) => [p.first, p.second, p.through])).toEqual([['A', 'B', ['Relu']]]);
    expect(Array.from(weight(r.model, 'wa'))).toEqual([1, -2]);
    expect(Array.from(weight(r.model, 'ba'))).toEqual([0.5, 4]);
    expect(Array.from(weight(r.model, 'wb'))).toEqual([1, 2]);
    expect(Array.from(weight(r.model, 'bb'))).toEqual([Math.fround(0.1)]);
    expect(r.pairs[0]!.rangeRatioBefore).toBe(16);
    expect(r.pairs[0]!.rangeRatioAfter).toBe(1);
    const x = Float32Array.from([1, -3, 0.5, 2]);
    const before = await run(model, x, [1, 1, 2, 2]);
    const after = await run(r.model, x, [1, 1, 2, 2]);
    for (let i = 0; i < 4; i++) expect(after[i]).toBeCloseTo(before[i]!, 5);
  });

  it('a chain conv -> Relu -> depthwise (zero Pad) -> Relu -> conv, weights as Constant nodes: iterated until every pair matches', async () => {
    const C = 4;
    const nodes = [
      makeConstantNode('w1', f32([C, 3, 3, 3], values(C * 27, 1).map((v, i) => v * (i < 27 ? 10 : i < 54 ? 0.1 : 1)))),
      makeConstantNode('b1', f32([C], values(C, 2))),
      makeConstantNode('w2', f32([C, 1, 3, 3], values(C * 9, 3).map((v, i) => v * (i >= 27 ? 20 : 1)))),
      makeConstantNode('b2', f32([C], values(C, 4))),
      makeConstantNode('w3', f32([2, C, 1, 1], values(2 * C, 5))),
      makeNode('Conv', ['x', 'w1', 'b1'], ['c1'], { name: 'conv1', attributes: { pads: { ints: [1, 1, 1, 1] } } }),
      makeNode('Relu', ['c1'], ['r1'], { name: 'relu1' }),
      makeNode('Pad', ['r1', 'pads'], ['p1'], { name: 'pad' }),
      makeNode('Conv', ['p1', 'w2', 'b2'], ['c2'], { name: 'dw', attributes: { group: { int: C } } }),
      makeNode('Relu', ['c2'], ['r2'], { name: 'relu2' }),
      makeNode('Conv', ['r2', 'w3'], ['y'], { name: 'conv3' }),
    ];
    const model = makeModel({
      nodes,
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 3, 5, 5])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 2, 5, 5])],
      initializers: [tensorToProto('pads', makeTensor('int64', [8], [0n, 0n, 1n, 1n, 0n, 0n, 1n, 1n]))],
    });
    const r = equalizeModel(model);
    expect(r.pairs.map((p) => `${p.first}->${p.second} ${p.through.join('+')}`)).toEqual(['conv1->dw Relu+Pad', 'dw->conv3 Relu']);
    expect(r.iterations).toBeGreaterThan(1);
    expect(r.pairs[0]!.rangeRatioBefore).toBeGreaterThan(10);
    for (const p of r.pairs) expect(p.rangeRatioAfter).toBeLessThan(1 + 1e-4);
    // Ranges matched, recomputed from the written float32 weights: r1 of conv1's channel c = range of dw's channel c.
    const w1 = weight(r.model, 'w1');
    const w2 = weight(r.model, 'w2');
    for (let c = 0; c < C; c++) {
      const r1 = Math.max(...Array.from(w1.subarray(c * 27, c * 27 + 27), Math.abs));
      const r2 = Math.max(...Array.from(w2.subarray(c * 9, c * 9 + 9), Math.abs));
      expect(r1 / r2).toBeCloseTo(1, 3);
    }
    // conv3 had no bias and dw's scaling needs none: none is added.
    expect(graphOf(r.model).node.find((n) => n.name === 'conv3')!.input.length).toBe(2);
    const x = Float32Array.from(values(75, 9));
    const before = await run(model, x, [1, 3, 5, 5]);
    const after = await run(r.model, x, [1, 3, 5, 5]);
    for (let i = 0; i < before.length; i++) expect(after[i]).toBeCloseTo(before[i]!, 4);
  });

  it('Clip 0..6: skipped by default; relu changes the function where A exceeded 6; min keeps it exactly', async () => {
    // A: 1 -> 2, W_A = [4, 0.5]; B: 2 -> 1, W_B = [1, 1]. s = [sqrt(4)/1, sqrt(0.5)/1] = [2, 0.7071].
    const model = makeModel({
      nodes: [
        makeNode('Conv', ['x', 'wa'], ['a'], { name: 'A' }),
        makeNode('Clip', ['a', 'lo', 'hi'], ['r'], { name: 'relu6' }),
        makeNode('Conv', ['r', 'wb'], ['y'], { name: 'B' }),
      ],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 1, 1, 2])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 1, 1, 2])],
      initializers: [tensorToProto('wa', f32([2, 1, 1, 1], [4, 0.5])), tensorToProto('wb', f32([1, 2, 1, 1], [1, 1])), tensorToProto('lo', f32([], [0])), tensorToProto('hi', f32([], [6]))],
    });
    const skip = equalizeModel(model);
    expect(skip.pairs).toEqual([]);
    expect(skip.skipped).toEqual([{ first: 'A', second: 'B', reason: expect.stringContaining('Clip(0, 6) is not scale-equivariant') }]);
    expect(saveOnnxModel(skip.model)).toEqual(saveOnnxModel(model));

    // x = 2: A = [8, 1] -> ReLU6 [6, 1] -> y = 7. x = 1: A = [4, 0.5] -> y = 4.5 (below the bound).
    const x = Float32Array.from([2, 1]);
    expect(Array.from(await run(model, x, [1, 1, 1, 2]))).toEqual([7, 4.5]);
    const relu = equalizeModel(model, { clip: 'relu' });
    expect(relu.pairs[0]!.clipChanged).toBe('relu');
    expect(graphOf(relu.model).node.map((n) => n.opType)).toEqual(['Conv', 'Relu', 'Conv']);
    // After: channel 0 is 8/2 = 4 (not clipped: it would have to clip at 3), times 2: 8 instead of 6.
    const yr = await run(relu.model, x, [1, 1, 1, 2]);
    expect(yr[0]).toBeCloseTo(9, 5);
    expect(yr[1]).toBeCloseTo(4.5, 5);
    const min = equalizeModel(model, { clip: 'min' });
    expect(graphOf(min.model).node.map((n) => n.opType)).toEqual(['Conv', 'Relu', 'Min', 'Conv']);
    const bound = weight(min.model, 'relu6_bound');
    expect(bound[0]).toBeCloseTo(3, 6);
    expect(bound[1]).toBeCloseTo(6 / Math.SQRT1_2, 5);
    const ym = await run(min.model, x, [1, 1, 1, 2]);
    expect(ym[0]).toBeCloseTo(7, 5);
    expect(ym[1]).toBeCloseTo(4.5, 5);
  });

  it('a (nearly) dead channel keeps s = 1 instead of having its bias amplified', () => {
    // Channel 0 of A: weight 1e-7 and bias 0.5, a constant 0.5 after Relu; s_0 = sqrt(1e-7 * 1) / 1 would divide it
    // by 3e-4 (0.5 -> 1581). Channel 1: r1 = 4, r2 = 1 -> s_1 = 2.
    const model = makeModel({
      nodes: [makeNode('Conv', ['x', 'wa', 'ba'], ['a'], { name: 'A' }), makeNode('Relu', ['a'], ['r'], { name: 'relu' }), makeNode('Conv', ['r', 'wb'], ['y'], { name: 'B' })],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 1, 1, 1])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 1, 1, 1])],
      initializers: [tensorToProto('wa', f32([2, 1, 1, 1], [1e-7, 4])), tensorToProto('ba', f32([2], [0.5, 0])), tensorToProto('wb', f32([1, 2, 1, 1], [1, 1]))],
    });
    const r = equalizeModel(model);
    expect(Array.from(weight(r.model, 'wa'))).toEqual([Math.fround(1e-7), 2]);
    expect(Array.from(weight(r.model, 'ba'))).toEqual([0.5, 0]);
    expect(Array.from(weight(r.model, 'wb'))).toEqual([1, 2]);
    // With the guard off, the dead channel's constant is scaled up as the formula says.
    const off = equalizeModel(model, { minRelativeRange: 0 });
    expect(weight(off.model, 'ba')[0]).toBeGreaterThan(1000);
  });

  it('leaves a pair alone when the first layer\'s output has another reader', () => {
    const model = makeModel({
      nodes: [makeNode('Conv', ['x', 'wa'], ['a'], { name: 'A' }), makeNode('Conv', ['a', 'wb'], ['b'], { name: 'B' }), makeNode('Add', ['a', 'b'], ['y'], { name: 'add' })],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 1, 1, 1])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 1, 1, 1])],
      initializers: [tensorToProto('wa', f32([1, 1, 1, 1], [4])), tensorToProto('wb', f32([1, 1, 1, 1], [0.25]))],
    });
    const r = equalizeModel(model);
    expect(r.pairs).toEqual([]);
    expect(saveOnnxModel(r.model)).toEqual(saveOnnxModel(model));
  });
});
