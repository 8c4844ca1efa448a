/**
 * The checker's element-type rules (src/onnx/check.ts checkTypes) on hand-made graphs, and the opset upgrade to 19
 * that float16 Q/DQ needs (src/onnx/opset.ts), checked in onnxruntime against the model before it.
 */
import { describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { checkTypes } from '../../src/onnx/check.js';
import { ELEM, graphOf, makeTensor, onnx, saveOnnxModel, tensorToProto } from '../../src/onnx/model.js';
import { upgradeOpset } from '../../src/onnx/opset.js';

const f16Scale = (name: string) => onnx.TensorProto.create({ name, dataType: ELEM.FLOAT16, dims: [], rawData: new Uint8Array(new Uint16Array([0x2e66]).buffer) });
const zp = tensorToProto('zp', makeTensor('int8', [], [0]));

describe('checkTypes', () => {
  it('accepts a float16 Q/DQ pair at opset 19 behind a Cast, with a float32 output after a Cast back', () => {
    const m = makeModel({
      nodes: [
        makeNode('Cast', ['x'], ['x16'], { attributes: { to: { int: ELEM.FLOAT16 } } }),
        makeNode('QuantizeLinear', ['x16', 's', 'zp'], ['q']),
        makeNode('DequantizeLinear', ['q', 's', 'zp'], ['d']),
        makeNode('Relu', ['d'], ['r']),
        makeNode('Cast', ['r'], ['y'], { attributes: { to: { int: ELEM.FLOAT } } }),
      ],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [4])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [4])],
      initializers: [f16Scale('s'), zp],
      opset: 19,
      irVersion: 9,
    });
    expect(checkTypes(m)).toEqual([]);
  });

  it('names each inconsistency: tied inputs, Q input vs scale, float16 scales before opset 19, a declared output, a Cast without a type', () => {
    const w = tensorToProto('w', makeTensor('float32', [4], [1, 2, 3, 4]));
    const m = makeModel({
      nodes: [
        makeNode('Cast', ['x'], ['x16'], { attributes: { to: { int: ELEM.FLOAT16 } } }),
        makeNode('Add', ['x16', 'w'], ['a'], { name: 'add' }),
        makeNode('QuantizeLinear', ['x', 's', 'zp'], ['q'], { name: 'q' }),
        makeNode('DequantizeLinear', ['q', 's', 'zp'], ['y'], { name: 'dq' }),
        makeNode('Cast', ['x'], ['c'], { name: 'bad_cast' }),
      ],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [4])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, [4])],
      initializers: [w, f16Scale('s'), zp],
      opset: 13,
    });
    const problems = checkTypes(m);
    expect(problems).toContain("Add 'add': input 1 ('w') is float32 but input 0 is float16");
    expect(problems).toContain("QuantizeLinear 'q': input is float32 but its scale is float16");
    expect(problems).toContain("QuantizeLinear 'q': a float16 scale needs opset 19 (model: 13)");
    expect(problems).toContain("graph output 'y' is declared float32 but is float16");
    expect(problems).toContain("Cast 'bad_cast' has no valid 'to' type");
  });
});

describe('upgradeOpset to 19', () => {
  it('moves Reduce axes to an input, gives Split num_outputs, and computes the same values', async () => {
    const m = makeModel({
      nodes: [
        makeNode('ReduceMean', ['x'], ['m'], { attributes: { axes: { ints: [1] }, keepdims: { int: 1 } } }),
        makeNode('Split', ['x'], ['s0', 's1'], { attributes: { axis: { int: 1 } } }),
        makeNode('Sub', ['s0', 'm'], ['y0']),
        makeNode('Add', ['s1', 'm'], ['y1']),
      ],
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 4])],
      outputs: [makeValueInfo('y0', ELEM.FLOAT, [1, 2]), makeValueInfo('y1', ELEM.FLOAT, [1, 2])],
      opset: 13,
    });
    const up = upgradeOpset(m, { to: 19 });
    expect(up.to).toBe(19);
    expect(up.converted.map((c) => c.split(' ')[0])).toEqual(['ReduceMean', 'Split']);
    const g = graphOf(up.model);
    expect(g.node[0]!.input).toHaveLength(2);
    expect(g.node[1]!.attribute.find((a) => a.name === 'num_outputs')?.i).toBe(2);
    const x = { dtype: 'float32' as const, dims: [1, 4], data: new Float32Array([1, 2, 3, 10]) };
    const run = async (model: typeof m) => {
      const s = await onnxruntimeBackend.open({ path: 'upgrade', bytes: saveOnnxModel(model) }, { threads: 1 });
      try {
        const r = await s.run({ x });
        return [...(r.y0!.data as Float32Array), ...(r.y1!.data as Float32Array)];
      } finally {
        await s.release();
      }
    };
    expect(await run(up.model)).toEqual(await run(m)); // mean 4: [-3, -2, 7, 14]
    expect(await run(m)).toEqual([-3, -2, 7, 14]);
  });
});
