/**
 * The TypeScript half of the TensorRT bridge that needs no TensorRT: finding TensorRT (native/find-tensorrt.js),
 * the precision map onto TensorRT layers, the optimization profile, the batch feed's checks, and the errors a
 * user gets before any native call.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildEngine,
  calibrationFeed,
  requireTensorRT,
  resolvePrecisionMap,
  resolveProfile,
  type BatchLike,
  type TensorRTDetection,
  type TrtLayerDesc,
} from '../../src/backends/tensorrt.js';
import { UserError } from '../../src/errors.js';
import { tensorrtBridge } from '../../src/native.js';

const ROOT = path.resolve(__dirname, '../..');
const tmp = mkdtempSync(path.join(tmpdir(), 'trt-calib-findtrt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function findTensorRT(env: NodeJS.ProcessEnv): Promise<TensorRTDetection> {
  const mod = (await import(pathToFileURL(path.join(ROOT, 'native/find-tensorrt.js')).href)) as { findTensorRT(env: NodeJS.ProcessEnv, platform?: string): TensorRTDetection };
  return mod.findTensorRT(env, 'linux');
}

/** A fake TensorRT tree: the files the detection looks at, with a 10.x-style NvInferVersion.h. */
function fakeTensorRT(name: string, opts: { version?: [number, number, number]; parser?: boolean; libs?: string[] } = {}): string {
  const root = path.join(tmp, name);
  const [major, minor, patch] = opts.version ?? [10, 3, 0];
  mkdirSync(path.join(root, 'include'), { recursive: true });
  mkdirSync(path.join(root, 'lib'), { recursive: true });
  writeFileSync(path.join(root, 'include', 'NvInfer.h'), '// fake\n');
  writeFileSync(
    path.join(root, 'include', 'NvInferVersion.h'),
    major >= 10
      ? `#define TRT_MAJOR_ENTERPRISE ${major}\n#define TRT_MINOR_ENTERPRISE ${minor}\n#define TRT_PATCH_ENTERPRISE ${patch}\n#define TRT_BUILD_ENTERPRISE 7\n` +
          '#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE\n#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE\n'
      : `#define NV_TENSORRT_MAJOR ${major} //!< major\n#define NV_TENSORRT_MINOR ${minor}\n#define NV_TENSORRT_PATCH ${patch}\n#define NV_TENSORRT_BUILD 5\n`,
  );
  if (opts.parser !== false) writeFileSync(path.join(root, 'include', 'NvOnnxParser.h'), '// fake\n');
  for (const lib of opts.libs ?? ['libnvinfer.so', 'libnvinfer.so.10', 'libnvonnxparser.so.10']) writeFileSync(path.join(root, 'lib', lib), '');
  return root;
}

function fakeCuda(name: string): string {
  const root = path.join(tmp, name);
  mkdirSync(path.join(root, 'include'), { recursive: true });
  mkdirSync(path.join(root, 'lib64'), { recursive: true });
  writeFileSync(path.join(root, 'include', 'cuda_runtime_api.h'), '#define CUDART_VERSION 12040\n');
  writeFileSync(path.join(root, 'lib64', 'libcudart.so'), '');
  return root;
}

describe('native/find-tensorrt.js', () => {
  it('finds TensorRT under TENSORRT_ROOT and CUDA under CUDA_HOME, and gives gyp what to compile and link', async () => {
    const trt = fakeTensorRT('trt10');
    const cuda = fakeCuda('cuda12');
    const r = await findTensorRT({ TENSORRT_ROOT: trt, CUDA_HOME: cuda });
    expect(r.found).toBe(true);
    expect(r.reason).toBeUndefined();
    expect(r.versionString).toBe('10.3.0');
    expect(r.version).toMatchObject({ major: 10, minor: 3, patch: 0, build: 7 });
    expect(r.includeDirs).toEqual([path.join(trt, 'include'), path.join(cuda, 'include')]);
    // The -dev symlink when there is one; else the versioned runtime file (libnvonnxparser.so.10 here).
    expect(r.libraries).toEqual([path.join(trt, 'lib', 'libnvinfer.so'), path.join(trt, 'lib', 'libnvonnxparser.so.10'), path.join(cuda, 'lib64', 'libcudart.so')]);
    expect(r.libDirs).toEqual([path.join(trt, 'lib'), path.join(cuda, 'lib64')]);
    expect(r.cuda).toMatchObject({ found: true, version: '12.4' });
  });

  it('reads 8.x version headers (plain NV_TENSORRT_* numbers)', async () => {
    const r = await findTensorRT({ TENSORRT_ROOT: fakeTensorRT('trt86', { version: [8, 6, 1] }), CUDA_HOME: fakeCuda('cuda-b') });
    expect([r.found, r.versionString, r.version?.build]).toEqual([true, '8.6.1', 5]);
  });

  it('says why the bridge is skipped: too old, no ONNX parser header, no library, no CUDA, a wrong TENSORRT_ROOT, opted out', async () => {
    const cuda = fakeCuda('cuda-c');
    expect((await findTensorRT({ TENSORRT_ROOT: fakeTensorRT('trt85', { version: [8, 5, 3] }), CUDA_HOME: cuda })).reason).toMatch(
      /TensorRT 8\.5\.3 was found in .* but the bridge needs 8\.6 or newer/,
    );
    expect((await findTensorRT({ TENSORRT_ROOT: fakeTensorRT('noparser', { parser: false }), CUDA_HOME: cuda })).reason).toMatch(/not its ONNX parser header \(NvOnnxParser\.h\)/);
    expect((await findTensorRT({ TENSORRT_ROOT: fakeTensorRT('nolib', { libs: ['libnvinfer.so'] }), CUDA_HOME: cuda })).reason).toMatch(/but not libnvonnxparser/);
    const nowhere = await findTensorRT({ TENSORRT_ROOT: path.join(tmp, 'does-not-exist') });
    expect(nowhere.found).toBe(false);
    expect(nowhere.reason).toMatch(/TENSORRT_ROOT .* points to .*does-not-exist, which is not a folder/);
    const skipped = await findTensorRT({ TENSORRT_ROOT: fakeTensorRT('trt10b'), CUDA_HOME: cuda, TRT_CALIB_SKIP_TENSORRT: '1' });
    expect([skipped.found, skipped.reason]).toEqual([false, 'TRT_CALIB_SKIP_TENSORRT is set']);
    for (const r of [nowhere]) expect(r.hint).toMatch(/TENSORRT_ROOT.*CUDA_HOME.*npm run build:native/);
  });
});

/** Layers as TensorRT 10's ONNX parser names them (metadata) and as 8.6's does (names only). */
const LAYERS_10: TrtLayerDesc[] = [
  { name: '/features/0/Conv', type: 'Convolution', onnxNode: '/features/0/Conv', outputs: [] },
  { name: '/features/0/Relu', type: 'Activation', onnxNode: '/features/0/Relu', outputs: [] },
  { name: 'classifier.weight', type: 'Constant', onnxNode: '/classifier/Gemm', outputs: [] },
  { name: '/classifier/Gemm', type: 'MatrixMultiply', onnxNode: '/classifier/Gemm', outputs: [] },
  { name: '/classifier/Gemm_1', type: 'ElementWise', onnxNode: '/classifier/Gemm', outputs: [] },
  { name: 'node_of_logits', type: 'Softmax', onnxNode: 'node_of_logits', outputs: [] },
];
const LAYERS_86: TrtLayerDesc[] = LAYERS_10.map((l) => ({ ...l, onnxNode: null }));

describe('precision map -> TensorRT layers', () => {
  it('constrains every arithmetic layer of a node (TensorRT 10 metadata), leaves int8 entries to TensorRT, skips constants', () => {
    const map = new Map([
      ['/classifier/Gemm', 'fp16'],
      ['/features/0/Conv', 'int8'],
      ['Softmax:logits', 'fp32'], // an unnamed ONNX node: "Op:firstOutput" here, "node_of_<output>" in TensorRT
    ] as const);
    expect(resolvePrecisionMap(map, LAYERS_10)).toEqual([
      { layer: '/classifier/Gemm', precision: 'fp16', node: '/classifier/Gemm' },
      { layer: '/classifier/Gemm_1', precision: 'fp16', node: '/classifier/Gemm' },
      { layer: 'node_of_logits', precision: 'fp32', node: 'Softmax:logits' },
    ]);
  });

  it('matches by layer name and "_N" suffixes when the parser left no metadata (TensorRT 8.6)', () => {
    expect(resolvePrecisionMap(new Map([['/classifier/Gemm', 'fp16']] as const), LAYERS_86).map((l) => l.layer)).toEqual(['/classifier/Gemm', '/classifier/Gemm_1']);
  });

  it('names the entries that match no layer', () => {
    expect(() => resolvePrecisionMap(new Map([['/features/9/Conv', 'fp16'], ['/features/0/Conv', 'fp16']] as const), LAYERS_10, 'p.json')).toThrow(
      /p\.json names 1 node\(s\) that the model has no layer for: "\/features\/9\/Conv"/,
    );
  });
});

const INPUT_DYN = { name: 'x', dtype: 'float32' as const, dims: [-1, 3, -1, -1] };
const INPUT_FIXED = { name: 'images', dtype: 'float32' as const, dims: [1, 3, 640, 640] };

describe('optimization profile', () => {
  it('takes min/opt/max, or one --shapes, or the calibration batch for a dynamic input', () => {
    expect(resolveProfile([INPUT_DYN], { min: 'x:1x3x320x320', opt: 'x:4x3x640x640', max: 'x:8x3x1280x1280' })).toEqual([
      { input: 'x', min: [1, 3, 320, 320], opt: [4, 3, 640, 640], max: [8, 3, 1280, 1280] },
    ]);
    expect(resolveProfile([INPUT_DYN], { fixed: 'x:2x3x576x768' })).toEqual([{ input: 'x', min: [2, 3, 576, 768], opt: [2, 3, 576, 768], max: [2, 3, 576, 768] }]);
    expect(resolveProfile([INPUT_DYN], {}, { input: 'x', dims: [8, 3, 224, 224] })).toEqual([
      { input: 'x', min: [8, 3, 224, 224], opt: [8, 3, 224, 224], max: [8, 3, 224, 224] },
    ]);
    // A static input needs no profile.
    expect(resolveProfile([INPUT_FIXED], {})).toEqual([]);
  });

  it('rejects missing, partial, misshapen and unordered shapes with the input named', () => {
    expect(() => resolveProfile([INPUT_DYN], {})).toThrow(/Input "x" has dynamic dims \[-1, 3, -1, -1\], so the engine needs shapes for it/);
    expect(() => resolveProfile([INPUT_DYN], { min: 'x:1x3x32x32' })).toThrow(/needs all three of --min-shapes, --opt-shapes and --max-shapes/);
    expect(() => resolveProfile([INPUT_DYN], { fixed: 'x:1x3x32' })).toThrow(/has 3 dims; the input has 4/);
    expect(() => resolveProfile([INPUT_DYN], { fixed: 'x:1x1x32x32' })).toThrow(/disagrees with its fixed dim 1 \(3\)/);
    expect(() => resolveProfile([INPUT_DYN], { min: 'x:4x3x32x32', opt: 'x:2x3x32x32', max: 'x:8x3x32x32' })).toThrow(/min <= opt <= max/);
    expect(() => resolveProfile([INPUT_FIXED], { fixed: 'image:1x3x640x640' })).toThrow(/--shapes names "image", which is not an input of the model/);
    expect(() => resolveProfile([INPUT_FIXED], { fixed: 'images:2x3x640x640' })).toThrow(/disagrees with its fixed dim 0 \(1\)/);
  });
});

describe('calibration feed checks', () => {
  async function* one(b: BatchLike) {
    yield b;
  }
  it('refuses a batch of another image shape or a larger batch, naming the input', async () => {
    const wrongShape = calibrationFeed(one({ data: new Float32Array(2 * 3 * 8 * 8), dims: [2, 3, 8, 8] }), [2, 3, 4, 4], { inputName: 'x' });
    await expect(wrongShape.callbacks.nextBatch()).rejects.toThrow(/A calibration batch for input "x" has shape 2x3x8x8 but TensorRT calibrates on 2x3x4x4/);
    const tooBig = calibrationFeed(one({ data: new Float32Array(4 * 2), dims: [4, 2] }), [2, 2]);
    await expect(tooBig.callbacks.nextBatch()).rejects.toThrow(/holds 4 images but TensorRT calibrates on batches of 2/);
    expect(() => calibrationFeed(one({ data: new Float32Array(1), dims: [1] }), [0, 3])).toThrow(/Expected positive integer dims/);
  });
});

describe('engine builds on a machine without the TensorRT bridge', () => {
  const built = tensorrtBridge().state === 'loaded';

  it.skipIf(built)('requireTensorRT() says the bridge is not built and how to enable it (TENSORRT_ROOT, CUDA_HOME, rebuild)', async () => {
    const err = (await requireTensorRT().catch((e: unknown) => e)) as UserError;
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/The TensorRT bridge is not built/);
    expect(err.hint).toMatch(/TENSORRT_ROOT/);
    expect(err.hint).toMatch(/CUDA_HOME/);
    expect(err.hint).toMatch(/npm run build:native/);
  });

  it('checks the options before anything native: --cache with --data, an algorithm TensorRT lacks, a missing model', async () => {
    const model = path.join(ROOT, 'test/fixtures/models/mobilenet_v2_nsfw_224.onnx');
    const data = async () => {
      throw new Error('not reached');
    };
    await expect(buildEngine({ model, out: path.join(tmp, 'a.engine'), int8: true, cache: 'c', calibrationData: data })).rejects.toThrow(/--cache and --data both give INT8 scales/);
    await expect(buildEngine({ model, out: path.join(tmp, 'a.engine'), algorithm: 'percentile' as never })).rejects.toThrow(
      /--algo "percentile" is not a TensorRT calibrator: expected entropy2, entropy, minmax, legacy/,
    );
    await expect(buildEngine({ model: path.join(tmp, 'nope.onnx'), out: path.join(tmp, 'a.engine') })).rejects.toThrow(/The model .*nope\.onnx does not exist/);
  });
});
