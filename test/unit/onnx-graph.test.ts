import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeConstantNode, makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { analyzeGraph, describeInputs, graphInputs, listActivations } from '../../src/onnx/graph.js';
import { ELEM, graphOf, loadOnnxModel, makeTensor, tensorToProto, type OnnxModel } from '../../src/onnx/model.js';
import { exposeTensors } from '../../src/onnx/expose.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MODELS = path.resolve(here, '../fixtures/models');
const MOBILENET = path.join(MODELS, 'mobilenet_v2_nsfw_224.onnx');
const PPOCR = path.join(MODELS, 'ppocr_v4_det.onnx');

describe('listActivations on MobileNetV2', () => {
  let model: OnnxModel;
  beforeAll(async () => {
    model = await loadOnnxModel(MOBILENET);
  });

  it('lists the input and every node output, weights excluded, in node order', () => {
    const acts = listActivations(model);
    const g = graphOf(model);
    // 111 nodes with one float output each, plus the graph input.
    expect(g.node.length).toBe(111);
    expect(acts.length).toBe(112);
    expect(acts[0]).toEqual({ name: 'input', dtype: 'float32', producerOp: null, producerNode: null, dims: ['N', 3, 224, 224] });
    expect(acts.slice(1).map((a) => a.name)).toEqual(g.node.map((n) => n.output[0]));
    const names = new Set(acts.map((a) => a.name));
    for (const n of g.node.filter((n) => n.opType === 'Conv' || n.opType === 'Clip')) expect(names.has(n.output[0]!)).toBe(true);
    for (const t of g.initializer) expect(names.has(t.name)).toBe(false);
    expect(acts.every((a) => a.dtype === 'float32')).toBe(true);
    const conv1 = acts.find((a) => a.name === 'bn_Conv1')!;
    expect(conv1).toMatchObject({ producerOp: 'Conv', producerNode: 'bn_Conv1' });
    expect(acts[acts.length - 1]).toMatchObject({ name: 'output', producerOp: 'Identity', dims: ['N', 5] });
  });

  it('describes the input with its symbolic batch dim', () => {
    expect(describeInputs(model)).toEqual([{ name: 'input', dtype: 'float32', dims: ['N', 3, 224, 224] }]);
    expect(graphInputs(model)).toHaveLength(1); // the 185 initializers are not inputs
  });
});

describe('listActivations on PP-OCRv4 det (weights in Constant nodes)', () => {
  let model: OnnxModel;
  beforeAll(async () => {
    model = await loadOnnxModel(PPOCR);
  });

  it('excludes Constant-node weights and keeps every dynamic float node output', () => {
    const g = graphOf(model);
    const analysis = analyzeGraph(model);
    const acts = analysis.activations;
    const constantOutputs = g.node.filter((n) => n.opType === 'Constant').map((n) => n.output[0]!);
    expect(constantOutputs.length).toBe(342);
    const names = new Set(acts.map((a) => a.name));
    for (const c of constantOutputs) expect(names.has(c)).toBe(false);
    // Every other node (Conv, Mul, Add, Resize, ...) computes from the input: 330 outputs, all float32.
    const compute = g.node.filter((n) => n.opType !== 'Constant');
    expect(compute.length).toBe(330);
    expect(acts.map((a) => a.name)).toEqual(['x', ...compute.map((n) => n.output[0])]);
    expect(acts.every((a) => a.dtype === 'float32')).toBe(true);
    expect(analysis.unknownTypes).toEqual([]);
    // No int64 tensors (Resize scales, Clip bounds are constants anyway).
    for (const a of acts) expect(analysis.tensors.get(a.name)!.elemType).toBe(ELEM.FLOAT);
    expect(acts[0]!.dims).toEqual(['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2']);
  });
});

describe('listActivations on a hand-built graph', () => {
  // x[N,3,4,4] float
  //   W (initializer, float [3])            -> weight
  //   shapeW = Shape(W)                      -> constant (int64)
  //   idx = Constant int64 0; dimW = Gather(shapeW, idx)  -> constant
  //   c2 = Constant float; c2x2 = Mul(c2, c2)  -> constant float (folded chain), not an activation
  //   r = Reshape(x, newShape) with newShape = Constant int64 [0, -1]          -> activation (float)
  //   sx = Shape(x)                          -> dynamic int64: not an activation
  //   sxf = Cast(sx, to=float)               -> dynamic float: activation
  //   xi = Cast(x, to=int32)                 -> dynamic int32: not an activation
  //   y = Add(r, c2x2)                       -> activation
  //   m = Equal(xi, xi)                      -> bool: no
  //   z = Where(m, x, x)                     -> float activation (type from input 1)
  //   h = Cast(x, to=float16); hf = Relu(h)  -> float16 activations
  //   custom = com.example.MyOp(y)           -> unknown type: reported, not listed
  //   q = QuantizeLinear(y, s, zp int8); dq = DequantizeLinear(q, s, zp) -> q int8 (no), dq float (yes)
  function build(): OnnxModel {
    const i64 = (name: string, v: number[]) => makeConstantNode(name, makeTensor('int64', [v.length], v.map(BigInt)));
    return makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 3, 4, 4])],
      outputs: [makeValueInfo('y', ELEM.FLOAT), makeValueInfo('custom', 0), makeValueInfo('dq', ELEM.FLOAT)],
      initializers: [tensorToProto('W', makeTensor('float32', [3], [1, 2, 3]))],
      valueInfo: [makeValueInfo('r', ELEM.FLOAT, ['N', 48])],
      extraOpsets: [{ domain: 'com.example', version: 1 }],
      nodes: [
        makeNode('Shape', ['W'], ['shapeW'], { name: 'shape_w' }),
        i64('idx', [0]),
        makeNode('Gather', ['shapeW', 'idx'], ['dimW'], { name: 'gather_w' }),
        makeConstantNode('c2', makeTensor('float32', [1], [2])),
        makeNode('Mul', ['c2', 'c2'], ['c2x2'], { name: 'fold_mul' }),
        i64('newShape', [0, -1]),
        makeNode('Reshape', ['x', 'newShape'], ['r'], { name: 'reshape' }),
        makeNode('Shape', ['x'], ['sx'], { name: 'shape_x' }),
        makeNode('Cast', ['sx'], ['sxf'], { name: 'cast_shape', attributes: { to: { int: ELEM.FLOAT } } }),
        makeNode('Cast', ['x'], ['xi'], { name: 'cast_int', attributes: { to: { int: ELEM.INT32 } } }),
        makeNode('Add', ['r', 'c2x2'], ['y'], { name: 'add' }),
        makeNode('Equal', ['xi', 'xi'], ['m'], { name: 'eq' }),
        makeNode('Where', ['m', 'x', 'x'], ['z'], { name: 'where' }),
        makeNode('Cast', ['x'], ['h'], { name: 'cast_half', attributes: { to: { int: ELEM.FLOAT16 } } }),
        makeNode('Relu', ['h'], ['hf'], { name: 'relu_half' }),
        makeNode('MyOp', ['y'], ['custom'], { name: 'my_op', domain: 'com.example' }),
        makeConstantNode('s', makeTensor('float32', [], [0.1])),
        makeConstantNode('zp', makeTensor('int8', [], [0])),
        makeNode('QuantizeLinear', ['y', 's', 'zp'], ['q'], { name: 'quant' }),
        makeNode('DequantizeLinear', ['q', 's', 'zp'], ['dq'], { name: 'dequant' }),
      ],
    });
  }

  it('keeps exactly the dynamic float tensors, with producers and declared dims', () => {
    const analysis = analyzeGraph(build());
    expect(analysis.activations).toEqual([
      { name: 'x', dtype: 'float32', producerOp: null, producerNode: null, dims: ['N', 3, 4, 4] },
      { name: 'r', dtype: 'float32', producerOp: 'Reshape', producerNode: 'reshape', dims: ['N', 48] },
      { name: 'sxf', dtype: 'float32', producerOp: 'Cast', producerNode: 'cast_shape' },
      { name: 'y', dtype: 'float32', producerOp: 'Add', producerNode: 'add' },
      { name: 'z', dtype: 'float32', producerOp: 'Where', producerNode: 'where' },
      { name: 'h', dtype: 'float16', producerOp: 'Cast', producerNode: 'cast_half' },
      { name: 'hf', dtype: 'float16', producerOp: 'Relu', producerNode: 'relu_half' },
      { name: 'dq', dtype: 'float32', producerOp: 'DequantizeLinear', producerNode: 'dequant' },
    ]);
    expect(analysis.unknownTypes).toEqual([{ tensor: 'custom', op: 'MyOp', domain: 'com.example', node: 'my_op' }]);
    const t = analysis.tensors;
    expect(t.get('dimW')).toMatchObject({ constant: true, elemType: ELEM.INT64 });
    expect(t.get('c2x2')).toMatchObject({ constant: true, elemType: ELEM.FLOAT });
    expect(t.get('sx')).toMatchObject({ constant: false, elemType: ELEM.INT64 });
    expect(t.get('xi')).toMatchObject({ constant: false, elemType: ELEM.INT32 });
    expect(t.get('m')).toMatchObject({ constant: false, elemType: ELEM.BOOL });
    expect(t.get('q')).toMatchObject({ constant: false, elemType: ELEM.INT8 });
  });

  it('uses type hints for tensors the rules cannot type', () => {
    const acts = listActivations(build(), { typeHints: new Map([['custom', ELEM.FLOAT]]) });
    expect(acts.map((a) => a.name)).toContain('custom');
  });

  it('sorts nodes that are stored out of order and keeps their file order otherwise', () => {
    const m = build();
    const g = graphOf(m);
    const shuffled = makeModel({
      inputs: g.input,
      outputs: g.output,
      initializers: g.initializer,
      valueInfo: g.valueInfo,
      extraOpsets: [{ domain: 'com.example', version: 1 }],
      nodes: [...g.node].reverse(),
    });
    expect(listActivations(shuffled).map((a) => a.name).sort()).toEqual(listActivations(m).map((a) => a.name).sort());
    const order = analyzeGraph(shuffled).nodes.map((n) => n.output[0]);
    expect(order.indexOf('r')).toBeLessThan(order.indexOf('y'));
    expect(order.indexOf('y')).toBeLessThan(order.indexOf('dq'));
  });

  it('reports a tensor that nothing produces', () => {
    const m = makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1])],
      outputs: [makeValueInfo('y', ELEM.FLOAT)],
      nodes: [makeNode('Add', ['x', 'ghost'], ['y'], { name: 'add' })],
    });
    expect(() => analyzeGraph(m, { file: 'm.onnx' })).toThrow(/m.onnx: node 'add' reads tensor 'ghost'/);
  });

  it('exposeTensors adds typed outputs, keeps the source intact and refuses unknown names', () => {
    const m = build();
    const exposed = exposeTensors(m, ['r', 'sxf', 'y', 'h']);
    const outs = graphOf(exposed).output;
    expect(outs.map((o) => o.name)).toEqual(['y', 'custom', 'dq', 'r', 'sxf', 'h']);
    expect(outs.slice(3).map((o) => o.type!.tensorType!.elemType)).toEqual([ELEM.FLOAT, ELEM.FLOAT, ELEM.FLOAT16]);
    expect(graphOf(m).output.length).toBe(3);
    expect(() => exposeTensors(m, ['nope'], { file: 'm.onnx' })).toThrow(/m.onnx: there is no tensor 'nope'/);
    expect(() => exposeTensors(m, ['x'])).toThrow(/graph input/);
  });
});
