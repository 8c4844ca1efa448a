/**
 * Clip/Relu/Pad outputs counted from their inputs' values (src/backends/collection-plan.ts) instead of being exported:
 * which tensors qualify, and that the statistics are the same bytes as exporting every activation.
 */
import { readFile, mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrate } from '../../src/app/calibrate.js';
import { StatisticsCollector } from '../../src/stats/collector.js';
import { padZeros, planCollection } from '../../src/backends/collection-plan.js';
import { listActivations } from '../../src/onnx/graph.js';
import { makeConstantNode, makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { ELEM, loadOnnxModel, makeTensor } from '../../src/onnx/model.js';

const ROOT = path.resolve(__dirname, '../..');
const MOBILENET = path.join(ROOT, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');
const PPOCR = path.join(ROOT, 'test/fixtures/models/ppocr_v4_det.onnx');
const IMAGES = path.join(ROOT, 'test/fixtures/images');

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-derive-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('planCollection', () => {
  it('derives constant-bound Clip, Relu and zero constant Pad (also of a derived Clip); exports the rest', () => {
    const f = ELEM.FLOAT;
    const model = makeModel({
      opset: 13,
      inputs: [makeValueInfo('x', f, [1, 2, 3, 3])],
      outputs: [makeValueInfo('out', f, null)],
      nodes: [
        makeConstantNode('lo', makeTensor('float32', [], [0])),
        makeConstantNode('hi', makeTensor('float32', [], [6])),
        makeConstantNode('pads', makeTensor('int64', [8], [0n, 0n, 1n, 1n, 0n, 0n, 1n, 1n])),
        makeConstantNode('reflect_pads', makeTensor('int64', [8], [0n, 0n, 1n, 1n, 0n, 0n, 1n, 1n])),
        makeNode('Clip', ['x', 'lo', 'hi'], ['clipped']),
        makeNode('Pad', ['clipped', 'pads'], ['padded']),
        makeNode('Relu', ['x'], ['relu']),
        makeNode('Pad', ['relu', 'reflect_pads'], ['reflected'], { attributes: { mode: { string: 'reflect' } } }),
        makeNode('Clip', ['x', 'x'], ['dynamic']), // bound from data: not a constant
        makeNode('Add', ['padded', 'reflected'], ['out']),
      ],
    });
    const plan = planCollection(model, listActivations(model));
    expect(plan.derived).toEqual([
      { name: 'clipped', root: 'x', clamp: { lo: 0, hi: 6 } },
      { name: 'padded', root: 'x', clamp: { lo: 0, hi: 6 }, pads: [0, 0, 1, 1, 0, 0, 1, 1] },
      { name: 'relu', root: 'x', clamp: { lo: 0, hi: Infinity } },
    ]);
    expect(plan.exported.sort()).toEqual(['dynamic', 'out', 'reflected', 'x']);
    expect(planCollection(model, listActivations(model), { derive: false }).derived).toEqual([]);
  });

  it('counts the zeros a Pad adds: (3+2)x(3+2) - 3x3 = 16 per channel', () => {
    expect(padZeros([1, 2, 3, 3], [0, 0, 1, 1, 0, 0, 1, 1])).toBe(2 * 16);
  });

  it('clamped counting equals counting the clamped values, and addZeros equals counting zeros', async () => {
    const data = Float32Array.from({ length: 70000 }, (_, i) => Math.sin(i) * 9 - 1); // async path: > 65536 values
    const a = new StatisticsCollector();
    await a.add('t', data, { lo: 0, hi: 6 });
    await a.addZeros('t', 123);
    const b = new StatisticsCollector();
    const clamped = data.map((v) => Math.min(Math.max(v, 0), 6));
    await b.add('t', Float32Array.from([...clamped, ...new Array(123).fill(0)]));
    expect(a.result()).toEqual(b.result());
  });
});

describe('derived statistics are the same bytes as exported ones', () => {
  for (const [label, model, pre] of [
    ['MobileNetV2 (42 Clip/Pad/Relu outputs derived)', MOBILENET, { preset: 'raw01' }],
    ['PP-OCRv4 det', PPOCR, { preset: 'paddleocr-det', shapes: 'x:1x3x96x128' }],
  ] as const) {
    it(label, async () => {
      const files: Record<string, Record<string, Buffer>> = {};
      for (const derive of [true, false]) {
        const dir = path.join(tmp, `${path.basename(model)}-${derive}`);
        await calibrate({ model, data: { data: IMAGES, preprocess: pre, maxImages: 4 }, algorithms: ['entropy2', 'minmax'], trtVersion: '10.3.0', outDir: dir, deriveStatistics: derive });
        files[String(derive)] = Object.fromEntries(await Promise.all((await readdir(dir)).map(async (f) => [f, await readFile(path.join(dir, f))] as const)));
      }
      expect(Object.keys(files.true!).sort()).toEqual(Object.keys(files.false!).sort());
      for (const f of Object.keys(files.true!)) expect(files.true![f]!.equals(files.false![f]!), f).toBe(true);
      const m = await loadOnnxModel(model);
      expect(planCollection(m, listActivations(m)).derived.length).toBeGreaterThan(10);
    });
  }
});
