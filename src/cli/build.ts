import { Command, Option } from 'commander';
import {
  TRT_CALIBRATION_ALGORITHM_NAMES,
  TRT_CALIBRATION_ALGORITHMS,
  buildEngine,
  requireTensorRT,
  type EngineBuildResult,
  type TrtCalibrationAlgorithm,
} from '../backends/tensorrt.js';
import type { Dataset } from '../datasets/types.js';
import { addCommonOptions, emit, parseInteger, parseNumber, reporterFor, type CommonOptions } from './common.js';
import { addPreprocessOptions, datasetFromOptions, describePreprocess, preprocessOptionsFrom, trackSkips, type PreprocessCliValues } from './preprocess-options.js';

interface BuildCliValues extends CommonOptions, Omit<PreprocessCliValues, 'data'> {
  data?: string;
  model: string;
  out: string;
  int8?: boolean;
  fp16?: boolean;
  stronglyTyped?: boolean;
  cache?: string;
  algo: TrtCalibrationAlgorithm;
  quantile?: number;
  regressionCutoff?: number;
  cacheOut?: string;
  precisionMap?: string;
  precisionConstraints: 'obey' | 'prefer';
  workspace?: number;
  timingCache?: string;
  minShapes?: string;
  optShapes?: string;
  maxShapes?: string;
  device?: number;
  trtLogLevel: 'error' | 'warning' | 'info' | 'verbose';
}

const EXAMPLES = `
Examples:
  # INT8 from a cache written by \`trt-calib calibrate\` (TensorRT reads its scales and skips calibration)
  trt-calib build --model model.onnx --int8 --cache calib-cache/model.entropy2.cache --out model.engine

  # INT8 + FP16 with TensorRT's own Entropy2 calibrator fed with images, layers kept in FP16 by a precision map
  trt-calib build --model model.onnx --int8 --fp16 --data ./images --preset imagenet --batch 8 --algo entropy2 \\
                  --precision-map calib-cache/model.precision.json --out model.engine

  # dynamic input: an optimization profile, trtexec style; a timing cache to speed up rebuilds
  trt-calib build --model det.onnx --fp16 --min-shapes x:1x3x320x320 --opt-shapes x:1x3x640x640 \\
                  --max-shapes x:4x3x1280x1280 --timing-cache det.timing --out det.engine

  # TensorRT 11 (strongly typed, no calibrators): the INT8 + FP16 model, as it is
  trt-calib quantize --model model.onnx --data ./images --high-precision fp16 --out model.int8-fp16.onnx
  trt-calib build --model model.int8-fp16.onnx --out model.engine

Needs the TensorRT bridge (built by npm install when TensorRT and CUDA are found; \`trt-calib doctor\` tells).
The cache TensorRT writes after --data calibration goes to calib-cache/<model>.tensorrt-<algo>.cache.`;

export function register(program: Command): void {
  const cmd = program
    .command('build')
    .description('build a TensorRT engine (INT8 from a cache or TensorRT\'s calibrators, FP16, per-layer precisions) through the native bridge')
    .requiredOption('--model <file>', 'ONNX model (on TensorRT 11: the INT8 + FP16 model from `trt-calib quantize --high-precision fp16`)')
    .requiredOption('-o, --out <file>', 'engine file to write (atomically)')
    .option('--int8', 'INT8 (scales from --cache, --data, or the model\'s Q/DQ nodes)')
    .option('--fp16', 'FP16 kernels allowed')
    .option('--strongly-typed', 'strongly typed network: types from the model (TensorRT 9-10; always on in 11)')
    .option('--cache <file>', 'calibration cache to build with (from `trt-calib calibrate`, or TensorRT\'s)')
    .addOption(
      new Option('--algo <name>', `TensorRT calibrator for --data: ${TRT_CALIBRATION_ALGORITHM_NAMES.map((a) => `${a} (${TRT_CALIBRATION_ALGORITHMS[a].cacheName})`).join(', ')}`)
        .choices(TRT_CALIBRATION_ALGORITHM_NAMES)
        .default('entropy2'),
    )
    .option('--quantile <q>', 'legacy calibrator: quantile (TensorRT\'s default 0.5)', parseNumber(0, 1))
    .option('--regression-cutoff <r>', 'legacy calibrator: regression cutoff (default 0.5)', parseNumber(0, 1))
    .option('--cache-out <file>', 'where the cache TensorRT writes after --data calibration goes')
    .option('--precision-map <file>', 'JSON {"<ONNX node>": "int8" | "fp16" | "fp32"}: per-layer precisions (TensorRT 8.6-10)')
    .addOption(new Option('--precision-constraints <how>', 'obey: fail if a layer cannot run in its precision; prefer: fall back with a warning').choices(['obey', 'prefer']).default('obey'))
    .option('--workspace <MiB>', 'workspace memory pool limit in MiB', parseInteger(1, 1 << 24))
    .option('--timing-cache <file>', 'timing cache: read if it exists, written back after the build')
    .option('--min-shapes <spec>', 'optimization profile minimum, e.g. x:1x3x320x320 (with --opt-shapes and --max-shapes)')
    .option('--opt-shapes <spec>', 'optimization profile optimum')
    .option('--max-shapes <spec>', 'optimization profile maximum')
    .option('--device <n>', 'CUDA device index', parseInteger(0, 1023))
    .addOption(new Option('--trt-log-level <level>', 'TensorRT messages shown').choices(['error', 'warning', 'info', 'verbose']).default('warning'));
  addPreprocessOptions(cmd, { dataRequired: false });
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (opts: BuildCliValues) => {
    // First: without the bridge nothing below can run, and the user should hear so before anything else.
    await requireTensorRT();
    const reporter = reporterFor(opts);
    const skips = trackSkips(reporter);
    const data = opts.data !== undefined ? preprocessOptionsFrom(opts as PreprocessCliValues) : undefined;
    const result = await buildEngine({
      model: opts.model,
      out: opts.out,
      int8: opts.int8,
      fp16: opts.fp16,
      stronglyTyped: opts.stronglyTyped,
      cache: opts.cache,
      calibrationData: data
        ? async (input) => {
            const { dataset, config } = await datasetFromOptions(data, input);
            if (opts.verbose) reporter.info(describePreprocess(config));
            // Unreadable images are reported as they are skipped.
            const wrapped: Dataset = {
              inputName: dataset.inputName,
              preprocess: dataset.preprocess,
              files: dataset.files,
              size: dataset.size,
              batchSize: dataset.batchSize,
              imageDims: dataset.imageDims,
              batches: (o) => dataset.batches({ ...o, onSkip: skips.onSkip }),
            };
            return wrapped;
          }
        : undefined,
      algorithm: opts.algo,
      quantile: opts.quantile,
      regressionCutoff: opts.regressionCutoff,
      cacheOut: opts.cacheOut,
      precisionMap: opts.precisionMap,
      precisionConstraints: opts.precisionConstraints,
      workspaceMiB: opts.workspace,
      timingCache: opts.timingCache,
      shapes: { fixed: opts.shapes, min: opts.minShapes, opt: opts.optShapes, max: opts.maxShapes },
      device: opts.device,
      logLevel: opts.trtLogLevel,
      reporter,
    });
    emit(opts, { ...result, skipped: skips.skipped }, () => textSummary(result, skips.skipped.length));
  });
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function textSummary(r: EngineBuildResult, skipped: number): string {
  const lines: string[] = [];
  lines.push(`${r.out} (${mib(r.bytes)}) built in ${r.seconds.toFixed(1)} s with TensorRT ${r.tensorrt.library}`);
  const precision = [r.precision.int8 ? 'INT8' : undefined, r.precision.fp16 ? 'FP16' : undefined, 'FP32'].filter(Boolean).join(' + ');
  lines.push(`precision: ${precision}${r.precision.stronglyTyped ? ' (strongly typed)' : ''}${r.precision.layerConstraints > 0 ? `, ${r.precision.layerConstraints} layer(s) constrained by the precision map` : ''}`);
  const c = r.calibration;
  if (c.mode === 'cache') lines.push(`scales: ${c.cache} (${c.algorithm}, ${c.entries} tensors)`);
  else if (c.mode === 'calibrated') {
    lines.push(
      `scales: TensorRT ${c.algorithm} calibrator on ${c.images} images in ${c.batches} batches of ${c.batchDims.join('x')}` +
        `${c.droppedImages > 0 ? ` (${c.droppedImages} left out: last partial batch)` : ''}${skipped > 0 ? `, ${skipped} unreadable skipped` : ''}`,
    );
    if (c.cacheOut) lines.push(`TensorRT's cache: ${c.cacheOut}${c.cacheTensors !== undefined ? ` (${c.cacheTensors} tensors)` : ''}`);
  } else if (c.mode === 'qdq') lines.push(`scales: the model's ${r.precision.qdqLayers} Q/DQ layers`);
  for (const p of r.profile) {
    const same = p.min.join('x') === p.max.join('x');
    lines.push(`profile ${p.input}: ${same ? p.opt.join('x') : `${p.min.join('x')} .. ${p.opt.join('x')} .. ${p.max.join('x')}`}`);
  }
  if (r.timingCache) lines.push(`timing cache: ${r.timingCache}`);
  return lines.join('\n');
}
