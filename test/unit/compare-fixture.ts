/**
 * A realistic synthetic comparison, built with the real accumulators (not hand-written results): a 5-class
 * classifier and a dense probability map, FP32 against FP16 (tiny noise) and three INT8 "algorithms" (noise of
 * different sizes), layerwise tensors, and |x| histograms in the stats format. Seeded, so it is the same every run.
 * Used by the renderer tests and the browser test.
 */
import type { Tensor } from '../../src/tensor.js';
import type { TensorStatistics } from '../../src/stats/types.js';
import { buildCompareReport, buildHistograms, VariantComparison } from '../../src/compare/report.js';
import type { CompareReport, Precision, TradeoffCurve } from '../../src/compare/types.js';

export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

function softmaxRows(logits: Float32Array, classes: number): Float32Array {
  const out = new Float32Array(logits.length);
  for (let r = 0; r < logits.length / classes; r++) {
    let m = -Infinity;
    for (let k = 0; k < classes; k++) m = Math.max(m, logits[r * classes + k]!);
    let s = 0;
    for (let k = 0; k < classes; k++) s += Math.exp(logits[r * classes + k]! - m);
    for (let k = 0; k < classes; k++) out[r * classes + k] = Math.exp(logits[r * classes + k]! - m) / s;
  }
  return out;
}

export const NASTY_NAME = `/features.3/conv<1>/"Add"&'x'_output_0`;

export interface SyntheticOptions {
  images?: number;
  batchSize?: number;
  labels?: boolean;
  dense?: boolean;
  maxDrop?: number;
  tradeoff?: boolean;
  files?: string[];
}

const VARIANTS: Array<{ name: string; precision: Precision; algorithm?: string; noise: number }> = [
  { name: 'fp32', precision: 'fp32', noise: 0 },
  { name: 'fp16', precision: 'fp16', noise: 0.002 },
  { name: 'int8-entropy2', precision: 'int8', algorithm: 'entropy2', noise: 0.12 },
  { name: 'int8-minmax', precision: 'int8', algorithm: 'minmax', noise: 0.35 },
  { name: 'int8-percentile', precision: 'int8', algorithm: 'percentile', noise: 0.18 },
];

export const LAYER_NAMES: string[] = [
  'input',
  ...Array.from({ length: 24 }, (_, i) => `/features/features.${i + 1}/conv/conv.0/Conv_output_0`),
  NASTY_NAME,
  '/classifier/Gemm_output_0',
];

export function syntheticReport(options: SyntheticOptions = {}): CompareReport {
  const images = options.images ?? 23;
  const batchSize = options.batchSize ?? 4;
  const classes = 8;
  const H = 8;
  const W = 8;
  const rand = lcg(1234);
  const files = options.files ?? Array.from({ length: images }, (_, i) => `val/${['cat', 'dog', 'cow', 'fox', 'owl'][i % 5]}/img_${String(i).padStart(3, '0')} <&>.jpg`);
  const logits = Float32Array.from({ length: images * classes }, () => 2 * gaussian(rand));
  const probs = softmaxRows(logits, classes);
  const labels = Array.from({ length: images }, (_, i) => (options.labels ? (i % 7 === 3 ? undefined : i % classes) : undefined));
  const maps = Float32Array.from({ length: images * H * W }, () => rand());
  const layerRef = LAYER_NAMES.map(() => Float32Array.from({ length: images * 16 }, () => gaussian(rand)));

  const comparisons = VARIANTS.map((v) => {
    const vr = lcg(99 + v.noise * 1000);
    const noisyLogits = logits.map((x) => x + v.noise * 3 * gaussian(vr));
    const vProbs = v.noise === 0 ? probs : softmaxRows(noisyLogits, classes);
    const vMaps = v.noise === 0 ? maps : maps.map((x) => Math.min(1, Math.max(0, x + v.noise * 0.5 * gaussian(vr))));
    const vLayers = layerRef.map((t, li) => (v.noise === 0 ? t : t.map((x) => x + v.noise * (0.2 + li / LAYER_NAMES.length) * gaussian(vr))));
    const cmp = new VariantComparison({ name: v.name, precision: v.precision, ...(v.algorithm ? { algorithm: v.algorithm } : {}) }, { worstCount: 6 });
    for (let start = 0; start < images; start += batchSize) {
      const n = Math.min(batchSize, images - start);
      const slice = (a: Float32Array, per: number) => a.slice(start * per, (start + n) * per);
      const ref: Record<string, Tensor> = { output: { dtype: 'float32', dims: [n, classes], data: slice(probs, classes) } };
      const out: Record<string, Tensor> = { output: { dtype: 'float32', dims: [n, classes], data: slice(vProbs, classes) } };
      if (options.dense) {
        ref['prob_map'] = { dtype: 'float32', dims: [n, 1, H, W], data: slice(maps, H * W) };
        out['prob_map'] = { dtype: 'float32', dims: [n, 1, H, W], data: slice(vMaps, H * W) };
      }
      cmp.addOutputs(ref, out, files.slice(start, start + n), labels.slice(start, start + n), options.dense ? ['output', 'prob_map'] : ['output']);
      if (v.precision === 'int8') {
        const lr: Record<string, Tensor> = {};
        const lv: Record<string, Tensor> = {};
        LAYER_NAMES.forEach((name, li) => {
          lr[name] = { dtype: 'float32', dims: [n, 16], data: slice(layerRef[li]!, 16) };
          lv[name] = { dtype: 'float32', dims: [n, 16], data: slice(vLayers[li]!, 16) };
        });
        cmp.addLayers(lr, lv, LAYER_NAMES);
      }
    }
    return cmp.result(undefined, new Map(LAYER_NAMES.map((n, i) => [n, i === 0 ? 'Input' : 'Conv'])));
  });

  // |x| histograms in the stored-statistics format: 2048 bins over a power-of-two range.
  const stats: TensorStatistics[] = LAYER_NAMES.slice(0, 8).map((name, i) => {
    const hr = lcg(7 + i);
    const hist = new Float64Array(2048);
    const range = 2 ** (i % 4);
    let absMax = 0;
    let count = 0;
    for (let k = 0; k < 4000; k++) {
      const v = Math.min(range * 0.999, (range / 12) * -Math.log(Math.max(hr(), 1e-9)));
      hist[Math.floor((v / range) * 2048)]! += 1;
      absMax = Math.max(absMax, v);
      count++;
    }
    return { name, count, nanCount: 0, posInfCount: 0, negInfCount: 0, zeroCount: 0, min: -absMax, max: absMax, absMax, range, hist };
  });
  const amax = (f: number) => new Map(stats.map((s) => [s.name, s.absMax * f]));
  const winnerLayers = comparisons.find((c) => c.name === 'int8-entropy2')!.layers!;
  const histograms = buildHistograms(
    stats,
    [
      { algorithm: 'entropy2', amax: amax(0.45) },
      { algorithm: 'minmax', amax: amax(1) },
      { algorithm: 'percentile', amax: amax(0.7) },
    ],
    new Map(winnerLayers.map((l) => [l.name, l.snrDb])),
  );
  const tradeoff: TradeoffCurve | undefined = options.tradeoff
    ? {
        metric: 'top-1 agreement',
        totalLayers: 27,
        points: [
          { int8Layers: 27, value: 0.906 },
          { int8Layers: 26, value: 0.93 },
          { int8Layers: 25, value: 0.953 },
          { int8Layers: 24, value: 0.977 },
          { int8Layers: 22, value: 0.977 },
        ],
        chosen: 3,
        target: 0.97,
      }
    : undefined;

  return buildCompareReport({
    tool: { name: 'trt-calib', version: '0.1.0' },
    model: {
      file: 'models/mobile<net>.onnx',
      inputs: [{ name: 'input', dims: ['N', 3, 224, 224] }],
      outputs: [{ name: 'output', dims: ['N', classes] }],
    },
    data: {
      source: 'images/val',
      images,
      skipped: 0,
      ...(options.labels ? { labels: { source: 'folders', classes: ['cat', 'dog', 'cow', 'fox', 'owl', 'elk', 'bee', 'ant'], labelled: labels.filter((l) => l !== undefined).length, unlabelled: labels.filter((l) => l === undefined).length } } : {}),
    },
    settings: {
      backend: 'onnxruntime',
      batchSize,
      precisions: ['fp32', 'fp16', 'int8'],
      algorithms: ['entropy2', 'minmax', 'percentile'],
      threshold: 0.3,
      worstCount: 6,
      ...(options.maxDrop !== undefined ? { maxDrop: options.maxDrop } : {}),
    },
    variants: comparisons,
    histograms,
    ...(tradeoff ? { tradeoff } : {}),
  });
}
