/**
 * The proxy pass: every layer's own output SNR (INT8 on FP32 input against FP32) from ONE onnxruntime run over
 * the kept batches, with the proxy model of VariantBuilder.buildProxy (each layer beside its INT8 twin).
 *
 * Method: the layer-wise quantization error analysis of PPQ (`layerwise_error_analyse`: each layer quantized alone
 * on FP32 input, its output's noise-to-signal ratio against FP32) and of onnxruntime's qdq_loss_debug, used as a
 * cheap first ranking (in the spirit of HAWQ/NNCF's proxy-then-measure mixed-precision search: a per-layer
 * proxy orders the candidates, the task metric is measured only where it is needed; see docs/mixed-precision.md).
 * The SNR of a pair is the one one-at-a-time reports through its float twin (`outputSnrDb`): the same two
 * tensors, so the same number up to onnxruntime's fusions and the float32 sums (see below).
 *
 * Cost: the sums are taken inside the graph, per image (ReduceSumSquare of the output and of the
 * difference, ReduceMax and ReduceMin of the output), so a run returns four numbers per layer and image instead
 * of two tensors per layer (55 MB per image on MobileNetV2, whose copies and JavaScript loops took longer than the
 * inference). The FP16 check of a proxy-ranked layer has its output's range but not its float16 rounding noise
 * (a round trip in the graph cost four more passes over every layer output); a measured layer gets both from its
 * float twin, as in the exhaustive search. The per-image sums are added in image order, so the numbers do not depend on
 * the batch size.
 */
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import { floatValues, snrFromSums } from '../compare/metrics.js';
import { saveOnnxModel } from '../onnx/model.js';
import type { EvaluationData } from './data.js';
import type { LayerPlan, VariantBuilder } from './variants.js';

export interface ProxyLayer {
  /** The layer's INT8 output (on FP32 input) against its FP32 output (dB), over every image. */
  outputSnrDb: number;
  /** The largest |value| of the layer's FP32 output (the FP16 range check). */
  outputAbsMax: number;
}

export interface ProxyResult {
  layers: Map<string, ProxyLayer>;
  runs: number;
  seconds: number;
}

export async function proxyPass(
  builder: VariantBuilder,
  layers: readonly LayerPlan[],
  data: EvaluationData,
  options: { threads?: number; file?: string; signal?: AbortSignal } = {},
): Promise<ProxyResult> {
  const started = performance.now();
  const proxy = builder.buildProxy(layers);
  const session = await onnxruntimeBackend.open({ path: options.file ?? 'proxy.onnx', bytes: saveOnnxModel(proxy.model) }, { ...(options.threads ? { threads: options.threads } : {}) });
  const sums = proxy.pairs.map(() => ({ ref2: 0, err2: 0, absMax: 0 }));
  const fetch = proxy.pairs.flatMap((p) => [p.sums.ref2, p.sums.err2, p.sums.max, p.sums.min]);
  let runs = 0;
  try {
    for (const batch of data.batches) {
      options.signal?.throwIfAborted();
      const n = batch.files.length;
      const out = await session.run({ [data.inputName]: { dtype: 'float32', dims: batch.dims, data: batch.data } }, fetch);
      runs++;
      proxy.pairs.forEach((p, k) => {
        const ref2 = floatValues(out[p.sums.ref2]!, p.sums.ref2);
        const err2 = floatValues(out[p.sums.err2]!, p.sums.err2);
        const max = floatValues(out[p.sums.max]!, p.sums.max);
        const min = floatValues(out[p.sums.min]!, p.sums.min);
        const s = sums[k]!;
        // Image by image, in order (see the file comment).
        for (let j = 0; j < n; j++) {
          s.ref2 += ref2[j]!;
          s.err2 += err2[j]!;
          s.absMax = Math.max(s.absMax, Math.abs(max[j]!), Math.abs(min[j]!));
        }
      });
    }
  } finally {
    await session.release();
  }
  const result = new Map<string, ProxyLayer>();
  proxy.pairs.forEach((p, k) => result.set(p.layer, { outputSnrDb: snrFromSums(sums[k]!.ref2, sums[k]!.err2), outputAbsMax: sums[k]!.absMax }));
  return { layers: result, runs, seconds: (performance.now() - started) / 1000 };
}
