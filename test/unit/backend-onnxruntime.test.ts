import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import {
  describeSession,
  listActivationsWithOrt,
  onnxruntimeBackend,
  probeTensorTypes,
  type OnnxruntimeSession,
} from '../../src/backends/onnxruntime.js';
import { makeModel, makeNode, makeValueInfo } from '../../src/onnx/build.js';
import { analyzeGraph, listActivations } from '../../src/onnx/graph.js';
import { ELEM, elemTypeName, graphOf, loadOnnxModel, saveOnnxModel, type OnnxModel } from '../../src/onnx/model.js';
import type { Tensor } from '../../src/tensor.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MOBILENET = path.resolve(here, '../fixtures/models/mobilenet_v2_nsfw_224.onnx');
const PPOCR = path.resolve(here, '../fixtures/models/ppocr_v4_det.onnx');

/** Deterministic pseudo-image data in [0, 1). */
function images(n: number, c: number, h: number, w: number, seed = 1): Tensor {
  const data = new Float32Array(n * c * h * w);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s >>> 8) / 16777216;
  }
  return { dtype: 'float32', dims: [n, c, h, w], data };
}

function sliceBatch(t: Tensor, b: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  return { dtype: t.dtype, dims: [1, ...t.dims.slice(1)], data: (t.data as Float32Array).slice(b * per, (b + 1) * per) };
}

function bitEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

describe('onnxruntime backend on MobileNetV2', () => {
  let model: OnnxModel;
  let names: string[];
  let session: OnnxruntimeSession;
  beforeAll(async () => {
    model = await loadOnnxModel(MOBILENET);
    names = listActivations(model).map((a) => a.name);
    session = await onnxruntimeBackend.open({ path: MOBILENET }, { threads: 1, expose: names });
  });
  afterAll(async () => {
    await session.release();
  });

  it('returns every activation with the right dims, the input straight from the feed', async () => {
    const x = images(2, 3, 224, 224);
    const seen: Array<[string, number[]]> = [];
    await session.runEach({ input: x }, names, (name, t) => {
      expect(t.dtype).toBe('float32');
      expect(t.data.length).toBe(t.dims.reduce((a, b) => a * b, 1));
      if (name === 'input') expect(t.data).toBe(x.data);
      seen.push([name, t.dims]);
    });
    expect(seen.map(([n]) => n)).toEqual(names);
    const dims = new Map(seen);
    expect(dims.get('input')).toEqual([2, 3, 224, 224]);
    expect(dims.get('Conv1_pad')).toEqual([2, 3, 225, 225]);
    expect(dims.get('bn_Conv1')).toEqual([2, 32, 112, 112]);
    expect(dims.get('Conv1_relu')).toEqual([2, 32, 112, 112]);
    expect(dims.get('flatten_1')).toEqual([2, 1280]);
    expect(dims.get('output')).toEqual([2, 5]);
    // Every activation is batch-first in this model, and onnxruntime's inferred shape agrees with the data.
    for (const [name, d] of seen) {
      expect(d[0]).toBe(2);
      const info = session.exposedInfo.get(name);
      if (info) expect(info.dims.slice(1)).toEqual(d.slice(1));
    }
  });

  it('exposing activations does not change the model output', async () => {
    const plain = await onnxruntimeBackend.open({ path: MOBILENET }, { threads: 1 });
    const x = images(2, 3, 224, 224, 7);
    const a = (await plain.run({ input: x })).output!.data as Float32Array;
    const b = (await session.run({ input: x }, ['output'])).output!.data as Float32Array;
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-5);
    expect(describeSession(plain)).toEqual([
      expect.stringMatching(/^backend: onnxruntime-node 1\.\d+\.\d+ \(cpu\), 1 intra-op threads, graph optimisation 'all'$/),
      'input  input: float32 Nx3x224x224',
      'output output: float32 Nx5',
    ]);
    await plain.release();
  });

  it('gives bit-identical activations whatever the batch size and thread count', async () => {
    const x = images(2, 3, 224, 224, 3);
    const two = await session.run({ input: x }, names);
    const threaded = await onnxruntimeBackend.open({ path: MOBILENET }, { threads: 2, expose: names });
    const twoThreads = await threaded.run({ input: x }, names);
    for (let b = 0; b < 2; b++) {
      const one = await session.run({ input: sliceBatch(x, b) }, names);
      for (const name of names) {
        const full = two[name]!.data as Float32Array;
        const per = full.length / 2;
        expect(bitEqual(one[name]!.data as Float32Array, full.subarray(b * per, (b + 1) * per)), `${name} image ${b}`).toBe(true);
      }
    }
    for (const name of names) expect(bitEqual(two[name]!.data as Float32Array, twoThreads[name]!.data as Float32Array), name).toBe(true);
    await threaded.release();
  });

  it('turns a shape mismatch into a clear UserError', async () => {
    const err = await session.run({ input: images(1, 3, 256, 256) }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toBe(`model input 'input' of ${MOBILENET} expects Nx3x224x224 but the data is 1x3x256x256: set --size or --shapes`);
    await expect(session.run({ input: { dtype: 'float32', dims: [3, 224, 224], data: new Float32Array(3 * 224 * 224) } })).rejects.toThrow(
      /expects Nx3x224x224 but the data is 3x224x224/,
    );
    await expect(session.run({ image: images(1, 3, 224, 224) })).rejects.toThrow(/has no input 'image' \(its inputs: input\)/);
  });

  it('agrees with onnxruntime on the type of every node output', async () => {
    const analysis = analyzeGraph(model);
    const outputs = graphOf(model).node.flatMap((n) => n.output);
    const probed = await probeTensorTypes(model, outputs);
    for (const name of outputs) expect(elemTypeName(analysis.tensors.get(name)!.elemType), name).toBe(probed.get(name)!.dtype);
  });

  it('keeps memory flat over many exposed runs', async () => {
    const x = images(1, 3, 224, 224, 5);
    const run = () => session.runEach({ input: x }, names, (_n, t) => void t.data[0]);
    for (let i = 0; i < 5; i++) await run();
    const before = process.memoryUsage().rss;
    // One image's activations are about 60 MB: 40 runs that leaked would add 2.4 GB.
    for (let i = 0; i < 40; i++) await run();
    const grown = process.memoryUsage().rss - before;
    expect(grown).toBeLessThan(400e6);
  });
});

describe('onnxruntime backend on PP-OCRv4 det', () => {
  it('types every node output as onnxruntime does, and runs with its activations exposed', async () => {
    const model = await loadOnnxModel(PPOCR);
    const analysis = analyzeGraph(model);
    const outputs = graphOf(model).node.filter((n) => n.opType !== 'Constant').flatMap((n) => n.output);
    const probed = await probeTensorTypes(model, outputs);
    for (const name of outputs) expect(elemTypeName(analysis.tensors.get(name)!.elemType), name).toBe(probed.get(name)!.dtype);

    const names = analysis.activations.map((a) => a.name);
    const session = await onnxruntimeBackend.open({ path: PPOCR, bytes: saveOnnxModel(model) }, { threads: 1, expose: names });
    const got = await session.run({ x: images(1, 3, 64, 96) }, names);
    expect(Object.keys(got)).toEqual(names);
    expect(got['sigmoid_0.tmp_0']!.dims).toEqual([1, 1, 64, 96]);
    // A size the network cannot take (not a multiple of 32) fails inside onnxruntime: still a UserError.
    const err = await session.run({ x: images(1, 3, 50, 70) }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(new RegExp(`^onnxruntime failed to run .*ppocr_v4_det.onnx on input 'x' 1x3x50x70: `));
    await session.release();
  });
});

describe('custom ops and bad files', () => {
  it('resolves the type of a custom op output with onnxruntime', async () => {
    // com.microsoft Gelu is an onnxruntime contrib op: our rules do not know it, onnxruntime does.
    const m = makeModel({
      inputs: [makeValueInfo('x', ELEM.FLOAT, [1, 4])],
      outputs: [makeValueInfo('y', ELEM.FLOAT)],
      extraOpsets: [{ domain: 'com.microsoft', version: 1 }],
      nodes: [makeNode('Gelu', ['x'], ['g'], { name: 'gelu', domain: 'com.microsoft' }), makeNode('Relu', ['g'], ['y'], { name: 'relu' })],
    });
    expect(analyzeGraph(m).unknownTypes.map((u) => u.tensor)).toEqual(['g']);
    const { activations, unresolved } = await listActivationsWithOrt(m);
    expect(activations.map((a) => a.name)).toEqual(['x', 'g', 'y']);
    expect(unresolved).toEqual([]);
  });

  it('refuses a non-ONNX file and a missing one', async () => {
    const jpeg = path.resolve(here, '../fixtures/images/opencv_doc__apple.jpg');
    await expect(onnxruntimeBackend.open({ path: jpeg })).rejects.toThrow(/opencv_doc__apple.jpg is not an ONNX model/);
    await expect(onnxruntimeBackend.open({ path: jpeg }, { expose: ['a'] })).rejects.toThrow(/is not an ONNX model/);
    await expect(onnxruntimeBackend.open({ path: '/nonexistent/m.onnx' })).rejects.toThrow(/m.onnx does not exist/);
  });
});
