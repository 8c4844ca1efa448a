/**
 * buildEngine() and the TensorRT backend, end to end in TypeScript, with a stand-in for the TensorRT bridge whose
 * buildEngine drives the callbacks through the real native feeder (feederSelfTest: a native thread calling
 * readCalibrationCache, getBatch until false, writeCalibrationCache, as TensorRT does). What is checked is ours: which
 * options reach TensorRT, the images fed, the cache files, the engine file, the errors a user sees. Only TensorRT's
 * own work (parsing, kernels) is stood in for.
 */
import { existsSync, promises as fsp } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEngine, tensorrtBackend, type EngineBuildOptions } from '../../src/backends/tensorrt.js';
import type { TensorRTBinding, TrtBuildOptions, TrtEngineHandle, TrtNetworkDesc } from '../../src/backends/tensorrt-native.js';
import { formatCalibrationCache } from '../../src/cache/trt-cache.js';
import { createDataset } from '../../src/datasets/dataset.js';
import { resolvePreprocess } from '../../src/datasets/presets.js';
import type { Batch, Dataset } from '../../src/datasets/types.js';
import { UserError } from '../../src/errors.js';
import { loadNative } from '../../src/native.js';
import type { Reporter } from '../../src/reporter.js';
import { loadOnnxModel, writeOnnxModel } from '../../src/onnx/model.js';
import { listActivations } from '../../src/onnx/graph.js';
import { buildMixedPrecisionModel } from '../../src/precision/apply.js';

const native = loadNative();
const IMAGES = path.resolve(__dirname, '../fixtures/images');
const MODEL = path.resolve(__dirname, '../fixtures/models/mobilenet_v2_nsfw_224.onnx');
const TRT_CACHE = Buffer.from('TRT-100300-EntropyCalibration2\ninput: 3c010a14\n');

const NETWORK: TrtNetworkDesc = {
  inputs: [{ name: 'input', dtype: 'float32', dims: [-1, 3, 32, 32] }],
  outputs: [{ name: 'prob', dtype: 'float32', dims: [-1, 5] }],
  layers: [
    { name: '/conv/Conv', type: 'Convolution', onnxNode: '/conv/Conv', outputs: [] },
    { name: '/fc/Gemm', type: 'MatrixMultiply', onnxNode: '/fc/Gemm', outputs: [] },
    { name: '/fc/Gemm_1', type: 'ElementWise', onnxNode: '/fc/Gemm', outputs: [] },
  ],
  qdqLayers: 0,
  stronglyTyped: false,
};

interface Recorded {
  options?: TrtBuildOptions;
  cacheRead?: Buffer | null;
  batches?: number;
}

/** A stand-in bridge: TensorRT 10.3 (or 11.1), one network, and a build that feeds through the native feeder. */
function fakeBridge(rec: Recorded, opts: { version?: number; implicit?: boolean; network?: TrtNetworkDesc; rejectCache?: boolean } = {}): TensorRTBinding {
  const network = opts.network ?? NETWORK;
  return {
    feederSelfTest: native.feederSelfTest,
    tensorrtInfo: () => ({
      compiledAgainst: opts.implicit === false ? '11.1.0' : '10.3.0',
      libraryVersion: opts.version ?? 100300,
      implicitQuantization: opts.implicit ?? true,
      cudaRuntimeVersion: 12040,
      cudaDriverVersion: 12040,
      devices: [],
    }),
    inspectOnnx: () => ({ done: Promise.resolve(structuredClone(network)), cancel: () => {} }),
    buildEngine: (options, callbacks) => {
      rec.options = options;
      const c = options.calibration;
      if (!c) {
        return { done: Promise.resolve(result(network, 0)), cancel: () => {} };
      }
      const task = native.feederSelfTest(
        { input: c.input, dims: c.dims, reportedBatchSize: 1, cacheToWrite: TRT_CACHE, useCacheIfPresent: !opts.rejectCache },
        callbacks,
      );
      return {
        done: task.done.then((log) => {
          rec.cacheRead = log.cacheRead;
          rec.batches = log.batches.length;
          if (log.batchRequestedWithoutSource) {
            throw Object.assign(new Error('TensorRT did not use the calibration cache'), { code: 'ERR_TRT_CALIB_CACHE_REJECTED' });
          }
          return { ...result(network, log.batches.length), calibration: { used: true, batches: log.batches.length, cacheReads: log.cacheRead ? 1 : 0, cacheBytesRead: log.cacheRead?.length ?? 0, cacheWrites: log.cacheWrites, cacheBytesWritten: log.cacheBytesWritten } };
        }),
        cancel: task.cancel,
      };
    },
    loadEngine: async () => {
      throw new Error('not used here');
    },
  };
}

function result(network: TrtNetworkDesc, batches: number) {
  return {
    engine: Buffer.from(`ENGINE after ${batches} batches`),
    timingCache: Buffer.from('TIMING'),
    network,
    calibration: { used: false, batches, cacheReads: 0, cacheBytesRead: 0, cacheWrites: 0, cacheBytesWritten: 0 },
    seconds: 0.5,
    tensorrt: '10.3.0',
  };
}

function recordingReporter(): Reporter & { warnings: string[]; infos: string[] } {
  const warnings: string[] = [];
  const infos: string[] = [];
  return { warnings, infos, start() {}, update() {}, stop() {}, info: (m) => void infos.push(m), warn: (m) => void warnings.push(m) };
}

const imagesFor = (batchSize: number) => async (input: { name: string; dims: Array<number | string> }) =>
  createDataset({ data: IMAGES, preprocess: resolvePreprocess({ preset: 'raw01' }, input), batchSize, inputName: input.name });

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'trt-calib-build-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function options(extra: Partial<EngineBuildOptions>, rec: Recorded, bridge = fakeBridge(rec)): EngineBuildOptions {
  return { model: MODEL, out: path.join(tmp, 'm.engine'), bridge, ...extra };
}

describe('buildEngine with --data: TensorRT calibrates on the images', () => {
  it('feeds full batches of the dataset, writes TensorRT\'s cache and the engine, and says what was left out', { timeout: 30_000 }, async () => {
    const rec: Recorded = {};
    const reporter = recordingReporter();
    const out = path.join(tmp, 'data', 'm.engine');
    const cacheOut = path.join(tmp, 'data', 'calib', 'm.tensorrt-minmax.cache');
    const r = await buildEngine(options({ out, int8: true, calibrationData: imagesFor(3), algorithm: 'minmax', cacheOut, reporter, timingCache: path.join(tmp, 'data', 't.timing') }, rec));

    // 8 photos in batches of 3 at 32x32 (the model input's size): 2 batches fed, 2 images left out.
    expect(rec.options!.calibration).toEqual({ input: 'input', dims: [3, 3, 32, 32], algorithm: 'minmax' });
    expect(rec.options!.profile).toEqual([{ input: 'input', min: [3, 3, 32, 32], opt: [3, 3, 32, 32], max: [3, 3, 32, 32] }]);
    expect(rec.options).toMatchObject({ int8: true, fp16: false, layerPrecisions: [], precisionConstraints: 'obey' });
    expect(rec.batches).toBe(2);
    expect(r.calibration).toEqual({ mode: 'calibrated', algorithm: 'minmax', batches: 2, images: 6, droppedImages: 2, batchDims: [3, 3, 32, 32], cacheOut, cacheTensors: 1 });
    expect(reporter.warnings.some((w) => /the last 2 image\(s\) were not used: TensorRT calibrates on full batches of 3 \(choose a --batch that divides 8/.test(w))).toBe(true);
    expect(Buffer.compare(await readFile(cacheOut), TRT_CACHE)).toBe(0);
    expect((await readFile(out)).toString()).toBe('ENGINE after 2 batches');
    expect(r.bytes).toBe('ENGINE after 2 batches'.length);
    expect((await readFile(path.join(tmp, 'data', 't.timing'))).toString()).toBe('TIMING');
    // Written atomically: no temporary file is left beside the outputs.
    expect((await fsp.readdir(path.dirname(out))).sort()).toEqual(['calib', 'm.engine', 't.timing']);
  });

  it('an error from the images aborts the build with that error, and no engine is written', { timeout: 30_000 }, async () => {
    const broken = new UserError('images/cat.jpg cannot be decoded: truncated');
    const base = await imagesFor(2)({ name: 'input', dims: ['?', 3, 32, 32] });
    const dataset: Dataset = {
      ...base,
      inputName: base.inputName,
      size: base.size,
      batchSize: base.batchSize,
      imageDims: base.imageDims,
      files: base.files,
      preprocess: base.preprocess,
      async *batches(): AsyncGenerator<Batch> {
        let i = 0;
        for await (const b of base.batches()) {
          if (++i === 3) throw broken;
          yield b;
        }
      },
    };
    const out = path.join(tmp, 'broken.engine');
    const rec: Recorded = {};
    await expect(buildEngine(options({ out, int8: true, calibrationData: async () => dataset }, rec))).rejects.toBe(broken);
    expect(existsSync(out)).toBe(false);
  });

  it('an abort signal cancels the build: a UserError, no engine', { timeout: 30_000 }, async () => {
    const controller = new AbortController();
    const base = await imagesFor(1)({ name: 'input', dims: ['?', 3, 32, 32] });
    const slow: Dataset = Object.assign(Object.create(null) as Dataset, {
      inputName: 'input', size: base.size, batchSize: 1, imageDims: base.imageDims, files: base.files, preprocess: base.preprocess,
      async *batches() {
        for await (const b of base.batches()) {
          if (b.index === 2) controller.abort();
          if (b.index === 2) await new Promise(() => {}); // a decode that never ends
          yield b;
        }
      },
    });
    const out = path.join(tmp, 'aborted.engine');
    const err = await buildEngine(options({ out, int8: true, calibrationData: async () => slow, signal: controller.signal }, {})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/the build was cancelled/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses fewer images than one batch, and images that do not fit the model input', { timeout: 30_000 }, async () => {
    await expect(buildEngine(options({ int8: true, calibrationData: imagesFor(16) }, {}))).rejects.toThrow(/Only 8 image\(s\) were found, fewer than one batch of 16/);
    const network = { ...NETWORK, inputs: [{ name: 'input', dtype: 'float32' as const, dims: [4, 3, 32, 32] }] };
    const wrongSize = async (input: { name: string }) =>
      createDataset({ data: IMAGES, preprocess: resolvePreprocess({ preset: 'raw01', size: 32 }), batchSize: 2, inputName: input.name });
    await expect(buildEngine(options({ int8: true, calibrationData: wrongSize }, {}, fakeBridge({}, { network })))).rejects.toThrow(
      /The images give batches of 2x3x32x32 but the input "input" is \[4, 3, 32, 32\]/,
    );
  });
});

describe('buildEngine with --cache: TensorRT reads our scales', () => {
  const cacheText = formatCalibrationCache({
    trtVersion: { major: 10, minor: 3, patch: 0 },
    algorithm: 'MinMaxCalibration',
    entries: [
      { name: 'input', scale: Math.fround(1 / 127) },
      { name: '/conv/Conv_output_0', scale: Math.fround(6.5 / 127) },
    ],
  });

  it('hands the cache file to TensorRT byte for byte, picks the calibrator of its header, asks for no images', { timeout: 30_000 }, async () => {
    const cache = path.join(tmp, 'm.minmax.cache');
    await writeFile(cache, cacheText);
    const rec: Recorded = {};
    const r = await buildEngine(options({ int8: true, cache, shapes: { fixed: 'input:8x3x32x32' } }, rec));
    expect(rec.options!.calibration).toEqual({ input: 'input', dims: [8, 3, 32, 32], algorithm: 'minmax' });
    expect(Buffer.compare(rec.cacheRead!, await readFile(cache))).toBe(0);
    expect(rec.batches).toBe(0);
    expect(r.calibration).toEqual({ mode: 'cache', cache, algorithm: 'MinMaxCalibration', entries: 2, bytes: Buffer.byteLength(cacheText) });
  });

  it('refuses a cache for another TensorRT version before building (TensorRT would silently recalibrate)', { timeout: 30_000 }, async () => {
    const cache = path.join(tmp, 'old.cache');
    await writeFile(cache, cacheText.replace('TRT-100300-', 'TRT-8601-'));
    const rec: Recorded = {};
    await expect(buildEngine(options({ int8: true, cache, shapes: { fixed: 'input:1x3x32x32' } }, rec))).rejects.toThrow(
      /is for TensorRT 8\.6\.1 \(header TRT-8601-MinMaxCalibration\) but this TensorRT is 10\.3\.0/,
    );
    expect(rec.options).toBeUndefined();
  });

  it('says so when TensorRT does not take the cache and asks for images', { timeout: 30_000 }, async () => {
    const cache = path.join(tmp, 'rejected.cache');
    await writeFile(cache, cacheText);
    await expect(buildEngine(options({ int8: true, cache, shapes: { fixed: 'input:1x3x32x32' } }, {}, fakeBridge({}, { rejectCache: true })))).rejects.toThrow(
      /TensorRT did not use the calibration cache .*rejected\.cache and asked for images/,
    );
  });

  it('--int8 without scales, and scales without --int8, are user errors', async () => {
    await expect(buildEngine(options({ int8: true, shapes: { fixed: 'input:1x3x32x32' } }, {}))).rejects.toThrow(/--int8 needs scales/);
    const cache = path.join(tmp, 'm2.cache');
    await writeFile(cache, cacheText);
    await expect(buildEngine(options({ cache, shapes: { fixed: 'input:1x3x32x32' } }, {}))).rejects.toThrow(/--int8 was not given/);
  });
});

describe('precision map, Q/DQ models and TensorRT 11', () => {
  it('turns the precision map into layer constraints and enables FP16 for it', async () => {
    const map = path.join(tmp, 'm.precision.json');
    await writeFile(map, JSON.stringify({ '/fc/Gemm': 'fp16', '/conv/Conv': 'int8' }));
    const rec: Recorded = {};
    const r = await buildEngine(options({ precisionMap: map, shapes: { fixed: 'input:1x3x32x32' }, precisionConstraints: 'prefer' }, rec));
    expect(rec.options).toMatchObject({
      fp16: true,
      precisionConstraints: 'prefer',
      layerPrecisions: [
        { layer: '/fc/Gemm', precision: 'fp16' },
        { layer: '/fc/Gemm_1', precision: 'fp16' },
      ],
    });
    expect(r.precision).toMatchObject({ fp16: true, layerConstraints: 2 });
  });

  it('a Q/DQ model on TensorRT 10 takes its scales from the model: calibration options are not used, with a warning', async () => {
    const rec: Recorded = {};
    const reporter = recordingReporter();
    const cache = path.join(tmp, 'q.cache');
    await writeFile(cache, 'TRT-100300-EntropyCalibration2\n');
    const r = await buildEngine(options({ int8: true, cache, reporter, shapes: { fixed: 'input:1x3x32x32' } }, rec, fakeBridge(rec, { network: { ...NETWORK, qdqLayers: 12 } })));
    expect(rec.options!.calibration).toBeUndefined();
    expect(rec.options!.int8).toBe(true);
    expect(r.calibration).toEqual({ mode: 'qdq' });
    expect(reporter.warnings.join('\n')).toMatch(/explicitly quantized \(12 Q\/DQ layers\).*--cache\/--data are not used/);
  });

  it('TensorRT 11: builds the Q/DQ model without implicit flags, and explains what to do otherwise', async () => {
    const rec: Recorded = {};
    const qdq = fakeBridge(rec, { implicit: false, version: 110100, network: { ...NETWORK, qdqLayers: 4 } });
    const r = await buildEngine(options({ int8: true, shapes: { fixed: 'input:1x3x32x32' } }, rec, qdq));
    expect(rec.options).toMatchObject({ int8: false, fp16: false });
    expect(r.calibration).toEqual({ mode: 'qdq' });
    expect(r.tensorrt.library).toBe('11.1.0');

    const plain = fakeBridge({}, { implicit: false, version: 110100 });
    await expect(buildEngine(options({ int8: true, shapes: { fixed: 'input:1x3x32x32' } }, {}, plain))).rejects.toThrow(
      /has no QuantizeLinear\/DequantizeLinear nodes, and TensorRT 11\.1\.0 has no implicit quantization: INT8 engines come only from such a model/,
    );
    const cache = path.join(tmp, 'c11.cache');
    await writeFile(cache, 'TRT-110100-EntropyCalibration2\n');
    const err = (await buildEngine(options({ int8: true, cache }, {}, plain)).catch((e: unknown) => e)) as UserError;
    expect(err.message).toMatch(/TensorRT 11\.1\.0 has no implicit quantization/);
    expect(err.hint).toMatch(/trt-calib quantize/);
  });

  it('TensorRT 11 takes the INT8 + FP16 model as it is, and warns that a Q/DQ model with a float32 rest runs it in FP32', async () => {
    const source = await loadOnnxModel(MODEL);
    const scales = new Map(listActivations(source).map((a) => [a.name, 0.05]));
    const mixedFile = path.join(tmp, 'm.int8-fp16.onnx');
    await writeOnnxModel(mixedFile, buildMixedPrecisionModel(source, { activationScales: scales, highPrecision: {} }).model);
    const fp32RestFile = path.join(tmp, 'm.int8.onnx');
    await writeOnnxModel(fp32RestFile, buildMixedPrecisionModel(source, { activationScales: scales }).model);
    const trt11 = (rec: Recorded) => fakeBridge(rec, { implicit: false, version: 110100, network: { ...NETWORK, qdqLayers: 4 } });

    const rec: Recorded = {};
    const quiet = recordingReporter();
    const r = await buildEngine(options({ model: mixedFile, int8: true, reporter: quiet, shapes: { fixed: 'input:1x3x32x32' } }, rec, trt11(rec)));
    expect(r.calibration).toEqual({ mode: 'qdq' });
    expect(rec.options).toMatchObject({ int8: false, fp16: false });
    expect(quiet.warnings).toEqual([]);

    const loud = recordingReporter();
    await buildEngine(options({ model: fp32RestFile, int8: true, reporter: loud, shapes: { fixed: 'input:1x3x32x32' } }, {}, trt11({})));
    expect(loud.warnings.join('\n')).toMatch(/every layer that is not INT8 runs in FP32.*quantize --high-precision fp16/);

    // TensorRT 10, weakly typed: the INT8 + FP16 model wants --strongly-typed (or --fp16).
    const ten = recordingReporter();
    await buildEngine(options({ model: mixedFile, int8: true, reporter: ten, shapes: { fixed: 'input:1x3x32x32' } }, {}, fakeBridge({}, { network: { ...NETWORK, qdqLayers: 4 } })));
    expect(ten.warnings.join('\n')).toMatch(/INT8 \+ FP16 model: add --strongly-typed/);
  });

  it('a strongly typed network on TensorRT 10 follows the same rules: no flags, no calibration, Q/DQ for INT8', async () => {
    const rec: Recorded = {};
    const bridge = fakeBridge(rec, { network: { ...NETWORK, qdqLayers: 6 } });
    const r = await buildEngine(options({ int8: true, fp16: true, stronglyTyped: true, shapes: { fixed: 'input:1x3x32x32' } }, rec, bridge));
    expect(rec.options).toMatchObject({ int8: false, fp16: false, stronglyTyped: true });
    expect(r.calibration).toEqual({ mode: 'qdq' });
    await expect(buildEngine(options({ stronglyTyped: true, precisionMap: new Map([['/fc/Gemm', 'fp16']]) }, {}))).rejects.toThrow(
      /a strongly typed network takes every type from the model/,
    );
  });
});

describe('the TensorRT backend (Session over an engine)', () => {
  it('runs an engine file: feeds the inputs, returns typed outputs, fetches only what is asked', async () => {
    const engineFile = path.join(tmp, 'b.engine');
    await writeFile(engineFile, 'ENGINE');
    const seen: unknown[] = [];
    const engine: TrtEngineHandle = {
      io: () => [
        { name: 'input', mode: 'input', dtype: 'float32', dims: [-1, 3, 2, 2] },
        { name: 'prob', mode: 'output', dtype: 'float32', dims: [-1, 2] },
        { name: 'argmax', mode: 'output', dtype: 'int32', dims: [-1] },
      ],
      run: async (feeds) => {
        seen.push(feeds);
        return [
          { name: 'prob', dtype: 'float32', dims: [1, 2], data: new Float32Array([0.25, 0.75]).buffer },
          { name: 'argmax', dtype: 'int32', dims: [1], data: new Int32Array([1]).buffer },
        ];
      },
      release: () => {},
    };
    const bridge = { ...fakeBridge({}), loadEngine: async (bytes: Uint8Array) => (Buffer.from(bytes).toString() === 'ENGINE' ? engine : Promise.reject(new Error('bytes'))) };
    const session = await tensorrtBackend({ bridge }).open({ path: engineFile });
    expect(session.inputs).toEqual([{ name: 'input', dtype: 'float32', dims: [-1, 3, 2, 2] }]);
    expect(session.outputs.map((o) => o.name)).toEqual(['prob', 'argmax']);
    const input = { dtype: 'float32' as const, dims: [1, 3, 2, 2], data: new Float32Array(12).fill(0.5) };
    const out = await session.run({ input }, ['prob']);
    expect(Object.keys(out)).toEqual(['prob']);
    expect(out.prob).toEqual({ dtype: 'float32', dims: [1, 2], data: new Float32Array([0.25, 0.75]) });
    const all = await session.run({ input });
    expect(all.argmax!.data).toEqual(new Int32Array([1]));
    expect(seen[0]).toEqual([{ name: 'input', dims: [1, 3, 2, 2], data: input.data }]);
    await expect(session.run({ input: { dtype: 'float16', dims: [1, 3, 2, 2], data: new Uint16Array(12) } })).rejects.toThrow(/is float32 but a float16 tensor was given/);
    await expect(session.run({ input }, ['/conv/Conv_output_0'])).rejects.toThrow(/has no output "\/conv\/Conv_output_0"/);
    await expect(tensorrtBackend({ bridge }).open({ path: engineFile }, { expose: ['x'] })).rejects.toThrow(/is a built engine/);
  });
});
