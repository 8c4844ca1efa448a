/**
 * quantize --high-precision fp16 through the built CLI: a model whose activation exceeds FP16's range keeps that
 * part in FP32 and says so; --io fp16; the errors a user can make (no statistics from a cache, --io without fp16).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { checkModel } from '../../src/onnx/check.js';
import { ELEM, graphOf, loadOnnxModel, makeTensor, tensorToProto, writeOnnxModel } from '../../src/onnx/model.js';
import { assertBuilt, IMAGES, runCli } from './cli.js';

let tmp: string;
let modelFile: string;
beforeAll(async () => {
  assertBuilt();
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-hp-e2e-'));
  modelFile = path.join(tmp, 'overflow.onnx');
  // x in [0, 1] -> Conv (weights 1, bias 2): a in [2, 5] -> Mul 20000: big in [40000, 100000], beyond FP16's safe
  // range (and its 65504) -> Conv (weights 1e-4): small in [16, 40] -> Relu -> y.
  const w1 = tensorToProto('w1', makeTensor('float32', [4, 3, 1, 1], new Float32Array(12).fill(1)));
  const b1 = tensorToProto('b1', makeTensor('float32', [4], new Float32Array(4).fill(2)));
  const k = tensorToProto('k', makeTensor('float32', [], [20000]));
  const w2 = tensorToProto('w2', makeTensor('float32', [2, 4, 1, 1], new Float32Array(8).fill(1e-4)));
  const model = makeModel({
    nodes: [
      makeNode('Conv', ['input', 'w1', 'b1'], ['a'], { name: 'conv1' }),
      makeNode('Mul', ['a', 'k'], ['big'], { name: 'scale_up' }),
      makeNode('Conv', ['big', 'w2'], ['small'], { name: 'conv2' }),
      makeNode('Relu', ['small'], ['y'], { name: 'relu' }),
    ],
    inputs: [makeValueInfo('input', ELEM.FLOAT, ['N', 3, 16, 16])],
    outputs: [makeValueInfo('y', ELEM.FLOAT, ['N', 2, 16, 16])],
    initializers: [w1, b1, k, w2],
  });
  await writeOnnxModel(modelFile, model);
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const DATA = ['--data', IMAGES, '--preset', 'raw01', '--size', '16'];

describe('quantize --high-precision fp16', () => {
  it('keeps the activation beyond FP16 range and the layers touching it in FP32, names them, and runs', async () => {
    const out = path.join(tmp, 'overflow.int8-fp16.onnx');
    const r = await runCli(['quantize', '--model', modelFile, ...DATA, '--high-precision', 'fp16', '--out-dir', tmp, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.highPrecision).toBe('fp16');
    const kept = result.keptFp32.tensors as Array<{ tensor: string; reason: string }>;
    expect(kept.map((t) => t.tensor)).toEqual(['big']);
    expect(kept[0]!.reason).toMatch(/max \|x\| .* at or above 32768/);
    // conv2 stays INT8 (its Q/DQ on 'big' keeps float32 scales) and writes float32; the Mul is the FP32 layer.
    expect((result.keptFp32.layers as Array<{ layer: string }>).map((l) => l.layer)).toEqual(['scale_up']);
    expect(result.layersByType).toEqual({ INT8: { Conv: 2 }, FP16: { Relu: 1 }, FP32: { Mul: 1 } });

    const model = await loadOnnxModel(out);
    expect(checkModel(model)).toEqual([]);
    const g = graphOf(model);
    // The Mul reads and writes float32; conv1's INT8 output is float32 for it (its DQ and Q scales stay float32 too).
    const inits = new Map(g.initializer.map((t) => [t.name, t]));
    const mul = g.node.find((n) => n.name === 'scale_up')!;
    expect(inits.get(mul.input[1]!)!.dataType).toBe(ELEM.FLOAT);
    const qBig = g.node.find((n) => n.opType === 'QuantizeLinear' && n.input[0] === 'big')!;
    expect(inits.get(qBig.input[1]!)!.dataType).toBe(ELEM.FLOAT);
    const qInput = g.node.find((n) => n.opType === 'QuantizeLinear' && n.input[0] !== 'big')!;
    expect(inits.get(qInput.input[1]!)!.dataType).toBe(ELEM.FLOAT16); // conv1's input: float16 Q/DQ
    const relu = g.node.find((n) => n.name === 'relu')!;
    expect(relu.input[0]).not.toBe('small'); // reads a float16 copy of conv2's float32 output

    // The text summary says it too.
    const text = await runCli(['quantize', '--model', modelFile, ...DATA, '--high-precision', 'fp16', '--out-dir', tmp, '--out', out]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/1 tensor\(s\) kept in FP32:\n\s+big: max \|x\|/);

    // onnxruntime runs it; the output is finite (y in [16, 40]).
    const x = { dtype: 'float32' as const, dims: [1, 3, 16, 16], data: new Float32Array(768).map((_, i) => (i % 17) / 16) };
    const run = async (file: string) => {
      const s = await onnxruntimeBackend.open({ path: file }, { threads: 1 });
      try {
        return (await s.run({ input: x })).y!.data as Float32Array;
      } finally {
        await s.release();
      }
    };
    // Against the INT8 model with the same scales and the rest in FP32: FP16 noise only (big never overflows).
    const int8 = path.join(tmp, 'overflow.int8.onnx');
    const q8 = await runCli(['quantize', '--model', modelFile, ...DATA, '--out-dir', tmp, '--out', int8]);
    expect(q8.code, q8.stderr).toBe(0);
    const [y8, y] = [await run(int8), await run(out)];
    for (let i = 0; i < y.length; i++) {
      expect(Number.isFinite(y[i]!)).toBe(true);
      expect(Math.abs(y[i]! - y8[i]!)).toBeLessThan(0.01 * Math.abs(y8[i]!) + 0.05);
    }
  }, 120_000);

  it('writes the same bytes whatever the batch size and thread count', async () => {
    const one = path.join(tmp, 'b1.onnx');
    const four = path.join(tmp, 'b4.onnx');
    const a = await runCli(['quantize', '--model', modelFile, ...DATA, '--high-precision', 'fp16', '--out-dir', path.join(tmp, 'b1'), '--out', one, '--batch', '1', '--threads', '1']);
    const b = await runCli(['quantize', '--model', modelFile, ...DATA, '--high-precision', 'fp16', '--out-dir', path.join(tmp, 'b4'), '--out', four, '--batch', '4', '--threads', '2']);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(Buffer.compare(await readFile(one), await readFile(four))).toBe(0);
  }, 120_000);

  it('--io fp16 makes the graph input and output float16', async () => {
    const out = path.join(tmp, 'overflow.io16.onnx');
    const r = await runCli(['quantize', '--model', modelFile, ...DATA, '--high-precision', 'fp16', '--io', 'fp16', '--out-dir', tmp, '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const g = graphOf(await loadOnnxModel(out));
    expect(g.input[0]!.type!.tensorType!.elemType).toBe(ELEM.FLOAT16);
    expect(g.output[0]!.type!.tensorType!.elemType).toBe(ELEM.FLOAT16);
  }, 120_000);

  it('refuses --io fp16 without --high-precision fp16, and fp16 from a cache without statistics, writing nothing', async () => {
    const out = path.join(tmp, 'never.onnx');
    const io = await runCli(['quantize', '--model', modelFile, ...DATA, '--io', 'fp16', '--out', out]);
    expect(io.code).toBe(1);
    expect(io.stderr).toMatch(/--io fp16 goes with --high-precision fp16/);
    expect(io.stderr).not.toMatch(/\n\s+at /);

    const cacheDir = path.join(tmp, 'caches');
    const cal = await runCli(['calibrate', '--model', modelFile, ...DATA, '--algo', 'minmax', '--out-dir', cacheDir, '--trt-version', '10.3.0']);
    expect(cal.code, cal.stderr).toBe(0);
    const cache = path.join(cacheDir, 'overflow.minmax.cache');
    expect(existsSync(cache)).toBe(true);
    const missing = path.join(tmp, 'no-such.stats.msgpack');
    const r = await runCli(['quantize', '--model', modelFile, '--cache', cache, '--stats', missing, '--high-precision', 'fp16', '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--high-precision fp16 needs the activation statistics/);
    expect(r.stderr).toContain('no-such.stats.msgpack');
    expect(existsSync(out)).toBe(false);
    const noCache = await runCli(['compare', '--model', modelFile, ...DATA, '--precisions', 'fp32,fp16', '--high-precision', 'fp16', '--out-dir', cacheDir]);
    expect(noCache.code).toBe(1);
    expect(noCache.stderr).toMatch(/--high-precision fp16 builds the INT8 \+ FP16 model from a cache's scales: pass --cache/);
    // With the statistics calibrate wrote, the same command works and keeps 'big' in FP32.
    const ok = await runCli(['quantize', '--model', modelFile, '--cache', cache, '--stats', path.join(cacheDir, 'overflow.stats.msgpack'), '--high-precision', 'fp16', '--out', out, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).keptFp32.tensors.map((t: { tensor: string }) => t.tensor)).toEqual(['big']);
  }, 120_000);
});

describe('compare and the INT8 + FP16 model', () => {
  const MOBILENET = path.join(IMAGES, '../models/mobilenet_v2_nsfw_224.onnx');
  /** MobileNetV2's minmax cache and statistics on the 8 photos, calibrated once for the tests below. */
  let calibrated: Promise<{ dir: string; cache: string; stats: string }> | undefined;
  const calibration = () =>
    (calibrated ??= (async () => {
      const dir = path.join(tmp, 'mbv2');
      const cal = await runCli(['calibrate', '--model', MOBILENET, '--data', IMAGES, '--preset', 'raw01', '--algo', 'minmax', '--out-dir', dir, '--trt-version', '10.3.0']);
      expect(cal.code, cal.stderr).toBe(0);
      return { dir, cache: path.join(dir, 'mobilenet_v2_nsfw_224.minmax.cache'), stats: path.join(dir, 'mobilenet_v2_nsfw_224.stats.msgpack') };
    })());

  it('compare --high-precision fp16 adds int8+fp16-<algo>; --variant-model measures the model quantize wrote', async () => {
    const { dir, cache, stats } = await calibration();
    const common = ['--data', IMAGES, '--preset', 'raw01', '--out-dir', dir, '--no-layers', '--json'];
    const r = await runCli(['compare', '--model', MOBILENET, ...common, '--precisions', 'fp32,int8', '--cache', cache, '--stats', stats, '--placement', 'explicit', '--high-precision', 'fp16', '--report-dir', path.join(dir, 'r1')]);
    expect(r.code, r.stderr).toBe(0);
    const variants = JSON.parse(r.stdout).variants as Array<{ name: string; precision: string; agreement: number; cosineMean: number }>;
    const int8 = variants.find((v) => v.name === 'int8-minmax')!;
    const mixed = variants.find((v) => v.name === 'int8+fp16-minmax')!;
    expect(mixed.precision).toBe('int8');
    // Within FP16 noise of INT8: at most one image of the eight changes its top-1, cosine within 0.01. Measured:
    // agreement 0.875 / 0.75 / 0.875 (INT8 / INT8 + FP16 in compare / the written model), cosine 0.9946 / 0.9960 / 0.9962.
    expect(Math.abs(mixed.agreement - int8.agreement)).toBeLessThanOrEqual(1 / 8 + 1e-9);
    expect(Math.abs(mixed.cosineMean - int8.cosineMean)).toBeLessThan(0.01);

    const model = path.join(dir, 'm.int8-fp16.onnx');
    const q = await runCli(['quantize', '--model', MOBILENET, '--cache', cache, '--stats', stats, '--high-precision', 'fp16', '--out', model, '--json']);
    expect(q.code, q.stderr).toBe(0);
    const fromFile = await runCli(['compare', '--model', MOBILENET, ...common, '--precisions', 'fp32', '--variant-model', model, '--report-dir', path.join(dir, 'r2')]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    const written = (JSON.parse(fromFile.stdout).variants as typeof variants).find((v) => v.name === 'm.int8-fp16')!;
    expect(written.precision).toBe('int8');
    expect(Math.abs(written.agreement - int8.agreement)).toBeLessThanOrEqual(1 / 8 + 1e-9);
  }, 240_000);

  it('--mixed auto --high-precision fp16 measures every candidate as the INT8 + FP16 model it writes (quantize and compare)', async () => {
    const { dir, cache, stats } = await calibration();
    const data = ['--data', IMAGES, '--preset', 'raw01', '--max-images', '4', '--threads', '2'];
    const out = path.join(dir, 'm.mixed-fp16.onnx');
    const mapFile = path.join(dir, 'm.precision.json');
    const q = await runCli(['quantize', '--model', MOBILENET, ...data, '--cache', cache, '--stats', stats, '--mixed', 'auto', '--max-drop', '0', '--high-precision', 'fp16', '--precision-out', mapFile, '--out', out, '--json']);
    expect(q.code, q.stderr).toBe(0);
    const result = JSON.parse(q.stdout);
    expect(result.mixed.met).toBe(true);
    expect(result.mixed.highPrecision).toBe('fp16');
    // The written model: INT8 + FP16, FP32 only for the protected Softmax.
    expect(Object.keys(result.layersByType.FP32 ?? {})).toEqual(['Softmax']);
    expect(result.layersByType.FP16.Clip).toBeGreaterThan(30);
    expect(checkModel(await loadOnnxModel(out))).toEqual([]);

    // The search's number is the INT8 + FP16 model's (float16 rounding emulated on the CPU), not the FP32-rest one's.
    const { prepareSensitivity } = await import('../../src/sensitivity/analyze.js');
    const { defaultMixedEvaluator } = await import('../../src/sensitivity/mixed.js');
    const { parsePrecisionMap } = await import('../../src/precision/map.js');
    const { highPrecisionOptions, statisticsForFp16 } = await import('../../src/app/high-precision.js');
    const { modelSha256 } = await import('../../src/onnx/model.js');
    const ctx = await prepareSensitivity({ model: MOBILENET, cache, data: { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 4 }, threads: 2 });
    const map = parsePrecisionMap(await readFile(mapFile, 'utf8'), mapFile);
    const statistics = await statisticsForFp16(stats, await modelSha256(MOBILENET), MOBILENET);
    const protectedTensors = result.protected;
    const hp = { ...highPrecisionOptions(statistics, protectedTensors), emulateOnCpu: true };
    const as16 = await defaultMixedEvaluator(ctx.model, ctx.scales, ctx.data, { threads: 2, file: MOBILENET, highPrecision: hp })(map);
    const as32 = await defaultMixedEvaluator(ctx.model, ctx.scales, ctx.data, { threads: 2, file: MOBILENET })(map);
    expect(result.mixed.meanCosine).toBe(as16.score.cosineMean);
    expect(result.mixed.agreement).toBe(as16.score.value);
    expect(Math.abs(as32.score.cosineMean - as16.score.cosineMean)).toBeGreaterThan(1e-6);

    // compare: the chosen map is reported with the rest in FP16 (what was searched) and in FP32; compare's own pass
    // over the same images gives the search's agreement for the INT8 + FP16 one.
    const c = await runCli(['compare', '--model', MOBILENET, ...data, '--out-dir', dir, '--no-layers', '--json', '--precisions', 'fp32,int8', '--cache', cache, '--stats', stats, '--placement', 'explicit', '--high-precision', 'fp16', '--mixed', 'auto', '--max-drop', '0', '--precision-out', path.join(dir, 'c.precision.json'), '--report-dir', path.join(dir, 'rc')]);
    expect(c.code, c.stderr).toBe(0);
    const report = JSON.parse(c.stdout);
    expect(report.tradeoff.rest).toBe('fp16');
    expect(c.stderr + c.stdout).not.toMatch(/internal error/);
    const names = (report.variants as Array<{ name: string }>).map((v) => v.name);
    expect(names).toEqual(expect.arrayContaining(['int8-minmax', 'int8+fp16-minmax', 'int8-minmax-mixed', 'int8+fp16-minmax-mixed']));
    const searched = (report.variants as Array<{ name: string; agreement: number }>).find((v) => v.name === 'int8+fp16-minmax-mixed')!;
    expect(searched.agreement).toBe(report.tradeoff.points[report.tradeoff.chosen].value);
  }, 300_000);
});
