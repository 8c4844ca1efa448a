/**
 * runComparison on the real MobileNetV2 fixture and real photos, with the onnxruntime backend. The variant is
 * a real degradation: the same model fed an input fake-quantized to int8 (step = amax/127), so its outputs and
 * every layer differ from FP32 through the network itself.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onnxruntimeBackend } from '../../src/backends/onnxruntime.js';
import type { Session } from '../../src/backends/types.js';
import { snrDb } from '../../src/compare/metrics.js';
import { labelMap, runComparison } from '../../src/compare/run.js';
import { createDataset, resolvePreprocess } from '../../src/datasets/index.js';
import type { Tensor } from '../../src/tensor.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MOBILENET = path.resolve(here, '../fixtures/models/mobilenet_v2_nsfw_224.onnx');
const IMAGES = path.resolve(here, '../fixtures/images');
const LAYERS = ['input', 'bn_Conv1', 'Conv1_relu'];

/** The FP32 session fed an input rounded to 255 levels of [-amax, amax] (symmetric int8, amax = 2.7). */
function inputQuantized(inner: Session): Session {
  const step = 2.7 / 127;
  const quantize = (feed: Record<string, Tensor>) => {
    const out: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(feed)) {
      const data = (t.data as Float32Array).map((v) => Math.max(-127, Math.min(127, Math.round(v / step))) * step);
      out[k] = { ...t, data };
    }
    return out;
  };
  return {
    inputs: inner.inputs,
    outputs: inner.outputs,
    run: (feed, fetch) => inner.run(quantize(feed), fetch),
    runEach: (feed, fetch, onTensor) => inner.runEach(quantize(feed), fetch, onTensor),
    release: () => Promise.resolve(),
  };
}

describe('runComparison on MobileNetV2 with onnxruntime', () => {
  let session: Session;
  let layerNames: string[];
  beforeAll(async () => {
    session = await onnxruntimeBackend.open({ path: MOBILENET }, { threads: 1, expose: LAYERS.slice(1) });
    layerNames = LAYERS;
  });
  afterAll(async () => {
    await session.release();
  });

  async function run(batchSize: number) {
    const preprocess = resolvePreprocess({ preset: 'raw01' }, { name: 'input', dims: ['N', 3, 224, 224] });
    const dataset = await createDataset({ data: IMAGES, preprocess, inputName: 'input', batchSize, concurrency: 2 });
    // Labels: class 2 for the first 3 files, none for the rest (exercises the labelled/unlabelled split).
    const labels = labelMap(dataset.files.slice(0, 3), [2, 2, 2]);
    const result = await runComparison({
      dataset,
      reference: session,
      variants: [{ spec: { name: 'int8-input', precision: 'int8', algorithm: 'input-only' }, session: inputQuantized(session), layers: layerNames }],
      includeReference: true,
      labels,
      metrics: { worstCount: 3 },
    });
    return { result, dataset };
  }

  it('compares every image, FP32 exactly, the variant per output and per layer, the same whatever the batch size', async () => {
    const { result, dataset } = await run(3);
    expect(result.images).toBe(dataset.size);
    expect(result.skipped).toEqual([]);
    const [fp32, int8] = result.variants;
    expect(fp32).toMatchObject({ name: 'fp32', precision: 'fp32', agreement: 1, cosineMean: 1, cosineMin: 1 });
    expect(fp32!.outputs[0]).toMatchObject({ name: 'output', kind: 'classifier', dims: [5], images: 8, snrDb: Infinity });
    expect(int8!.name).toBe('int8-input');
    const out = int8!.outputs[0]!;
    expect(out.images).toBe(8);
    expect(out.cosineMean).toBeGreaterThan(0.9);
    expect(out.cosineMean).toBeLessThan(1);
    expect(out.snrDb).toBeGreaterThan(10);
    expect(Number.isFinite(out.snrDb)).toBe(true);
    expect(int8!.worst.length).toBe(3);
    expect(dataset.files).toContain(int8!.worst[0]!.file);
    expect(int8!.layers!.map((l) => l.name).sort()).toEqual([...LAYERS].sort());
    // The labelled images: 3; accuracy fields are filled.
    expect(out.accuracy?.labelled).toBe(3);

    const again = await run(1);
    expect(JSON.stringify(again.result.variants)).toBe(JSON.stringify(result.variants));
  });

  it('the input layer SNR equals the SNR of the fake-quantized input, computed directly', async () => {
    const { result, dataset } = await run(4);
    const ref: number[] = [];
    const q: number[] = [];
    const step = 2.7 / 127;
    for await (const b of dataset.batches()) {
      for (const v of b.data) {
        ref.push(v);
        q.push(Math.max(-127, Math.min(127, Math.round(v / step))) * step);
      }
    }
    const layer = result.variants[1]!.layers!.find((l) => l.name === 'input')!;
    // Float32 storage of the quantized values: allow rounding in the last digits only.
    expect(layer.snrDb).toBeCloseTo(snrDb(ref, Float32Array.from(q)), 9);
    expect(layer.elements).toBe(8 * 3 * 224 * 224);
  });
});
