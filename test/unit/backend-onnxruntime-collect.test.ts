/**
 * Statistics counted next to onnxruntime's C API (src/backends/onnxruntime-collect.ts, native/src/ort/collector.cc):
 * the same bytes as the onnxruntime-node worker path, and clear failures.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { removeOnnxruntimeDebugLog } from '../../src/backends/onnxruntime-debug-log.js';
import { calibrate } from '../../src/app/calibrate.js';
import { nativeSessionConfig, onnxruntimeLibraryPath } from '../../src/backends/onnxruntime.js';
import { loadNative } from '../../src/native.js';
import { exposeTensors } from '../../src/onnx/expose.js';
import { listActivations } from '../../src/onnx/graph.js';
import { loadOnnxModel, saveOnnxModel } from '../../src/onnx/model.js';
import { planCollection } from '../../src/backends/collection-plan.js';
import { nativeCollectionUnsupported, withCountingNodes } from '../../src/backends/onnxruntime-collect.js';
import { silentReporter } from '../../src/reporter.js';

// onnxruntime's empty mat-debug-<pid>.log (src/backends/onnxruntime-debug-log.ts): the OrtCollector binding test opens sessions through the native library directly.
afterAll(removeOnnxruntimeDebugLog);

const ROOT = path.resolve(__dirname, '../..');
const MOBILENET = path.join(ROOT, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');
const PPOCR = path.join(ROOT, 'test/fixtures/models/ppocr_v4_det.onnx');
const SSD = path.join(ROOT, 'test/fixtures/models/ssdlite_mobilenet_v2_coco_300.onnx');
const IMAGES = path.join(ROOT, 'test/fixtures/images');
const STREET = path.join(ROOT, 'test/fixtures/street');

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-native-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
afterEach(() => {
  delete process.env.TRT_CALIB_COLLECTOR;
  delete process.env.TRT_CALIB_COUNT;
});

/** Every file a calibration wrote, by name. */
async function outputs(dir: string): Promise<Record<string, Buffer>> {
  return Object.fromEntries(await Promise.all((await readdir(dir)).map(async (f) => [f, await readFile(path.join(dir, f))] as const)));
}

describe('native statistics collection', () => {
  it('is available here: onnxruntime-node ships its library for this platform', async () => {
    expect(onnxruntimeLibraryPath()).toMatch(/onnxruntime/);
    const m = await loadOnnxModel(MOBILENET);
    const activations = listActivations(m);
    expect(nativeCollectionUnsupported({ model: m, inputName: 'input', plan: planCollection(m, activations), activations })).toBeUndefined();
  });

  for (const [label, model, pre, batch] of [
    ['MobileNetV2 (Clip, and Pad after Clip, counted from Conv outputs), batch 2', MOBILENET, { preset: 'raw01' }, 2],
    ['PP-OCRv4 det', PPOCR, { preset: 'paddleocr-det', shapes: 'x:1x3x96x128' }, undefined],
  ] as const) {
    it(`gives the same statistics and caches, byte for byte, as the onnxruntime-node path: ${label}`, async () => {
      const files: Record<string, Record<string, Buffer>> = {};
      for (const collector of ['native', 'worker']) {
        process.env.TRT_CALIB_COLLECTOR = collector;
        const dir = path.join(tmp, `${path.basename(model)}-${collector}`);
        await calibrate({ model, data: { data: IMAGES, preprocess: pre, maxImages: 5, ...(batch ? { batch } : {}) }, algorithms: ['entropy2', 'minmax', 'mse'], trtVersion: '10.3.0', outDir: dir });
        files[collector] = Object.fromEntries(await Promise.all((await readdir(dir)).map(async (f) => [f, await readFile(path.join(dir, f))] as const)));
      }
      expect(Object.keys(files.native!).sort()).toEqual(Object.keys(files.worker!).sort());
      expect(Object.keys(files.native!).some((f) => f.endsWith('.stats.msgpack'))).toBe(true);
      for (const f of Object.keys(files.native!)) expect(files.native![f]!.equals(files.worker![f]!), f).toBe(true);
    });
  }
});

describe('counting in the graph (the default) and from the outputs', () => {
  // PP-OCR at 192x256 has tensors of 16 x 96 x 128 values, which the counting nodes split over onnxruntime's thread
  // and a helper on 2 cores or more; the SSD has Relu6 counted from its convolutions and a fixed batch of 1.
  for (const [label, model, data, pre] of [
    ['PP-OCRv4 det at 192x256', PPOCR, STREET, { preset: 'paddleocr-det', shapes: 'x:1x3x192x256' }],
    ['SSDLite-MobileNetV2', SSD, STREET, { preset: 'inception' }],
    ['MobileNetV2', MOBILENET, IMAGES, { preset: 'raw01' }],
  ] as const) {
    it(`give the same statistics and caches, byte for byte: ${label}`, async () => {
      const files: Record<string, Record<string, Buffer>> = {};
      const via: Record<string, string[]> = {};
      for (const mode of ['graph', 'outputs']) {
        process.env.TRT_CALIB_COUNT = mode;
        const dir = path.join(tmp, `${path.basename(model)}-count-${mode}`);
        via[mode] = [];
        await calibrate({
          model,
          data: { data, preprocess: pre, maxImages: 3 },
          algorithms: ['entropy2', 'minmax', 'percentile'],
          trtVersion: '10.3.0',
          outDir: dir,
          reporter: { ...silentReporter, info: (m: string) => via[mode]!.push(m) },
        });
        files[mode] = await outputs(dir);
      }
      expect(via.graph!.join('\n')).toMatch(/counted in the graph/);
      expect(via.outputs!.join('\n')).toMatch(/counted from its outputs/);
      expect(Object.keys(files.graph!).sort()).toEqual(Object.keys(files.outputs!).sort());
      expect(Object.keys(files.graph!).some((f) => f.endsWith('.stats.msgpack'))).toBe(true);
      for (const f of Object.keys(files.graph!)) expect(files.graph![f]!.equals(files.outputs![f]!), f).toBe(true);
    });
  }
});

describe('withCountingNodes', () => {
  it('chains one counting node per exported tensor in the order the tensors are produced, with one graph output', async () => {
    const m = await loadOnnxModel(PPOCR);
    const plan = planCollection(m, listActivations(m));
    const counted = plan.exported.filter((n) => n !== 'x');
    const exposed = exposeTensors(m, counted);
    const r = withCountingNodes(exposed, counted)!;
    const nodes = r.model.graph!.node!;
    const counting = nodes.filter((n) => n.domain === 'trtcalib');
    expect(counting).toHaveLength(counted.length);
    // Listed after the model's nodes, each taking the previous one's output: onnxruntime then runs each right after
    // its tensor's producer (collector.cc); as independent leaves they ran last, all activations alive to the end.
    expect(nodes.slice(nodes.length - counted.length).every((n) => n.domain === 'trtcalib')).toBe(true);
    counting.forEach((n, k) => expect(n.input.slice(1)).toEqual(k === 0 ? [] : [counting[k - 1]!.output[0]]));
    const producedAt = new Map(nodes.flatMap((n, k) => n.output.map((o) => [o, k] as const)));
    const at = counting.map((n) => producedAt.get(n.input[0]!) ?? -1);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    // Every slot once; the model's own output is counted, so the last counting node's is the only graph output.
    expect(counting.map((n) => Number(n.attribute![0]!.i)).sort((a, b) => a - b)).toEqual(counted.map((_, i) => i));
    expect(r.model.graph!.output!.map((o) => o.name)).toEqual([r.countOutput]);
    expect(withCountingNodes(exposed, [...counted, 'no-such-tensor'])).toBeUndefined();
  });
});

describe('native statistics collection in a library process', () => {
  it('runs two calibrations at once (each its own session and counting thread) with the bytes of one alone', async () => {
    const run = (dir: string) =>
      calibrate({ model: MOBILENET, data: { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 4 }, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: path.join(tmp, dir) });
    await run('alone');
    await Promise.all([run('twin-a'), run('twin-b')]);
    const alone = await readFile(path.join(tmp, 'alone', 'mobilenet_v2_nsfw_224.stats.msgpack'));
    for (const dir of ['twin-a', 'twin-b']) expect((await readFile(path.join(tmp, dir, 'mobilenet_v2_nsfw_224.stats.msgpack'))).equals(alone)).toBe(true);
  });

  it('stops on an abort signal, writes nothing, and the next calibration works', async () => {
    const controller = new AbortController();
    const dir = path.join(tmp, 'aborted');
    const pending = calibrate({
      model: MOBILENET,
      data: { data: IMAGES, preprocess: { preset: 'raw01' } },
      algorithms: ['minmax'],
      trtVersion: '10.3.0',
      outDir: dir,
      signal: controller.signal,
      reporter: { ...silentReporter, update: () => controller.abort() }, // abort once the first image is in
    });
    await expect(pending).rejects.toThrow(/abort/i);
    expect(await readdir(dir).catch(() => [])).toEqual([]);
    const r = await calibrate({ model: MOBILENET, data: { data: IMAGES, preprocess: { preset: 'raw01' }, maxImages: 2 }, algorithms: ['minmax'], trtVersion: '10.3.0', outDir: path.join(tmp, 'after-abort') });
    expect(r.images.used).toBe(2);
  });
});

describe('OrtCollector (binding)', () => {
  const native = loadNative();
  const config = (outputs: { name: string; targets: { state: number }[] }[], states: number) => ({
    ...nativeSessionConfig({ threads: 1 }),
    inputName: 'input',
    bins: 8192,
    states,
    inputTargets: [],
    outputs,
  });

  it('reports a library that cannot be loaded as a library error, before any model work', async () => {
    const c = new native.OrtCollector(path.join(tmp, 'no-such-libonnxruntime.so'), new Uint8Array(10), config([], 0));
    await expect(c.open()).rejects.toThrow(/^onnxruntime library: /);
    c.close();
  });

  it('runs and counts, reports onnxruntime errors, and frees what was not counted', async () => {
    const m = await loadOnnxModel(MOBILENET);
    const bytes = saveOnnxModel(exposeTensors(m, ['bn_Conv1']));
    const c = new native.OrtCollector(onnxruntimeLibraryPath()!, bytes, config([{ name: 'bn_Conv1', targets: [{ state: 0 }] }], 1));
    expect(await c.open()).toMatch(/^1\.\d+\.\d+/);
    const x = new Float32Array(3 * 224 * 224).fill(0.5);
    await c.infer(x, [1, 3, 224, 224]);
    await c.drain();
    const { headers, hists } = c.result();
    // bn_Conv1 of one 224x224 image: 32 channels of 112x112, all finite.
    expect(headers[0]).toBe(32 * 112 * 112);
    expect(hists.reduce((s, v) => s + v, 0)).toBe(32 * 112 * 112);
    await expect(c.infer(new Float32Array(3 * 100 * 100), [1, 3, 100, 100])).rejects.toThrow(/input|dimension|shape/i);
    const running = c.infer(x, [1, 3, 224, 224]);
    expect(() => c.infer(x, [1, 3, 224, 224])).toThrow(/in flight/); // one run at a time
    await running; // possibly not counted yet: close() stops counting and frees it
    c.close();
    expect(() => c.infer(x, [1, 3, 224, 224])).toThrow(/after close/);
  });
});
