/**
 * The proxy pass: every layer's own output SNR (INT8 on FP32 input against FP32) from ONE onnxruntime run over
 * the kept batches, with the proxy model of VariantBuilder.buildProxy (each layer beside its INT8 twin).
 *
 * Method: the layer-wise quantization error analysis of PPQ (`layerwise_error_analyse`: each layer quantized alone
 * on FP32 input, its output's noise-to-signal ratio against FP32) and of onnxruntime's qdq_loss_debug, used as a
 * cheap first ranking (in the spirit of HAWQ/NNCF's proxy-then-measure mixed-precision search: a per-layer
 * proxy orders the candidates, the task metric is measured only where it is needed; see docs/mixed-precision.md).
 * The SNR of a pair is the one one-at-a-time reports through its float twin (`outputSnrDb`): the same two
 * tensors, so the same number up to onnxruntime's fusions (exposing every layer output keeps Conv from fusing
 * with the Clip that follows; the pair's values are those of the unfused nodes in both).
 *
 * Memory: a run fetches two tensors per layer, images x (sum of the layers' output elements) x 8 bytes (0.5 GB
 * for a batch of 8 on MobileNetV2). The kept batches are fed in chunks of at most `chunkBytes` of fetched outputs
 * (sized from the first image), one image at least. The sums run in image order, one image at a time, so the
 * numbers are the same whatever the batch or chunk size.
 */
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { floatValues, snrFromSums } from '../compare/metrics.js';
import { saveOnnxModel } from '../onnx/model.js';
import { elementCount } from '../tensor.js';
import type { EvaluationData } from './data.js';
import { FP16_MAX, FP16_SAMPLE_STRIDE, TensorNoise, roundToFloat16 } from './noise.js';
import type { LayerPlan, VariantBuilder } from './variants.js';

/** Fetched outputs per run, at most (see the file comment). */
export const DEFAULT_PROXY_CHUNK_BYTES = 256 * 1024 ** 2;

export interface ProxyLayer {
  /** The layer's INT8 output (on FP32 input) against its FP32 output (dB), over every image. */
  outputSnrDb: number;
  /** The layer's FP32 output: range and FP16 noise (the FP16 check). */
  reference: TensorNoise;
}

export interface ProxyResult {
  layers: Map<string, ProxyLayer>;
  /** Images per run (the chunk). */
  chunkImages: number;
  runs: number;
  seconds: number;
}

export async function proxyPass(
  builder: VariantBuilder,
  layers: readonly LayerPlan[],
  data: EvaluationData,
  options: { threads?: number; file?: string; chunkBytes?: number; signal?: AbortSignal } = {},
): Promise<ProxyResult> {
  const started = performance.now();
  const proxy = builder.buildProxy(layers);
  const session = await onnxruntimeBackend.open({ path: options.file ?? 'proxy.onnx', bytes: saveOnnxModel(proxy.model) }, { ...(options.threads ? { threads: options.threads } : {}) });
  const sums = proxy.pairs.map(() => ({ ref2: 0, err2: 0 }));
  const refs = proxy.pairs.map(() => new TensorNoise());
  const fetch = proxy.pairs.flatMap((p) => [p.output, p.twin]);
  const limit = options.chunkBytes ?? DEFAULT_PROXY_CHUNK_BYTES;
  let chunk = 0;
  let runs = 0;
  try {
    for (const batch of data.batches) {
      const n = batch.files.length;
      const per = batch.data.length / n;
      for (let i = 0; i < n; ) {
        options.signal?.throwIfAborted();
        const take = Math.min(chunk === 0 ? 1 : chunk, n - i);
        const dims = [take, ...batch.dims.slice(1)];
        const out = await session.run({ [data.inputName]: { dtype: 'float32', dims, data: batch.data.subarray(i * per, (i + take) * per) } }, fetch);
        runs++;
        if (chunk === 0) {
          const bytes = fetch.reduce((s, name) => s + elementCount(out[name]!.dims) * 4, 0);
          chunk = Math.max(1, Math.floor(limit / Math.max(1, bytes)));
        }
        proxy.pairs.forEach((p, k) => {
          const reference = floatValues(out[p.output]!, p.output);
          const twin = floatValues(out[p.twin]!, p.twin);
          const each = reference.length / take;
          // One image at a time, in order (see the file comment).
          for (let j = 0; j < take; j++) addPair(reference, twin, j * each, each, sums[k]!, refs[k]!);
        });
        i += take;
      }
    }
  } finally {
    await session.release();
  }
  const result = new Map<string, ProxyLayer>();
  proxy.pairs.forEach((p, k) => result.set(p.layer, { outputSnrDb: snrFromSums(sums[k]!.ref2, sums[k]!.err2), reference: refs[k]! }));
  return { layers: result, chunkImages: chunk, runs, seconds: (performance.now() - started) / 1000 };
}

/**
 * One image of one pair, in one loop (this sees two values per layer output element of every image): the SNR sums
 * as PairSums adds them (the same sequential sums, so the same outputSnrDb as one-at-a-time's float twin), and the
 * reference's range and FP16 noise as TensorNoise.add samples them (every FP16_SAMPLE_STRIDE-th element from the
 * image's first).
 */
function addPair(reference: Float32Array | Float64Array, twin: Float32Array | Float64Array, offset: number, length: number, sums: { ref2: number; err2: number }, noise: TensorNoise): void {
  let ref2 = sums.ref2;
  let err2 = sums.err2;
  let signal = noise.signal;
  let absMax = noise.absMax;
  let overflow = 0;
  let nonFinite = 0;
  const end = offset + length;
  for (let i = offset; i < end; i++) {
    const r = reference[i]!;
    const v = twin[i]!;
    if (!(r - r === 0)) {
      nonFinite++;
      continue;
    }
    const a = r < 0 ? -r : r;
    if (a > absMax) absMax = a;
    if (a > FP16_MAX) overflow++;
    signal += r * r;
    if (!(v - v === 0)) continue;
    const d = r - v;
    ref2 += r * r;
    err2 += d * d;
  }
  let sampleSignal = noise.fp16SampleSignal;
  let f16 = noise.fp16Noise;
  for (let i = offset; i < end; i += FP16_SAMPLE_STRIDE) {
    const x = reference[i]!;
    if (!(x - x === 0) || (x < 0 ? -x : x) > FP16_MAX) continue;
    const d = x - roundToFloat16(x);
    sampleSignal += x * x;
    f16 += d * d;
  }
  sums.ref2 = ref2;
  sums.err2 = err2;
  noise.signal = signal;
  noise.absMax = absMax;
  noise.fp16SampleSignal = sampleSignal;
  noise.fp16Noise = f16;
  noise.fp16Overflow += overflow;
  noise.nonFinite += nonFinite;
  noise.count += length - nonFinite;
}
