/**
 * The protection rules (src/precision/protect.ts) on small graphs with hand-set ranges, and the implicit Q/DQ
 * placement (src/onnx/qdq.ts) that measures what implicit INT8 would do to every named tensor.
 */
import { describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { checkModel } from '../../src/onnx/check.js';
import { ELEM, graphOf, makeTensor, saveOnnxModel, tensorToProto } from '../../src/onnx/model.js';
import { quantizeQdq } from '../../src/onnx/qdq.js';
import { findProtectedTensors, protectionPrecisionMap, withoutProtected } from '../../src/precision/protect.js';
import { accumulateReference, emptyStatistics } from '../../src/stats/histogram.js';

const f = ELEM.FLOAT;

/**
 * x [1, 4] -> a = Relu(x), b = Relu(x) (their ranges are set by the test), then:
 *   cat = Concat(a, b) -> catT = Transpose(cat) (output)       mixed-range join, and a re-layout of it
 *   sum = Add(a, b) (output)                                    a sum: never a mixed-range case
 *   sig = Sigmoid(x) -> sigR = Reshape -> sigM = Mul(sigR, 2) (output)   a score branch
 *   gate = Sigmoid(x) -> gated = Mul(gate, a) (output)          multiplied by an activation: not layout
 *   sm = Softmax(x) -> smr = Relu(sm) (output)                  computed on: not layout
 */
function model() {
  return makeModel({
    inputs: [makeValueInfo('x', f, [1, 4])],
    outputs: ['catT', 'sum', 'sigM', 'gated', 'smr'].map((n) => makeValueInfo(n, f, null)),
    initializers: [tensorToProto('shape', makeTensor('int64', [2], [1n, 4n])), tensorToProto('two', makeTensor('float32', [], [2]))],
    nodes: [
      makeNode('Relu', ['x'], ['a'], { name: 'relu_a' }),
      makeNode('Relu', ['x'], ['b'], { name: 'relu_b' }),
      makeNode('Concat', ['a', 'b'], ['cat'], { name: 'concat', attributes: { axis: { int: 1 } } }),
      makeNode('Transpose', ['cat'], ['catT'], { name: 'transpose', attributes: { perm: { ints: [1, 0] } } }),
      makeNode('Add', ['a', 'b'], ['sum'], { name: 'add' }),
      makeNode('Sigmoid', ['x'], ['sig'], { name: 'sigmoid' }),
      makeNode('Reshape', ['sig', 'shape'], ['sigR'], { name: 'reshape' }),
      makeNode('Mul', ['sigR', 'two'], ['sigM'], { name: 'scale_scores' }),
      makeNode('Sigmoid', ['x'], ['gate'], { name: 'gate_sigmoid' }),
      makeNode('Mul', ['gate', 'a'], ['gated'], { name: 'gate_mul' }),
      makeNode('Softmax', ['x'], ['sm'], { name: 'softmax' }),
      makeNode('Relu', ['sm'], ['smr'], { name: 'relu_sm' }),
    ],
  });
}

const ranges = (a: number, b: number) => new Map([['x', 1], ['a', a], ['b', b], ['cat', a], ['catT', a], ['sum', a + b], ['sig', 1], ['sigR', 1], ['sigM', 2], ['gate', 1], ['gated', a], ['sm', 1], ['smr', 1]]);

describe('findProtectedTensors', () => {
  it('protects a Concat of inputs 300x apart and its re-layout, and the Sigmoid reaching an output through layout ops', () => {
    const p = findProtectedTensors(model(), undefined, { amax: ranges(300, 1) });
    expect(p.map((t) => [t.tensor, t.kind])).toEqual([
      ['cat', 'mixed-range-concat'],
      ['catT', 'mixed-range-concat'],
      ['sig', 'score-branch'],
      ['sigR', 'score-branch'],
      ['sigM', 'score-branch'],
    ]);
    const cat = p.find((t) => t.tensor === 'cat')!;
    // 300 / 1 = 300x; one step of 300 / 127 = 2.36 leaves floor(1 / 2.36) = 0 steps to b.
    expect(cat.reason).toContain("joins 'a' (max |x| 300) with 'b' (max |x| 1.00), 300x apart");
    expect(cat.reason).toContain('step 2.36');
    expect(cat.reason).toContain('keeps 0 of 127 steps');
    expect(p.find((t) => t.tensor === 'sigM')!.reason).toContain("the Sigmoid 'sigmoid' reaches the graph output 'sigM'");
  });

  it('leaves a Concat 10x apart (below the factor 16) and any Add alone', () => {
    const p = findProtectedTensors(model(), undefined, { amax: ranges(10, 1) });
    expect(p.map((t) => t.tensor)).toEqual(['sig', 'sigR', 'sigM']);
    // At 17x the same Concat is protected: the factor is 16.
    expect(findProtectedTensors(model(), undefined, { amax: ranges(17, 1) }).map((t) => t.tensor)).toContain('cat');
    expect(findProtectedTensors(model(), undefined, { amax: ranges(16, 1) }).map((t) => t.tensor)).not.toContain('cat');
  });

  it('outliers: protects a tensor whose 99.99th percentile is more than 100x below its max', () => {
    // 100,000 values spread over [-1, 1] plus 5 values of +-1000 (0.005%: above the 99.99th percentile).
    const values = (outlier: number) => {
      const v = new Float32Array(100_005);
      for (let i = 0; i < 100_000; i++) v[i] = ((i % 2001) - 1000) / 1000;
      for (let i = 0; i < 5; i++) v[100_000 + i] = i % 2 === 0 ? outlier : -outlier;
      return v;
    };
    const stats = (name: string, outlier: number) => {
      const s = emptyStatistics(name);
      accumulateReference(s, values(outlier));
      return s;
    };
    // a: max 1000, percentile ~1 (1000x): protected; b: max 50, percentile ~1 (50x): kept.
    const all = [stats('x', 1), stats('a', 1000), stats('b', 50)];
    const p = findProtectedTensors(model(), all).filter((t) => t.kind === 'outliers');
    expect(p.map((t) => t.tensor)).toEqual(['a']);
    // The percentile is ~1, read from a histogram of [0, 1024) in 8192 bins of 0.125: within one bin of it.
    const m = /max \|x\| is 1000 but the 99.99th percentile is ([\d.]+) \((\d+)x below\)/.exec(p[0]!.reason);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(0.99);
    expect(Number(m![1])).toBeLessThanOrEqual(1.125);
    // Statistics give the Concat's ranges too: a (1000) and b (50) are 20x apart.
    expect(findProtectedTensors(model(), all).find((t) => t.tensor === 'cat')?.kind).toBe('mixed-range-concat');
  });

  it('is deterministic and gives the layers for the precision map and the scales without the protected tensors', () => {
    const m = model();
    const p = findProtectedTensors(m, undefined, { amax: ranges(300, 1) });
    expect(findProtectedTensors(m, undefined, { amax: new Map([...ranges(300, 1)].reverse()) })).toEqual(p);
    expect([...protectionPrecisionMap(m, p)]).toEqual([
      ['concat', 'fp16'],
      ['transpose', 'fp16'],
      ['sigmoid', 'fp16'],
      ['reshape', 'fp16'],
      ['scale_scores', 'fp16'],
    ]);
    const scales = withoutProtected(ranges(300, 1), p);
    expect([...scales.keys()]).toEqual(['x', 'a', 'b', 'sum', 'gate', 'gated', 'sm', 'smr']);
  });
});

describe('implicit Q/DQ placement', () => {
  /** x -> Conv -> c -> Relu -> r -> MaxPool... kept simple: Conv (fused with Relu), Relu, Concat with x, output. */
  function convModel() {
    const w = tensorToProto('w', makeTensor('float32', [2, 1, 1, 1], [0.5, -1]));
    return makeModel({
      inputs: [makeValueInfo('x', f, [1, 1, 2, 2])],
      outputs: [makeValueInfo('y', f, [1, 3, 2, 2])],
      initializers: [w],
      nodes: [
        makeNode('Conv', ['x', 'w'], ['c'], { name: 'conv' }),
        makeNode('Relu', ['c'], ['r'], { name: 'relu' }),
        makeNode('Concat', ['r', 'x'], ['y'], { name: 'concat', attributes: { axis: { int: 1 } } }),
      ],
    });
  }
  const scales = new Map([['x', 2 / 127], ['c', 2 / 127], ['r', 1 / 127], ['y', 2 / 127]]);

  it('puts Q/DQ on every named tensor but the one TensorRT fuses away, the graph output keeping its name', async () => {
    const explicit = quantizeQdq(convModel(), { activationScales: scales });
    expect(explicit.quantizedTensors).toEqual(['x']);
    const implicit = quantizeQdq(convModel(), { activationScales: scales, placement: 'implicit' });
    // c is fused into the Conv (Conv + Relu); x (the input, in TensorRT's cache), r and the output y are rounded.
    expect(implicit.quantizedTensors).toEqual(['x', 'r', 'y']);
    expect(implicit.dequantized.get('y')).toBe('y');
    expect(checkModel(implicit.model)).toEqual([]);
    const g = graphOf(implicit.model);
    expect(g.output.map((o) => o.name)).toEqual(['y']);
    expect(g.node.find((n) => n.opType === 'Concat')!.output).toEqual(['y_unquantized']);
    // Without a scale (a protected tensor) there is no Q/DQ.
    expect(quantizeQdq(convModel(), { activationScales: new Map([...scales].filter(([n]) => n !== 'y')), placement: 'implicit' }).quantizedTensors).toEqual(['x', 'r']);

    // Run it: every output value sits on y's INT8 grid (step 2/127), which the explicit model does not do.
    const session = await onnxruntimeBackend.open({ path: 'implicit.onnx', bytes: saveOnnxModel(implicit.model) }, { threads: 1 });
    try {
      const x = makeTensor('float32', [1, 1, 2, 2], [0.3, -0.77, 1.1, 0.05]);
      const y = (await session.run({ x }))['y']!.data as Float32Array;
      for (const v of y) expect(Math.abs(v / (2 / 127) - Math.round(v / (2 / 127)))).toBeLessThan(1e-4);
      // Channel 0 = Relu(0.5 x) on r's grid (1/127) then y's grid: 0.15 -> 19/127 -> 10 steps of 2/127 (19/2 = 9.5 rounds to even 10).
      expect(y[0]).toBeCloseTo((10 * 2) / 127, 6);
    } finally {
      await session.release();
    }
  });

  it('a tensor read only by a shuffle whose output has no scale is still rounded once, after the shuffle, on its own grid', async () => {
    // x -> Relu -> r -> Reshape -> s -> Mul 2 -> y: the cache names x and r but not s (a head appended after
    // calibration). r's only reader is a shuffle, so r is rounded as s, which takes r's scale (4/127).
    const shape = tensorToProto('shape', makeTensor('int64', [2], [1n, 4n] as never));
    const two = tensorToProto('two', makeTensor('float32', [], [2]));
    const model = makeModel({
      inputs: [makeValueInfo('x', f, [1, 1, 2, 2])],
      outputs: [makeValueInfo('y', f, [1, 4])],
      initializers: [shape, two],
      nodes: [
        makeNode('Relu', ['x'], ['r'], { name: 'relu' }),
        makeNode('Reshape', ['r', 'shape'], ['s'], { name: 'reshape' }),
        makeNode('Mul', ['s', 'two'], ['y'], { name: 'mul' }),
      ],
    });
    const scales = new Map([['x', 1 / 127], ['r', 4 / 127]]);
    const implicit = quantizeQdq(model, { activationScales: scales, placement: 'implicit' });
    expect(implicit.quantizedTensors).toEqual(['x', 's']);
    // No DQ feeds the Reshape (onnxruntime's crash): its input is r itself.
    expect(graphOf(implicit.model).node.find((n) => n.opType === 'Reshape')!.input[0]).toBe('r');
    // The Reshape's output set to fp16 by a precision map stays float, as before.
    expect(quantizeQdq(model, { activationScales: scales, placement: 'implicit', precisionMap: new Map([['reshape', 'fp16']]) }).quantizedTensors).toEqual(['x']);
    const session = await onnxruntimeBackend.open({ path: 'implicit-shuffle.onnx', bytes: saveOnnxModel(implicit.model) }, { threads: 1 });
    try {
      // 0.2 -> 25.4 steps of 1/127 -> 25/127 on x's grid, Relu, then 6.25 steps of 4/127 -> 24/127 on r's grid
      // (as s); 0.504 -> 64/127, on both grids. y = 2 s.
      const y = (await session.run({ x: makeTensor('float32', [1, 1, 2, 2], [0.2, -0.5, 0.504, 0]) }))['y']!.data as Float32Array;
      expect(Array.from(y).map((v) => Math.round((v / 2) * 127 * 1e4) / 1e4)).toEqual([24, 0, 64, 0]);
    } finally {
      await session.release();
    }
  });
});
