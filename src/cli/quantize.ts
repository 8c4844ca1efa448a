import { Command, Option } from 'commander';
import { DEFAULT_OUT_DIR } from '../app/defaults.js';
import type { QuantizeResult } from '../app/quantize.js';
import { ALGORITHM_NAMES } from '../calibrators/registry.js';
import { UserError } from '../errors.js';
import { capThreads, threadsLimitHelp } from '../util/threads.js';
import { addCommonOptions, emit, parseInteger, parseNumber, reporterFor, type CommonOptions } from './common.js';
import { addPreprocessOptions, preprocessOptionsFrom, type PreprocessCliValues } from './preprocess-options.js';
import { addTaskOptions, taskFlagsFrom, type TaskCliValues } from './task-options.js';

interface QuantizeCliValues extends CommonOptions, Omit<PreprocessCliValues, 'data'>, TaskCliValues {
  model: string;
  data?: string;
  cache?: string;
  algo: string;
  precision: 'int8' | 'fp16';
  precisionMap?: string;
  forTensorrt?: boolean;
  biasCorrection?: boolean;
  biasCorrectionMode?: 'full' | 'weights';
  weightSearch?: boolean;
  mixed?: 'auto';
  maxDrop?: number;
  maxLayers?: string;
  precisionOut?: string;
  out?: string;
  outDir: string;
  threads?: number;
  protect: boolean;
  stats?: string;
  highPrecision: 'fp16' | 'fp32';
  io: 'fp16' | 'fp32';
}

const EXAMPLES = `
Examples:
  # INT8 Q/DQ model from a calibration cache (explicit quantization: TensorRT 10 and 11, onnxruntime)
  trt-calib quantize --model model.onnx --cache calib-cache/model.entropy2.cache --out model.int8.onnx

  # calibrate on images first, then quantize
  trt-calib quantize --model model.onnx --data ./images --preset imagenet --algo percentile

  # bias correction: scales from the cache, the shifts measured on the calibration images
  trt-calib quantize --model model.onnx --cache calib-cache/model.entropy2.cache --data ./calib --bias-correction

  # keep some layers in FP16/FP32 (a map from trt-calib sensitivity --max-drop, or written by hand)
  trt-calib quantize --model model.onnx --cache calib-cache/model.entropy2.cache --precision-map calib-cache/model.precision.json

  # keep the most sensitive layers out of INT8 until top-1 agreement with FP32 drops at most 1 point on ./val
  trt-calib quantize --model model.onnx --cache calib-cache/model.entropy2.cache --data ./val --mixed auto --max-drop 1

  # TensorRT 11 (strongly typed): INT8 where there are Q/DQ pairs, FP16 for the rest, FP32 where FP16 is unsafe
  trt-calib quantize --model model.onnx --data ./images --preset imagenet --high-precision fp16 --out model.int8-fp16.onnx
  trt-calib quantize --model model.onnx --cache calib-cache/model.entropy2.cache --stats calib-cache/model.stats.msgpack --high-precision fp16

  # FP16 model: onnxruntime-runnable (to measure FP16 accuracy), or a pure float16 graph for TensorRT
  trt-calib quantize --model model.onnx --precision fp16
  trt-calib quantize --model model.onnx --precision fp16 --for-tensorrt --out model.fp16.onnx

Placement of the Q/DQ pairs and the weight scheme: docs/quantization.md.`;

export function register(program: Command): void {
  const cmd = program
    .command('quantize')
    .description('write a Q/DQ INT8 ONNX model (explicit quantization) from a calibration cache, or an FP16 model')
    .requiredOption('--model <file>', 'FP32 ONNX model')
    .option('--cache <file>', 'calibration cache with the activation scales')
    .option('--algo <name>', `with --data: the calibration algorithm (${ALGORITHM_NAMES.join(', ')})`, 'entropy2')
    .addOption(new Option('--precision <p>', 'int8 (Q/DQ) or fp16').choices(['int8', 'fp16']).default('int8'))
    .option('--precision-map <file>', 'JSON {layer: "int8"|"fp16"|"fp32"}: layers kept out of INT8')
    .addOption(new Option('--mixed <mode>', 'auto: keep the layers that hurt accuracy most in FP16/FP32 until --max-drop is met (needs --cache and --data)').choices(['auto']))
    .option('--max-drop <points>', 'with --mixed auto: the largest top-1 drop against FP32 allowed, in points', parseNumber(0, 100))
    .option('--max-layers <n|p%>', 'with --mixed auto: at most this many layers out of INT8')
    .option('--precision-out <file>', 'with --mixed auto: the precision map to write (default <out-dir>/<model>.precision.json)')
    .option('--weight-search', 'INT8: per output channel, the weight scale (20 points from 0.5 to 1.0 of max|W|/127) that minimises the layer\'s output error on --data (the calibration images): docs/algorithms.md')
    .option('--bias-correction', 'INT8: shift each INT8 layer\'s biases by the mean output change its quantization causes, measured on --data (the calibration images; with or without --cache): docs/algorithms.md')
    .addOption(new Option('--bias-correction-mode <mode>', 'weights (default): the shift the weights\' rounding causes, on the same quantized input; full: the shift against the FP32 model (weights and inputs quantized; hurt MobileNetV2 with clipping calibrators)').choices(['weights', 'full']).default('weights'))
    .option('--for-tensorrt', 'fp16: a pure float16 graph, without the float32 emulation onnxruntime\'s CPU kernels need')
    .option('-o, --out <file>', `output model (default ${DEFAULT_OUT_DIR}/<model>.<algo>.int8.onnx or .fp16.onnx)`)
    .option('--out-dir <dir>', 'folder for the default outputs', DEFAULT_OUT_DIR)
    .option('--threads <n>', `onnxruntime intra-op threads when calibrating; ${threadsLimitHelp()}`, parseInteger(1, 1024))
    .option('--no-protect', 'put Q/DQ on every tensor with a scale, even those INT8 would destroy (see docs/quantization.md)')
    .option('--stats <file>', 'with --cache: statistics for the protection decisions and the FP16 range rules (default <out-dir>/<model>.stats.msgpack when present; else the cache\'s ranges)')
    .addOption(new Option('--high-precision <type>', 'int8: the type of the layers that are not INT8; fp16 writes the INT8 + FP16 model TensorRT 11 builds as it is').choices(['fp32', 'fp16']).default('fp32'))
    .addOption(new Option('--io <type>', 'with --high-precision fp16: the type of the graph inputs and outputs').choices(['fp32', 'fp16']).default('fp32'));
  addTaskOptions(cmd, { what: 'the --mixed auto budget' });
  addPreprocessOptions(cmd, { dataRequired: false });
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (opts: QuantizeCliValues) => {
    const reporter = reporterFor(opts);
    if (opts.mixed && opts.maxDrop === undefined) throw new UserError('--mixed auto needs --max-drop POINTS (the accuracy budget).');
    if (!opts.mixed && (opts.maxDrop !== undefined || opts.maxLayers !== undefined)) throw new UserError('--max-drop and --max-layers go with --mixed auto.');
    const task = taskFlagsFrom(opts);
    if (!opts.mixed && Object.keys(task).some((k) => k !== 'task' || task.task !== 'auto')) {
      throw new UserError('--task and its flags (--boxes, --scores, --keys...) go with --mixed auto: they say what its budget is in points of.');
    }
    const { quantize } = await import('../app/quantize.js');
    const result = await quantize({
      model: opts.model,
      precision: opts.precision,
      cache: opts.cache,
      data: opts.data !== undefined ? preprocessOptionsFrom(opts as PreprocessCliValues) : undefined,
      algorithm: opts.algo,
      precisionMap: opts.precisionMap,
      forTensorRT: opts.forTensorrt,
      biasCorrection: opts.biasCorrection,
      biasCorrectionMode: opts.biasCorrectionMode,
      weightSearch: opts.weightSearch,
      ...(opts.mixed ? { mixed: { maxDrop: opts.maxDrop!, maxLayers: opts.maxLayers, precisionOut: opts.precisionOut, task } } : {}),
      out: opts.out,
      outDir: opts.outDir,
      threads: capThreads(opts.threads, reporter),
      protect: opts.protect,
      stats: opts.stats,
      highPrecision: opts.highPrecision,
      io: opts.io,
      reporter,
    });
    emit(opts, result, () => text(result));
  });
}

function text(r: QuantizeResult): string {
  const lines = [`wrote ${r.out} (${r.precision}${r.algorithm ? `, ${r.algorithm} scales` : ''}${r.cache ? ` from ${r.cache}` : ''})`];
  if (r.precision === 'int8') {
    lines.push(`  ${r.int8Layers} layers in INT8, ${r.quantizedTensors} activations quantized, ${r.fp16Layers} FP16 and ${r.fp32Layers} FP32 layers kept by the precision map`);
    if (r.protected.length > 0) {
      lines.push(`  ${r.protected.length} tensor(s) kept out of INT8 (no Q/DQ; --no-protect quantizes them):`);
      for (const p of r.protected) lines.push(`    ${p.tensor} [${p.kind}]: ${p.reason}`);
    }
    if (r.layersByType) {
      const count = (t: keyof NonNullable<QuantizeResult['layersByType']>) => {
        const byOp = r.layersByType![t];
        const n = Object.values(byOp).reduce((a, b) => a + b, 0);
        return `${n} ${t}${n ? ` (${Object.entries(byOp).map(([op, k]) => `${op} ${k}`).join(', ')})` : ''}`;
      };
      lines.push(`  layers: ${count('INT8')}; ${count('FP16')}; ${count('FP32')}`);
      const kept = r.keptFp32!;
      if (kept.tensors.length > 0) {
        lines.push(`  ${kept.tensors.length} tensor(s) kept in FP32:`);
        for (const t of kept.tensors.slice(0, 20)) lines.push(`    ${t.tensor}: ${t.reason}`);
      }
      const byOther = kept.layers.filter((l) => !l.reason.startsWith('reads or writes '));
      if (byOther.length > 0) {
        lines.push(`  ${byOther.length} other layer(s) kept in FP32:`);
        for (const l of byOther.slice(0, 20)) lines.push(`    ${l.layer} (${l.op}): ${l.reason}`);
      }
    }
    if (r.opset && r.opset.from !== r.opset.to) lines.push(`  opset ${r.opset.from} -> ${r.opset.to} (${r.layersByType ? 'float16 Q/DQ needs 19' : 'per-channel Q/DQ needs 13'})${r.opset.converted.length ? `, converted: ${r.opset.converted.join(', ')}` : ''}`);
  } else {
    lines.push(`  ${r.fp16Layers} nodes in FP16, ${r.fp32Layers} kept in FP32`);
  }
  if (r.weightSearch) {
    const w = r.weightSearch;
    lines.push(`  weight search: ${w.layers} layers, ${w.shrunk} of ${w.channels} channels below max|W|/127, on ${w.images} images (${w.passes} pass${w.passes === 1 ? '' : 'es'}, ${w.seconds.toFixed(1)} s); layers' output error ${w.errorBefore.toPrecision(4)} -> ${w.errorAfter.toPrecision(4)}`);
  }
  if (r.biasCorrection) {
    const b = r.biasCorrection;
    lines.push(`  bias correction: ${b.layers} layers on ${b.images} images (${b.passes} passes, ${b.seconds.toFixed(1)} s); mean |shift| ${b.meanAbsShift.toPrecision(3)}, largest ${b.maxAbsShift.toPrecision(3)}${b.largest ? ` (${b.largest.node})` : ''}`);
    for (const s of b.skipped.slice(0, 10)) lines.push(`    not corrected: ${s.node}: ${s.reason}`);
  }
  if (r.mixed) {
    lines.push(
      `  mixed precision: ${r.mixed.met ? 'budget met' : `budget NOT met (${r.mixed.reason})`}; ${r.mixed.nonInt8Layers} layer(s) out of INT8: ` +
        r.mixed.keptOut.map((k) => `${k.layer} (${k.precision})`).join(', ') +
        `; agreement ${(r.mixed.agreement * 100).toFixed(2)}% (drop ${r.mixed.drop.toFixed(2)} points), measured with the rest in ${r.mixed.highPrecision.toUpperCase()}; map ${r.mixed.precisionMap ?? '-'}`,
    );
  }
  if (r.skipped.length > 0) {
    lines.push(`  ${r.skipped.length} weighted layer(s) left in float:`);
    for (const s of r.skipped.slice(0, 10)) lines.push(`    ${s.node} (${s.op}): ${s.reason}`);
  }
  return lines.join('\n');
}
