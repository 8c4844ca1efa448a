/**
 * Exporting activations in onnxruntime's blocked layout (NCHWc) as they are, without converting them to NCHW.
 *
 * At its top optimisation level onnxruntime runs convolutions on x86 in a blocked layout: channels in blocks of 8
 * (AVX2) or 16 (AVX-512), [N, C/8, H, W, 8] in memory. It converts back with a ReorderOutput wherever a tensor leaves
 * that layout, in front of every graph output among them. With every activation exposed, calibration pays one
 * ReorderOutput per convolution; worse, the elementwise op after a convolution then reads the NCHW copy, and a
 * ReorderInput turns its result back into blocks for the next convolution. In MobileNetV2 that is 63 ReorderOutput,
 * 35 Clip on NCHW copies and 35 ReorderInput: about a third of the exposed run's time.
 *
 * A tensor's statistics do not depend on the order of its values (counts, extremes and histograms of exact
 * integers), and a tensor whose channel count is a multiple of the block holds exactly its own values in the
 * blocked layout, with no padding lanes. So in the graph onnxruntime optimised (native ortOptimizeModel), for
 * tensors of 16k channels (16, the largest block onnxruntime uses, so the rule holds on any x86):
 *   - elementwise ops whose tensor inputs are all the blocked versions of tensors of one blocked root (so of one
 *     shape: every op kept here preserves it), the other inputs scalar constants, run on the blocks; the
 *     ReorderInput after them goes;
 *   - an exposed tensor is exported blocked, under its own name, and its ReorderOutput goes;
 *   - a ReorderOutput stays, or is added after a converted op, where an NCHW tensor is still read (a consumer that
 *     is not elementwise).
 * Everything else is left as onnxruntime made it, and the model's own outputs are computed as before. The result
 * is only for counting: test/unit/backend-onnxruntime-collect.test.ts checks that statistics are the same bytes either way.
 */
import { attrInt, graphOf, int64, onnx, withGraph, type OnnxModel, type OnnxNode } from './model.js';

const NCHWC_DOMAIN = 'com.microsoft.nchwc';
/** onnxruntime's largest NCHWc block (AVX-512); smaller blocks (8 for AVX2, 4) divide it. */
const LARGEST_BLOCK = 16;

/** Default-domain ops that compute each output value from the input values at the same position. */
const ELEMENTWISE = new Set([
  'Abs', 'Add', 'Ceil', 'Celu', 'Clip', 'Cos', 'Div', 'Elu', 'Erf', 'Exp', 'Floor', 'Gelu', 'HardSigmoid', 'HardSwish',
  'Identity', 'LeakyRelu', 'Log', 'Max', 'Mean', 'Min', 'Mish', 'Mul', 'Neg', 'Pow', 'Reciprocal', 'Relu', 'Round',
  'Selu', 'Sigmoid', 'Sign', 'Sin', 'Softplus', 'Softsign', 'Sqrt', 'Sub', 'Sum', 'Tanh', 'ThresholdedRelu',
]);

export interface BlockedExport {
  model: OnnxModel;
  /** Exposed tensors now exported in the blocked layout. */
  blocked: string[];
  /** ReorderOutput and ReorderInput nodes before and after the edit. */
  reorders: { before: number; after: number };
}

/**
 * `optimized` (onnxruntime's optimised graph) with the exposed tensors in `counted` (read only for their
 * statistics) exported blocked where they can be; undefined when nothing changes or the graph is not in the
 * expected form (nodes out of topological order, or a name the edit would add already in use).
 */
export function exportBlockedActivations(optimized: OnnxModel, counted: ReadonlySet<string>): BlockedExport | undefined {
  const g = graphOf(optimized);
  const nodes = g.node;
  const isNchwc = (n: OnnxNode, op: string) => n.opType === op && n.domain === NCHWC_DOMAIN && (attrInt(n, 'channels_last') ?? 0) === 0;

  // Names in use, and the order check: every input is defined before its node.
  const names = new Set<string>(['']);
  for (const v of g.input) names.add(v.name);
  const scalars = new Set<string>();
  for (const t of g.initializer) {
    names.add(t.name);
    const dims = t.dims.map((d) => int64(d));
    if (dims.length <= 4 && dims.every((d) => d === 1)) scalars.add(t.name);
  }
  for (const n of nodes) {
    if (!n.input.every((x) => names.has(x))) return undefined;
    for (const x of n.output) names.add(x);
  }

  // Blocked roots: what each ReorderOutput reads. root -> channels; NCHW tensor -> its blocked version.
  const channels = new Map<string, number>();
  const blockedOf = new Map<string, string>();
  const rootOf = new Map<string, string>();
  for (const n of nodes) {
    if (!isNchwc(n, 'ReorderOutput')) continue;
    const c = attrInt(n, 'channels') ?? 0;
    if (c <= 0 || c % LARGEST_BLOCK !== 0) continue;
    channels.set(n.input[0]!, c);
    rootOf.set(n.input[0]!, n.input[0]!);
    blockedOf.set(n.output[0]!, n.input[0]!);
  }
  if (blockedOf.size === 0) return undefined;

  // Elementwise ops that can read blocks: their output gets a blocked version of the same root.
  const converted = new Map<OnnxNode, string>(); // node -> its blocked output's name
  const fresh = (base: string) => {
    let name = `${base}::nchwc`;
    for (let i = 2; names.has(name); i++) name = `${base}::nchwc${i}`;
    names.add(name);
    return name;
  };
  for (const n of nodes) {
    if (n.domain || !ELEMENTWISE.has(n.opType) || n.output.length !== 1) continue;
    if (n.attribute.some((a) => a.name === 'broadcast' || a.name === 'axis')) continue; // opset < 7 broadcasting
    let root: string | undefined;
    let ok = true;
    for (const x of n.input) {
      if (x === '' || scalars.has(x)) continue;
      const b = blockedOf.get(x);
      const r = b === undefined ? undefined : rootOf.get(b);
      if (r === undefined || (root !== undefined && r !== root)) {
        ok = false;
        break;
      }
      root = r;
    }
    if (!ok || root === undefined) continue;
    const out = fresh(n.output[0]!);
    rootOf.set(out, root);
    blockedOf.set(n.output[0]!, out);
    converted.set(n, out);
  }

  // Which NCHW tensors are still read as NCHW, and which exposed ones are exported blocked.
  const outputs = new Set(g.output.map((o) => o.name));
  const readAsNchw = new Set<string>();
  for (const n of nodes) {
    if (converted.has(n) || isNchwc(n, 'ReorderInput')) continue;
    if (isNchwc(n, 'ReorderOutput') && channels.has(n.input[0]!)) continue;
    for (const x of n.input) if (blockedOf.has(x)) readAsNchw.add(x);
  }
  // Final names: a tensor exported blocked keeps its name on the blocks; its NCHW copy, if still read, is renamed.
  const exportedBlocked = new Set<string>();
  const blockedName = new Map<string, string>();
  for (const [t, b] of blockedOf) {
    if (!outputs.has(t)) continue;
    if (counted.has(t) && !blockedName.has(b)) {
      exportedBlocked.add(t);
      blockedName.set(b, t);
    } else {
      readAsNchw.add(t);
    }
  }
  const nchwName = new Map<string, string>();
  for (const t of readAsNchw) {
    if (!exportedBlocked.has(t)) continue;
    let name = `${t}::nchw`;
    for (let i = 2; names.has(name); i++) name = `${t}::nchw${i}`;
    names.add(name);
    nchwName.set(t, name);
  }
  const alias = new Map<string, string>(); // a dropped ReorderInput's output -> the blocks it recreated
  const finalBlocked = (b: string) => blockedName.get(b) ?? b;
  const rename = (x: string) => {
    const a = alias.get(x);
    if (a !== undefined) return a;
    if (channels.has(x) || rootOf.has(x)) return finalBlocked(x);
    return nchwName.get(x) ?? x;
  };

  const reorderOutput = (from: string, to: string, c: number) =>
    onnx.NodeProto.create({
      opType: 'ReorderOutput',
      domain: NCHWC_DOMAIN,
      name: `${to}::reorder`,
      input: [from],
      output: [to],
      attribute: [
        onnx.AttributeProto.create({ name: 'channels', type: onnx.AttributeProto.AttributeType.INT, i: c }),
        onnx.AttributeProto.create({ name: 'channels_last', type: onnx.AttributeProto.AttributeType.INT, i: 0 }),
      ],
    });
  const out: OnnxNode[] = [];
  for (const n of nodes) {
    if (isNchwc(n, 'ReorderOutput') && channels.has(n.input[0]!)) {
      const t = n.output[0]!;
      if (readAsNchw.has(t)) out.push(onnx.NodeProto.create({ ...n, input: [finalBlocked(n.input[0]!)], output: [nchwName.get(t) ?? t] }));
      continue;
    }
    if (isNchwc(n, 'ReorderInput') && blockedOf.has(n.input[0]!)) {
      alias.set(n.output[0]!, finalBlocked(blockedOf.get(n.input[0]!)!));
      continue;
    }
    const blockedOut = converted.get(n);
    if (blockedOut !== undefined) {
      const input = n.input.map((x) => (blockedOf.has(x) ? finalBlocked(blockedOf.get(x)!) : x));
      out.push(onnx.NodeProto.create({ ...n, input, output: [finalBlocked(blockedOut)] }));
      const t = n.output[0]!;
      if (readAsNchw.has(t)) out.push(reorderOutput(finalBlocked(blockedOut), nchwName.get(t) ?? t, channels.get(rootOf.get(blockedOut)!)!));
      continue;
    }
    out.push(onnx.NodeProto.create({ ...n, input: n.input.map(rename), output: n.output.map(rename) }));
  }
  const count = (list: readonly OnnxNode[]) => list.filter((n) => isNchwc(n, 'ReorderOutput') || isNchwc(n, 'ReorderInput')).length;
  const before = count(nodes);
  const after = count(out);
  if (after >= before) return undefined;
  // Shapes recorded for renamed tensors would be stale: onnxruntime infers them again.
  return {
    model: withGraph(optimized, { ...g, node: out, valueInfo: [] }),
    blocked: [...exportedBlocked].sort(),
    reorders: { before, after },
  };
}
