/**
 * The proxy pass: every layer's own output SNR (INT8 on FP32 input against FP32) from ONE run over the kept
 * batches, with the proxy model of VariantBuilder.buildProxy (each layer beside its INT8 twin, and their difference).
 *
 * Method: the layer-wise quantization error analysis of PPQ (`layerwise_error_analyse`: each layer quantized alone
 * on FP32 input, its output's noise-to-signal ratio against FP32) and of onnxruntime's qdq_loss_debug, used as a
 * cheap first ranking (in the spirit of HAWQ/NNCF's proxy-then-measure mixed-precision search: a per-layer
 * proxy orders the candidates, the task metric is measured only where it is needed; see docs/mixed-precision.md).
 * The SNR of a pair is the one one-at-a-time reports through its float twin (`outputSnrDb`): the same two
 * tensors, so the same number up to onnxruntime's fusions and the float32 difference.
 *
 * Cost: the layer output and the difference are summed by the FP32 noise pass's counting nodes
 * (measureTensorNoise, src/sensitivity/data.ts: through onnxruntime's C API where its library loads), image by
 * image while they are in cache; nothing is copied out of onnxruntime. Each sum is TensorNoise's (float64, each
 * image from zero, added in image order): the same numbers whatever the batch size or the path. The FP16 check
 * of a proxy-ranked layer gets its output's range and its float16 rounding SNR from the same sums (TensorNoise's
 * sample of every 8th value).
 */
import { snrFromSums } from '../compare/metrics.js';
import { measureTensorNoise, type EvaluationData } from './data.js';
import type { TensorNoise } from './noise.js';
import type { LayerPlan, VariantBuilder } from './variants.js';

export interface ProxyLayer {
  /** The layer's INT8 output (on FP32 input) against its FP32 output (dB), over every image. */
  outputSnrDb: number;
  /** The largest |value| of the layer's FP32 output (the FP16 range check). */
  outputAbsMax: number;
  /** float16 rounding SNR of the layer's FP32 output (dB; TensorNoise's sample). */
  outputFp16SnrDb: number;
}

export interface ProxyResult {
  layers: Map<string, ProxyLayer>;
  /** The noise of `options.inputs`, counted in the same run (the FP32 tensors of the proxy's graph). */
  inputs?: Map<string, TensorNoise>;
  runs: number;
  seconds: number;
}

export async function proxyPass(
  builder: VariantBuilder,
  layers: readonly LayerPlan[],
  data: EvaluationData,
  options: { threads?: number; file?: string; signal?: AbortSignal; inputs?: ReadonlyMap<string, number | undefined> } = {},
): Promise<ProxyResult> {
  const started = performance.now();
  const proxy = builder.buildProxy(layers);
  // The layers' inputs with their INT8 scale first: a layer's output that is another's input keeps that scale
  // (its signal, range and FP16 sums are the same with or without one).
  const measure = new Map<string, number | undefined>(options.inputs ?? []);
  for (const p of proxy.pairs) {
    if (!measure.has(p.output)) measure.set(p.output, undefined);
    measure.set(p.error, undefined);
  }
  const { noise } = await measureTensorNoise(data, {
    modelFile: options.file ?? 'proxy.onnx',
    model: proxy.model,
    fromFile: false,
    measure,
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const result = new Map<string, ProxyLayer>();
  for (const p of proxy.pairs) {
    const ref = noise.get(p.output)!;
    const err = noise.get(p.error)!;
    result.set(p.layer, { outputSnrDb: snrFromSums(ref.signal, err.signal), outputAbsMax: ref.absMax, outputFp16SnrDb: ref.fp16SnrDb });
  }
  const inputs = options.inputs ? new Map([...options.inputs.keys()].map((name) => [name, noise.get(name)!])) : undefined;
  return { layers: result, ...(inputs ? { inputs } : {}), runs: data.batches.length, seconds: (performance.now() - started) / 1000 };
}
