import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeOnnxruntimeDebugLog } from '../../src/backends/onnxruntime-debug-log.js';
import { UserError } from '../../src/errors.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import {
  decodeOnnxModel,
  ELEM,
  graphOf,
  loadOnnxModel,
  makeTensor,
  modelSha256,
  onnx,
  saveOnnxModel,
  tensorFromProto,
  tensorToProto,
  writeOnnxModel,
  type OnnxModel,
} from '../../src/onnx/model.js';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';

// onnxruntime's empty mat-debug-<pid>.log (src/backends/onnxruntime-debug-log.ts): one test opens an onnxruntime-node session directly, not through src/backends.
afterAll(removeOnnxruntimeDebugLog);

const here = path.dirname(fileURLToPath(import.meta.url));
const MOBILENET = path.resolve(here, '../fixtures/models/mobilenet_v2_nsfw_224.onnx');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'trt-calib-onnx-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** y = MatMul(x[1,2], W[2,3]) + B[3], W and B stored in weights.bin (external data). */
function externalModel(): { model: OnnxModel; blob: Buffer } {
  const W = new Float32Array([1, 2, 3, 4, 5, 6]);
  const B = new Float32Array([0.5, -1, 2]);
  const blob = Buffer.alloc(64 + 12);
  Buffer.from(W.buffer).copy(blob, 0); // W at offset 0, 24 bytes
  Buffer.from(B.buffer).copy(blob, 64); // B at offset 64 (aligned, as onnx's writer does)
  const ext = (name: string, dims: number[], offset: number, length: number) =>
    onnx.TensorProto.create({
      name,
      dataType: ELEM.FLOAT,
      dims,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: 'weights.bin' },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(length) },
      ],
    });
  const model = makeModel({
    inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 2])],
    outputs: [makeValueInfo('y', ELEM.FLOAT, [1, 3])],
    initializers: [ext('W', [2, 3], 0, 24), ext('B', [3], 64, 12)],
    nodes: [makeNode('MatMul', ['x', 'W'], ['xw'], { name: 'mm' }), makeNode('Add', ['xw', 'B'], ['y'], { name: 'add' })],
  });
  return { model, blob };
}

describe('loadOnnxModel', () => {
  it('reads a real model; int64 fields come back as numbers through the helpers', async () => {
    const m = await loadOnnxModel(MOBILENET);
    const pads = graphOf(m).initializer.find((t) => t.name === 'Conv1_pad.pads')!;
    const t = tensorFromProto(pads);
    expect(t.dtype).toBe('int64');
    expect(t.dims).toEqual([8]);
    expect(Array.from(t.data as BigInt64Array).map(Number)).toEqual([0, 0, 0, 0, 0, 0, 1, 1]);
  });

  it('refuses a file that is not ONNX, naming it', async () => {
    const bad = path.join(dir, 'notes.onnx');
    await writeFile(bad, 'this is a text file, not a protobuf\n');
    const err = await loadOnnxModel(bad).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not an ONNX model: `));
    const jpeg = path.resolve(here, '../fixtures/images/opencv_doc__apple.jpg');
    await expect(loadOnnxModel(jpeg)).rejects.toThrow(/is not an ONNX model/);
  });

  it('says when the file does not exist', async () => {
    await expect(loadOnnxModel(path.join(dir, 'missing.onnx'))).rejects.toThrow(/missing.onnx does not exist/);
  });

  it('inlines external data, then the bytes run in onnxruntime on their own', async () => {
    const sub = path.join(dir, 'ext');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    const { model, blob } = externalModel();
    await writeFile(path.join(sub, 'weights.bin'), blob);
    const file = path.join(sub, 'model.onnx');
    await writeOnnxModel(file, model);
    const loaded = await loadOnnxModel(file);
    const W = graphOf(loaded).initializer[0]!;
    expect(W.dataLocation).toBe(onnx.TensorProto.DataLocation.DEFAULT);
    expect(W.externalData).toEqual([]);
    expect(Array.from(tensorFromProto(W).data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    // Run from memory, from another folder's point of view: nothing refers to weights.bin any more.
    const session = await onnxruntimeBackend.open({ path: file, bytes: saveOnnxModel(loaded) });
    const out = await session.run({ x: makeTensor('float32', [1, 2], [1, -1]) });
    // [1,-1] x [[1,2,3],[4,5,6]] = [-3,-3,-3]; + [0.5,-1,2]
    expect(Array.from(out.y!.data as Float32Array)).toEqual([-2.5, -4, -1]);
    await session.release();
    // onnxruntime loading the file by path resolves the external data itself: same result.
    const byPath = await onnxruntimeBackend.open({ path: file });
    expect(Array.from((await byPath.run({ x: makeTensor('float32', [1, 2], [1, -1]) })).y!.data as Float32Array)).toEqual([-2.5, -4, -1]);
    await byPath.release();
  });

  it('exposed-model bytes for onnxruntime: file bytes plus the added outputs, or a full encoding with external data', async () => {
    const { exposedModelBytesForOnnxruntime } = await import('../../src/onnx/expose.js');
    const { sourceBytesOf } = await import('../../src/onnx/model.js');
    const ort = (await import('onnxruntime-node')).default;
    const mobilenet = await loadOnnxModel(MOBILENET);
    const fileBytes = await readFile(MOBILENET);
    expect(Buffer.from(sourceBytesOf(mobilenet)!).equals(fileBytes)).toBe(true);
    const bytes = exposedModelBytesForOnnxruntime(mobilenet, ['bn_Conv1', 'block_2_add']);
    expect(Buffer.from(bytes.subarray(0, fileBytes.length)).equals(fileBytes)).toBe(true); // appended, not re-encoded
    const session = await ort.InferenceSession.create(bytes);
    expect(session.outputNames).toEqual([...graphOf(mobilenet).output.map((o) => o.name), 'bn_Conv1', 'block_2_add']);
    await session.release();
    // With external data the file bytes are not the model: a full encoding of the inlined model instead.
    const sub = path.join(dir, 'ext-expose');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    const { model, blob } = externalModel();
    await writeFile(path.join(sub, 'weights.bin'), blob);
    await writeOnnxModel(path.join(sub, 'model.onnx'), model);
    const loaded = await loadOnnxModel(path.join(sub, 'model.onnx'));
    expect(sourceBytesOf(loaded)).toBeUndefined();
    const decoded = decodeOnnxModel(exposedModelBytesForOnnxruntime(loaded, ['xw']), 'exposed');
    expect(graphOf(decoded).output.map((o) => o.name)).toEqual(['y', 'xw']);
  });

  it('names a missing external data file', async () => {
    const sub = path.join(dir, 'ext-missing');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    const file = path.join(sub, 'model.onnx');
    await writeOnnxModel(file, externalModel().model);
    const err = await loadOnnxModel(file).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain(path.join(sub, 'weights.bin'));
    expect(err.message).toContain("tensor 'W'");
  });

  it('refuses external data outside the model folder', async () => {
    const sub = path.join(dir, 'ext-escape');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    const { model } = externalModel();
    graphOf(model).initializer[0]!.externalData[0]!.value = '../secret.bin';
    const file = path.join(sub, 'model.onnx');
    await writeOnnxModel(file, model);
    await expect(loadOnnxModel(file)).rejects.toThrow(/outside the model's folder/);
  });
});

describe('saving', () => {
  it('round-trips a model and writes atomically (no temporary file left)', async () => {
    const sub = path.join(dir, 'save');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    const m = makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, ['N', 4])],
      outputs: [makeValueInfo('y', ELEM.FLOAT, ['N', 4])],
      initializers: [tensorToProto('k', makeTensor('float32', [4], [1, 2, 3, 4]))],
      nodes: [makeNode('Mul', ['x', 'k'], ['y'], { name: 'mul' })],
    });
    const file = path.join(sub, 'm.onnx');
    await writeOnnxModel(file, m);
    expect(await readdir(sub)).toEqual(['m.onnx']);
    const bytes = await readFile(file);
    expect(Buffer.compare(bytes, Buffer.from(saveOnnxModel(m)))).toBe(0);
    const back = await loadOnnxModel(file);
    expect(Array.from(tensorFromProto(graphOf(back).initializer[0]!).data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(await modelSha256(file)).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('reads values from the typed fields and from unaligned raw data', () => {
    const f = tensorFromProto(onnx.TensorProto.create({ name: 'f', dataType: ELEM.FLOAT, dims: [2], floatData: [1.5, -2] }));
    expect(Array.from(f.data as Float32Array)).toEqual([1.5, -2]);
    const i = tensorFromProto(onnx.TensorProto.create({ name: 'i', dataType: ELEM.INT64, dims: [2], int64Data: [3, -4] }));
    expect(Array.from(i.data as BigInt64Array)).toEqual([3n, -4n]);
    const raw = Buffer.alloc(9);
    raw.writeFloatLE(7.25, 1);
    raw.writeFloatLE(-0.5, 5);
    const r = tensorFromProto(onnx.TensorProto.create({ name: 'r', dataType: ELEM.FLOAT, dims: [2], rawData: raw.subarray(1) }));
    expect(Array.from(r.data as Float32Array)).toEqual([7.25, -0.5]);
    expect(() => tensorFromProto(onnx.TensorProto.create({ name: 'bad', dataType: ELEM.FLOAT, dims: [3], floatData: [1] }))).toThrow(/1 values/);
  });
});
