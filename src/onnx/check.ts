/**
 * Structural checks on a model we wrote, in the spirit of onnx.checker (which needs Python): names defined
 * before use and defined once, graph outputs produced, opset imports present and high enough for per-axis Q/DQ,
 * Q/DQ scales and zero points of consistent types and lengths, and element types (checkTypes): every node's inputs
 * typed as its operator schema ties them (Add's two inputs one type, Q's input and scale one type, DQ's output the
 * scale's type, opset 19 for float16 Q/DQ), Cast targets, and graph outputs of the type they declare. onnxruntime's
 * type inference checks the rest when it loads the model.
 */
import { DTYPES, dtypeFromOnnx } from '../tensor.js';
import { float16BitsToFloat32 } from './fp16.js';
import { ELEM, attrInt, defaultOpset, elemTypeName, graphOf, int64, type Int64Like, type OnnxModel, type OnnxTensorProto } from './model.js';
import { nodeLabel } from './opset.js';

/** Ops whose listed input slots (all, when undefined) and first output share one type T (ONNX operator schemas). */
const TIED: Readonly<Record<string, readonly number[] | undefined>> = {
  Add: undefined, Sub: undefined, Mul: undefined, Div: undefined, Sum: undefined, Max: undefined, Min: undefined, Mean: undefined,
  Concat: undefined, Conv: undefined, ConvTranspose: undefined, Gemm: undefined, MatMul: undefined, PRelu: undefined, Clip: undefined,
  Relu: undefined, Sigmoid: undefined, HardSigmoid: undefined, HardSwish: undefined, Tanh: undefined, Exp: undefined, Log: undefined,
  Sqrt: undefined, Abs: undefined, Neg: undefined, Softmax: undefined, LogSoftmax: undefined, AveragePool: undefined, MaxPool: [0],
  GlobalAveragePool: undefined, GlobalMaxPool: undefined, Flatten: undefined, Transpose: undefined, Identity: undefined,
  LeakyRelu: undefined, Elu: undefined, Erf: undefined, Reciprocal: undefined, Floor: undefined, Ceil: undefined, Softplus: undefined,
  InstanceNormalization: undefined, BatchNormalization: [0], Reshape: [0], Squeeze: [0], Unsqueeze: [0], Slice: [0], Pad: [0, 2],
  Resize: [0], Expand: [0], Tile: [0], Gather: [0], Split: [0], DepthToSpace: undefined, SpaceToDepth: undefined, Where: [1, 2],
};
const COMPARISONS = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual']);
const FLOAT_SCALES = new Set<number>([ELEM.FLOAT, ELEM.FLOAT16, ELEM.BFLOAT16]);

/** Element-type problems (see the file comment); tensors of unknown type (custom ops) are not judged. */
export function checkTypes(model: OnnxModel): string[] {
  const problems: string[] = [];
  const g = graphOf(model);
  const opset = defaultOpset(model);
  const types = new Map<string, number>();
  const name = (t: number) => elemTypeName(t);
  for (const t of g.initializer) types.set(t.name, t.dataType);
  for (const v of g.input) if (!types.has(v.name) && v.type?.tensorType?.elemType) types.set(v.name, v.type.tensorType.elemType);
  for (const node of g.node) {
    const label = nodeLabel(node);
    const t = (slot: number) => (node.input[slot] ? types.get(node.input[slot]!) : undefined);
    const setOut = (slot: number, type: number | undefined) => {
      if (node.output[slot] && type) types.set(node.output[slot]!, type);
    };
    if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') continue;
    const op = node.opType;
    if (op === 'Constant') setOut(0, node.attribute.find((a) => a.name === 'value')?.t?.dataType ?? undefined);
    else if (op === 'Cast') {
      const to = attrInt(node, 'to');
      if (to === undefined || to === 0 || elemTypeName(to).startsWith('type<')) problems.push(`Cast '${label}' has no valid 'to' type`);
      setOut(0, to);
    } else if (op === 'Shape' || op === 'Size') setOut(0, ELEM.INT64);
    else if (op === 'QuantizeLinear' || op === 'DequantizeLinear') {
      const scale = t(1);
      if (scale !== undefined && !FLOAT_SCALES.has(scale)) problems.push(`${op} '${label}': scale is ${name(scale)}, not a float type`);
      if (scale !== undefined && scale !== ELEM.FLOAT && opset < 19) problems.push(`${op} '${label}': a ${name(scale)} scale needs opset 19 (model: ${opset})`);
      if (op === 'QuantizeLinear') {
        if (t(0) !== undefined && scale !== undefined && t(0) !== scale) problems.push(`QuantizeLinear '${label}': input is ${name(t(0)!)} but its scale is ${name(scale)}`);
        setOut(0, t(2) ?? ELEM.UINT8);
      } else setOut(0, scale);
    } else if (COMPARISONS.has(op)) {
      if (t(0) !== undefined && t(1) !== undefined && t(0) !== t(1)) problems.push(`${op} '${label}': inputs are ${name(t(0)!)} and ${name(t(1)!)}`);
      setOut(0, ELEM.BOOL);
    } else if (op in TIED) {
      const slots = TIED[op] ?? node.input.map((_, i) => i);
      const typed = slots.filter((s) => node.input[s] && t(s) !== undefined);
      const first = typed.length ? t(typed[0]!) : undefined;
      for (const s of typed) if (t(s) !== first) problems.push(`${op} '${label}': input ${s} ('${node.input[s]}') is ${name(t(s)!)} but input ${typed[0]} is ${name(first!)}`);
      for (let o = 0; o < node.output.length; o++) if (o === 0 || op === 'Split') setOut(o, first);
    }
  }
  for (const o of g.output) {
    const declared = o.type?.tensorType?.elemType;
    const actual = types.get(o.name);
    if (declared && actual && declared !== actual) problems.push(`graph output '${o.name}' is declared ${name(declared)} but is ${name(actual)}`);
  }
  return problems;
}

/** Scale values of a float32 or float16 initializer. */
function scaleValues(t: OnnxTensorProto): Float64Array | undefined {
  if (!t.rawData?.length) return undefined;
  const bytes = Uint8Array.from(t.rawData);
  if (t.dataType === ELEM.FLOAT) return Float64Array.from(new Float32Array(bytes.buffer));
  if (t.dataType === ELEM.FLOAT16) return Float64Array.from(new Uint16Array(bytes.buffer), float16BitsToFloat32);
  return undefined;
}

export function checkModel(model: OnnxModel): string[] {
  const problems: string[] = [];
  const g = graphOf(model);
  const opset = defaultOpset(model);
  if (opset === 0) problems.push('no default-domain opset import');
  const domains = new Set(model.opsetImport.map((o) => (o.domain === 'ai.onnx' ? '' : o.domain ?? '')));

  const defined = new Map<string, string>();
  const define = (name: string, what: string) => {
    if (!name) return;
    const before = defined.get(name);
    if (before) problems.push(`'${name}' is defined twice (${before} and ${what})`);
    else defined.set(name, what);
  };
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  for (const t of g.initializer) {
    define(t.name, 'initializer');
    const dtype = dtypeFromOnnx(t.dataType);
    const n = t.dims.reduce((a: number, d) => a * int64(d as Int64Like), 1);
    if (dtype && t.rawData?.length && t.rawData.length !== n * DTYPES[dtype].bytes) {
      problems.push(`initializer '${t.name}' has ${t.rawData.length} bytes for ${n} ${dtype} values`);
    }
  }
  for (const v of g.input) if (!inits.has(v.name)) define(v.name, 'graph input');

  for (const node of g.node) {
    const label = nodeLabel(node);
    if (!domains.has(node.domain === 'ai.onnx' ? '' : node.domain ?? '')) problems.push(`node '${label}' uses domain '${node.domain}', which the model does not import`);
    for (const i of node.input) if (i && !defined.has(i)) problems.push(`node '${label}' reads '${i}' before anything defines it`);
    for (const o of node.output) define(o, `node '${label}'`);

    if ((node.opType === 'QuantizeLinear' || node.opType === 'DequantizeLinear') && (node.domain ?? '') === '') {
      const scale = inits.get(node.input[1] ?? '');
      const zp = inits.get(node.input[2] ?? '');
      const axis = attrInt(node, 'axis');
      if (scale && !FLOAT_SCALES.has(scale.dataType)) problems.push(`${node.opType} '${label}': scale is not a float type`);
      if (zp && zp.dataType !== ELEM.INT8 && zp.dataType !== ELEM.UINT8) problems.push(`${node.opType} '${label}': zero point is not int8/uint8`);
      const scaleLen = scale ? scale.dims.reduce((a: number, d) => a * int64(d as Int64Like), 1) : 1;
      const perAxis = scale ? scale.dims.length === 1 && !(scaleLen === 1 && axis === undefined) : false;
      if (perAxis && opset < 13) problems.push(`${node.opType} '${label}' is per-axis, which needs opset 13 (model: ${opset})`);
      if (scale && zp && scale.dims.map(String).join() !== zp.dims.map(String).join()) problems.push(`${node.opType} '${label}': scale and zero point shapes differ`);
      const x = inits.get(node.input[0] ?? '');
      if (perAxis && x) {
        const rank = x.dims.length;
        const ax = (axis ?? 1) < 0 ? (axis ?? 1) + rank : axis ?? 1;
        const channels = int64(x.dims[ax] as Int64Like);
        if (channels !== scaleLen) problems.push(`${node.opType} '${label}': ${scaleLen} scales for ${channels} channels on axis ${ax}`);
      }
      const s = scale ? scaleValues(scale) : undefined;
      if (s && s.some((v) => !(v > 0) || !Number.isFinite(v))) problems.push(`${node.opType} '${label}': scales must be positive and finite`);
    }
  }
  for (const o of g.output) if (!defined.has(o.name)) problems.push(`graph output '${o.name}' is not produced`);
  problems.push(...checkTypes(model));
  return problems;
}
