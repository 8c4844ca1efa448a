/**
 * Structural checks on a model we wrote, in the spirit of onnx.checker (which needs Python): names defined
 * before use and defined once, graph outputs produced, opset imports present and high enough for per-axis Q/DQ,
 * Q/DQ scales and zero points of consistent types and lengths. Types beyond that are checked by onnxruntime's
 * own type inference when it loads the model (a session that opens is type-consistent).
 */
import { DTYPES, dtypeFromOnnx } from '../tensor.js';
import { ELEM, attrInt, defaultOpset, graphOf, int64, type Int64Like, type OnnxModel } from './model.js';
import { nodeLabel } from './opset.js';

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
      if (scale && scale.dataType !== ELEM.FLOAT) problems.push(`${node.opType} '${label}': scale is not float32`);
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
      if (scale?.rawData?.length) {
        const s = new Float32Array(Uint8Array.from(scale.rawData).buffer);
        if (s.some((v) => !(v > 0) || !Number.isFinite(v))) problems.push(`${node.opType} '${label}': scales must be positive and finite`);
      }
    }
  }
  for (const o of g.output) if (!defined.has(o.name)) problems.push(`graph output '${o.name}' is not produced`);
  return problems;
}
