/**
 * Activations exported in onnxruntime's blocked layout (src/onnx/nchwc.ts): the edit of onnxruntime's optimised
 * graph, on a graph written by hand in the form onnxruntime writes, and on real models through the native
 * collector, whose statistics must be the same bytes as with every activation reordered to NCHW.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listActivations } from '../../src/onnx/graph.js';
import { loadOnnxModel, onnx, type OnnxModel, type OnnxNode } from '../../src/onnx/model.js';
import { exportBlockedActivations } from '../../src/onnx/nchwc.js';
import { planCollection } from '../../src/backends/collection-plan.js';
import { NativeStatistics } from '../../src/backends/onnxruntime-collect.js';

const ROOT = path.resolve(__dirname, '../..');
const MOBILENET = path.join(ROOT, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');
const PPOCR = path.join(ROOT, 'test/fixtures/models/ppocr_v4_det.onnx');
const NCHWC = 'com.microsoft.nchwc';
const INT = onnx.AttributeProto.AttributeType.INT;

const node = (opType: string, input: string[], output: string[], domain = '', attrs: Record<string, number> = {}) =>
  onnx.NodeProto.create({
    opType,
    input,
    output,
    domain,
    name: output[0],
    attribute: Object.entries(attrs).map(([name, i]) => onnx.AttributeProto.create({ name, type: INT, i })),
  });
const reorderOut = (from: string, to: string, channels: number) => node('ReorderOutput', [from], [to], NCHWC, { channels, channels_last: 0 });
const reorderIn = (from: string, to: string) => node('ReorderInput', [from], [to], NCHWC, { channels_last: 0 });
const scalar = (name: string, v: number) => onnx.TensorProto.create({ name, dims: [], dataType: 1, floatData: [v] });

function graph(nodes: OnnxNode[], outputs: string[]): OnnxModel {
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: 13 })],
    graph: onnx.GraphProto.create({
      node: nodes,
      input: [onnx.ValueInfoProto.create({ name: 'x' })],
      initializer: [scalar('lo', 0), scalar('hi', 6), scalar('three', 3), onnx.TensorProto.create({ name: 'w', dims: [32, 32, 1, 1], dataType: 1 })],
      output: outputs.map((name) => onnx.ValueInfoProto.create({ name })),
      valueInfo: [onnx.ValueInfoProto.create({ name: 'a' })],
    }),
  }) as OnnxModel;
}
const show = (m: OnnxModel) => m.graph!.node!.map((n) => `${n.opType}(${n.input!.join(',')})->${n.output!.join(',')}`);

describe('exportBlockedActivations', () => {
  it('runs Conv -> Clip -> Conv on blocks, exports the convolution blocked and drops both reorders', () => {
    // onnxruntime's graph with the first convolution's output `a` exposed: a ReorderOutput for the graph output, the
    // Clip on the NCHW copy, a ReorderInput for the next convolution.
    const m = graph(
      [
        node('Conv', ['x', 'w'], ['a_blk'], NCHWC),
        reorderOut('a_blk', 'a', 32),
        node('Clip', ['a', 'lo', 'hi'], ['b']),
        reorderIn('b', 'b_blk'),
        node('Conv', ['b_blk', 'w'], ['c_blk'], NCHWC),
        reorderOut('c_blk', 'c', 32),
      ],
      ['c', 'a'],
    );
    const edit = exportBlockedActivations(m, new Set(['a', 'c']))!;
    expect(show(edit.model)).toEqual(['Conv(x,w)->a', 'Clip(a,lo,hi)->b::nchwc', 'Conv(b::nchwc,w)->c']);
    expect(edit.blocked).toEqual(['a', 'c']);
    expect(edit.reorders).toEqual({ before: 3, after: 0 });
    expect(edit.model.graph!.output!.map((o) => o.name)).toEqual(['c', 'a']);
    expect(edit.model.graph!.valueInfo).toEqual([]);
    // The input is not modified.
    expect(show(m)[1]).toBe('ReorderOutput(a_blk)->a');
  });

  it('keeps NCHW where it is still read: channels that may be padded, ops that are not elementwise, outputs not only counted', () => {
    const m = graph(
      [
        node('Conv', ['x', 'w'], ['a_blk'], NCHWC),
        reorderOut('a_blk', 'a', 24), // 24 channels: padded with blocks of 16
        node('Conv', ['a_blk', 'w'], ['b_blk'], NCHWC),
        reorderOut('b_blk', 'b', 32),
        node('GlobalAveragePool', ['b'], ['p']), // not elementwise: reads NCHW
        node('Add', ['b', 'three'], ['s']), // scalar: runs on blocks
        node('Mul', ['b', 's'], ['hs']), // both from the same root: runs on blocks
        reorderIn('hs', 'hs_blk'),
        node('Conv', ['hs_blk', 'w'], ['y_blk'], NCHWC),
        reorderOut('y_blk', 'y', 32), // the model's own output: not in `counted`
      ],
      ['y', 'a', 'b', 's', 'p'],
    );
    const edit = exportBlockedActivations(m, new Set(['a', 'b', 's', 'p']))!;
    expect(show(edit.model)).toEqual([
      'Conv(x,w)->a_blk',
      'ReorderOutput(a_blk)->a',
      'Conv(a_blk,w)->b',
      'ReorderOutput(b)->b::nchw',
      'GlobalAveragePool(b::nchw)->p',
      'Add(b,three)->s',
      'Mul(b,s)->hs::nchwc',
      'Conv(hs::nchwc,w)->y_blk',
      'ReorderOutput(y_blk)->y',
    ]);
    expect(edit.blocked).toEqual(['b', 's']);
    expect(edit.reorders).toEqual({ before: 4, after: 3 });
  });

  it('leaves elementwise ops alone when another input is a tensor of another shape or another root', () => {
    const m = graph(
      [
        node('Conv', ['x', 'w'], ['a_blk'], NCHWC),
        reorderOut('a_blk', 'a', 32),
        node('Conv', ['x', 'w'], ['b_blk'], NCHWC),
        reorderOut('b_blk', 'b', 32),
        node('Mul', ['a', 'x'], ['m']), // x: a tensor that has no blocked version
        node('Add', ['a', 'b'], ['s']), // two roots: equal shapes are not known
        node('Relu', ['b'], ['r']),
        reorderIn('r', 'r_blk'),
        node('Conv', ['r_blk', 'w'], ['z_blk'], NCHWC),
      ],
      ['a', 'b', 'm', 's'],
    );
    const edit = exportBlockedActivations(m, new Set(['a', 'b', 'm', 's']))!;
    expect(show(edit.model)).toEqual([
      'Conv(x,w)->a',
      'ReorderOutput(a)->a::nchw',
      'Conv(x,w)->b',
      'ReorderOutput(b)->b::nchw',
      'Mul(a::nchw,x)->m',
      'Add(a::nchw,b::nchw)->s',
      'Relu(b)->r::nchwc',
      'Conv(r::nchwc,w)->z_blk',
    ]);
    expect(edit.reorders).toEqual({ before: 3, after: 2 });
    // Without the Relu there is nothing to gain: the same reorders, so no edit.
    expect(exportBlockedActivations(graph(m.graph!.node!.slice(0, 6) as OnnxNode[], ['a', 'b', 'm', 's']), new Set(['a', 'b', 'm', 's']))).toBeUndefined();
  });

  it('changes nothing in a graph without blocked tensors, or with nodes out of order', () => {
    expect(exportBlockedActivations(graph([node('Relu', ['x'], ['r'])], ['r']), new Set(['r']))).toBeUndefined();
    const outOfOrder = graph([node('Clip', ['a', 'lo', 'hi'], ['b']), node('Conv', ['x', 'w'], ['a_blk'], NCHWC), reorderOut('a_blk', 'a', 32)], ['a', 'b']);
    expect(exportBlockedActivations(outOfOrder, new Set(['a', 'b']))).toBeUndefined();
  });
});

describe.runIf(process.arch === 'x64')('statistics with activations exported blocked (native collector)', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-nchwc-test-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  for (const [label, file, dims, blocked] of [
    ['MobileNetV2', MOBILENET, [2, 3, 224, 224], 60],
    ['PP-OCRv4 det', PPOCR, [1, 3, 96, 128], 224],
  ] as const) {
    it(`${label}: ${blocked} activations exported blocked, the same statistics as all reordered to NCHW, no file left behind`, async () => {
      const model = await loadOnnxModel(file);
      const activations = listActivations(model);
      const inputName = model.graph.input[0]!.name;
      const data = new Float32Array(dims.reduce((a, b) => a * b)).map((_, i) => Math.sin(i * 0.37) * 2 + ((i * 7919) % 13) / 13);
      const run = async (nchwc: boolean) => {
        const saved = { nchwc: process.env.TRT_CALIB_NCHWC, tmp: process.env.TMPDIR };
        process.env.TMPDIR = tmp;
        if (!nchwc) process.env.TRT_CALIB_NCHWC = '0';
        const pass = new NativeStatistics({ modelFile: file, model, inputName, plan: planCollection(model, activations), activations, threads: 1 });
        try {
          await pass.start();
          await pass.add([...dims], data);
          await pass.add([...dims], data.map((v) => -v * 3));
          return { stats: await pass.finish(), blocked: pass.blockedExports };
        } finally {
          await pass.close();
          process.env.TMPDIR = saved.tmp;
          if (saved.nchwc === undefined) delete process.env.TRT_CALIB_NCHWC;
          else process.env.TRT_CALIB_NCHWC = saved.nchwc;
        }
      };
      const blockedRun = await run(true);
      const nchwRun = await run(false);
      expect(blockedRun.blocked).toBe(blocked);
      expect(nchwRun.blocked).toBe(0);
      expect(blockedRun.stats.length).toBe(activations.length);
      expect(blockedRun.stats.some((s) => s.count > 0 && s.absMax > 0)).toBe(true);
      expect(blockedRun.stats).toEqual(nchwRun.stats);
      expect((await readdir(tmp)).filter((f) => f.startsWith('trt-calib'))).toEqual([]);
    });
  }
});
