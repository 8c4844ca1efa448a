import { Command, Option } from 'commander';
import type { CalibrateResult } from '../app/calibrate.js';
import { DEFAULT_OUT_DIR } from '../app/defaults.js';
import { TRT_CACHE_ALGORITHMS } from '../cache/trt-cache.js';
import { ALGORITHM_NAMES, CALIBRATORS, parseAlgorithms } from '../calibrators/registry.js';
import { summarizeSkipped } from '../datasets/skipped.js';
import { UserError } from '../errors.js';
import { capThreads, threadsLimitHelp } from '../util/threads.js';
import { addCommonOptions, emit, parseInteger, parseNumber, reporterFor, type CommonOptions } from './common.js';
import { addPreprocessOptions, preprocessOptionsFrom, describePreprocess, type PreprocessCliValues } from './preprocess-options.js';

interface CalibrateCliValues extends CommonOptions, Omit<PreprocessCliValues, 'data'> {
  data?: string;
  model: string;
  algo: string;
  biasCorrection?: boolean;
  biasCorrectionMode?: 'full' | 'weights';
  percentile?: number;
  trtVersion?: string;
  cacheAlgorithm?: string;
  out?: string;
  outDir: string;
  statsOut?: string;
  fromStats?: string;
  threads?: number;
  protect: boolean;
  shard?: string;
}

const EXAMPLES = `
Examples:
  # Entropy2 (TensorRT's default) cache for TensorRT 10.3, ImageNet preprocessing
  trt-calib --model model.onnx --data ./images --algo entropy2 --trt-version 10.3.0

  # every algorithm from one pass over the bundled fixtures (x/255, stretch to 224x224)
  trt-calib --model test/fixtures/models/mobilenet_v2_nsfw_224.onnx --data test/fixtures/images \\
            --preset raw01 --algo all --trt-version 10.3.0

  # a detector with a dynamic input: fix the calibration shape trtexec style
  trt-calib --model ppocr_v4_det.onnx --data ./street --preset paddleocr-det --shapes x:1x3x576x768 --trt-version 8.6.1

  # another algorithm later, from the stored statistics, without running the model
  trt-calib --model model.onnx --from-stats calib-cache/model.stats.msgpack --algo percentile --percentile 99.999 --trt-version 10.3.0

  # shard 2 of 4 (on 4 machines, or --shard auto in a Kubernetes Indexed Job or a Slurm array), merged later
  trt-calib --model model.onnx --data ./images --shard 2/4          # ${DEFAULT_OUT_DIR}/model.stats.2of4.msgpack
  trt-calib merge ${DEFAULT_OUT_DIR}/model.stats.*of4.msgpack --model model.onnx --algo entropy2 --trt-version 10.3.0

Outputs: ${DEFAULT_OUT_DIR}/<model>.<algo>.cache (one per algorithm) and ${DEFAULT_OUT_DIR}/<model>.stats.msgpack.
Tensors INT8 would destroy (a Concat of ranges more than 16x apart such as YOLO's boxes-with-scores head, score
branches, outliers) are left out of the caches and named in the summary; their layers are fp16 in
${DEFAULT_OUT_DIR}/<model>.protected.precision.json (for build --precision-map). --no-protect keeps them in.
trtexec --calib reads caches through an IInt8EntropyCalibrator2: give it an entropy2 cache, or write any algorithm's
scales under that header with --cache-algorithm EntropyCalibration2.`;

export function register(program: Command): void {
  const cmd = program
    .command('calibrate', { isDefault: true })
    .description('collect activation statistics on images and write TensorRT INT8 calibration caches (the default command)')
    .requiredOption('--model <file>', 'ONNX model')
    .option('--algo <names>', `calibration algorithm(s), comma-separated, or "all": ${ALGORITHM_NAMES.join(', ')}; or "auto" alone: per tensor, the amax among theirs that least disturbs what the tensor feeds`, 'entropy2')
    .option('--percentile <p>', 'percentile algorithm: the percentile of |x| kept', parseNumber(50, 100), 99.99)
    .option('--trt-version <version>', 'TensorRT version that will read the cache, e.g. 10.3.0 or 8.6.1 (default: the installed TensorRT)')
    .addOption(new Option('--cache-algorithm <name>', 'algorithm name in the cache header instead of the algorithm\'s own').choices([...TRT_CACHE_ALGORITHMS]))
    .option('-o, --out <file>', 'cache file (one algorithm only)')
    .option('--out-dir <dir>', 'folder for the caches and the statistics', DEFAULT_OUT_DIR)
    .option('--stats-out <file>', 'statistics file (default <out-dir>/<model>.stats.msgpack)')
    .option('--from-stats <file>', 'derive caches from stored statistics instead of running the model')
    .option('--shard <K/N|auto|auto/N>', 'collect statistics on the K-th of N slices of the images only (<model>.stats.<K>of<N>.msgpack, no cache; then trt-calib merge); auto: from JOB_COMPLETION_INDEX (with /N) or SLURM_ARRAY_TASK_ID/COUNT')
    .option('--no-protect', 'give every tensor a scale, even those INT8 would destroy (mixed-range Concats, score branches, outliers: see docs/quantization.md)')
    .option('--threads <n>', `onnxruntime intra-op threads (default: all cores, the statistics counted between its operators; all but one when counting from its outputs); ${threadsLimitHelp()}`, parseInteger(1, 1024))
    .option('--bias-correction', 'also write <out-dir>/<model>.<algo>.bc.onnx: the FP32 model with biases corrected for each cache\'s INT8 (build it with that cache): docs/algorithms.md')
    .addOption(new Option('--bias-correction-mode <mode>', 'weights (default): the shift the weights\' rounding causes, on the same quantized input; full: the shift against the FP32 model (weights and inputs quantized; hurt MobileNetV2 with clipping calibrators)').choices(['weights', 'full']).default('weights'))
    // Accepted so that the refusal can say why (a cache has no weight scales), instead of "unknown option".
    .addOption(new Option('--weight-search', 'not for caches: TensorRT picks the weight scales itself; use quantize --weight-search').hideHelp());
  addPreprocessOptions(cmd, { dataRequired: false });
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (opts: CalibrateCliValues) => {
    if ((opts as { weightSearch?: boolean }).weightSearch) {
      const { WEIGHT_SEARCH_IMPLICIT } = await import('../app/weight-search.js');
      throw new UserError(`calibrate writes calibration caches: ${WEIGHT_SEARCH_IMPLICIT}`, { hint: 'write a Q/DQ model with searched weight scales instead: trt-calib quantize --model M --cache C --data CALIB_DIR --weight-search' });
    }
    const reporter = reporterFor(opts);
    const data = opts.data !== undefined ? preprocessOptionsFrom(opts as PreprocessCliValues) : undefined;
    if (opts.algo.trim() === 'auto') {
      // Every algorithm's scales, then each tensor's choice among them (src/app/auto.ts).
      const { calibrateAuto } = await import('../app/auto.js');
      const result = await calibrateAuto({
        model: opts.model,
        data,
        fromStats: opts.fromStats,
        calibrator: { percentile: opts.percentile },
        trtVersion: opts.trtVersion,
        out: opts.out,
        outDir: opts.outDir,
        statsOut: opts.statsOut,
        threads: opts.threads,
        biasCorrection: opts.biasCorrection,
      biasCorrectionMode: opts.biasCorrectionMode,
        reporter,
      });
      emit(opts, { ...jsonSummary(result), auto: result.auto }, () =>
        [textSummary(result), `  auto       ${result.auto.file}  [${result.auto.header}]: ${Object.entries(result.auto.chosen).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`].join('\n'),
      );
      return;
    }
    const algorithms = parseAlgorithms(opts.algo);
    const { calibrate } = await import('../app/calibrate.js');
    const shard = opts.shard !== undefined ? (await import('../app/shard.js')).parseShard(opts.shard) : undefined;
    if (shard) {
      // A shard computes no scales; said rather than silently ignored (one command line may serve shards and merge).
      const ignored = ['algo', 'percentile', 'trtVersion', 'cacheAlgorithm'].filter((k) => cmd.getOptionValueSource(k) === 'cli');
      if (ignored.length > 0) reporter.warn(`${ignored.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} not used by ${shard.source}: the scales and caches come from trt-calib merge.`);
    }
    const result = await calibrate({
      model: opts.model,
      data,
      fromStats: opts.fromStats,
      algorithms,
      calibrator: { percentile: opts.percentile },
      trtVersion: opts.trtVersion,
      cacheAlgorithm: opts.cacheAlgorithm,
      out: opts.out,
      outDir: opts.outDir,
      statsOut: opts.statsOut,
      threads: capThreads(opts.threads, reporter),
      protect: opts.protect,
      shard,
      biasCorrection: opts.biasCorrection,
      biasCorrectionMode: opts.biasCorrectionMode,
      reporter,
    });
    if (result.preprocess && opts.verbose) reporter.info(`preprocessing: ${describePreprocess(result.preprocess)}`);
    emit(opts, jsonSummary(result), () => textSummary(result));
  });
}

export function jsonSummary(r: CalibrateResult) {
  return {
    model: r.model,
    trtVersion: r.trtVersion,
    caches: r.caches,
    statsFile: r.statsFile,
    statsSource: r.statsSource,
    images: { used: r.images.used, skipped: r.images.skipped, dropped: r.images.dropped },
    batchSize: r.batchSize,
    preprocess: r.preprocess,
    tensors: r.tensors,
    seconds: r.seconds,
    imagesPerSecond: r.imagesPerSecond,
    widest: r.widest,
    narrowest: r.narrowest,
    problems: r.problems,
    protected: r.protected,
    ...(r.protectedPrecisionMap ? { protectedPrecisionMap: r.protectedPrecisionMap } : {}),
    ...(r.biasCorrected ? { biasCorrected: r.biasCorrected } : {}),
    amax: r.amax,
    ...(r.shard ? { shard: r.shard } : {}),
  };
}

function num(n: number): string {
  return n === 0 ? '0' : Math.abs(n) >= 1e-3 && Math.abs(n) < 1e5 ? n.toPrecision(4) : n.toExponential(3);
}

export function textSummary(r: CalibrateResult): string {
  const lines: string[] = [];
  if (r.statsSource === 'collected') {
    lines.push(summarizeSkipped(r.images.skipped, r.images.used));
    lines.push(
      `${r.tensors} tensors in ${r.seconds.total.toFixed(2)} s (statistics ${r.seconds.collect.toFixed(2)} s at ${(r.imagesPerSecond ?? 0).toFixed(1)} images/s, scales ${r.seconds.algorithms.toFixed(2)} s)`,
    );
  } else {
    lines.push(`${r.tensors} tensors from ${r.statsFile} in ${r.seconds.total.toFixed(2)} s`);
  }
  if (r.shard) lines.push(`shard ${r.shard.index} of ${r.shard.count}: images ${r.shard.start + 1}..${r.shard.end} of the ${r.shard.selected} selected; no cache (trt-calib merge writes them from all ${r.shard.count} shards)`);
  // The version is echoed once, before the pass ("TensorRT cache version: ..."), and is in each cache's header below.
  for (const c of r.caches) lines.push(`  ${c.algorithm.padEnd(10)} ${c.file}  [${c.header}]`);
  for (const b of r.biasCorrected ?? []) {
    lines.push(`  ${b.algorithm.padEnd(10)} ${b.file}  [bias-corrected FP32 model: ${b.layers} layers, mean |shift| ${b.meanAbsShift.toPrecision(3)}, largest ${b.maxAbsShift.toPrecision(3)}, ${b.seconds.toFixed(1)} s]`);
  }
  if (r.statsSource !== 'file') lines.push(`  statistics ${r.statsFile}`);
  if (r.widest.length > 0) {
    lines.push('widest ranges:   ' + r.widest.map((t) => `${t.name} (${num(t.absMax)})`).join(', '));
    lines.push('narrowest ranges: ' + r.narrowest.map((t) => `${t.name} (${num(t.absMax)})`).join(', '));
  }
  if (r.problems.length > 0) {
    lines.push(`${r.problems.length} tensor(s) to look at:`);
    for (const p of r.problems.slice(0, 20)) lines.push(`  ${p.name}: ${p.problem}`);
    if (r.problems.length > 20) lines.push(`  ... ${r.problems.length - 20} more (--json for all)`);
  }
  if (r.protected.length > 0) {
    lines.push(`${r.protected.length} tensor(s) kept out of INT8 (not in the caches; --no-protect keeps them in):`);
    for (const p of r.protected) lines.push(`  ${p.tensor} [${p.kind}]: ${p.reason}`);
    if (r.protectedPrecisionMap) lines.push(`  their layers in FP16 for trt-calib build --precision-map ${r.protectedPrecisionMap}`);
  }
  const nonTrtexec = r.caches.filter((c) => !c.header.endsWith('-EntropyCalibration2'));
  if (nonTrtexec.length > 0) {
    lines.push(
      `note: trtexec --calib reads only EntropyCalibration2 caches and silently recalibrates on random data otherwise; ` +
        `for trtexec, use the entropy2 cache or re-run with --cache-algorithm EntropyCalibration2 (${nonTrtexec.map((c) => CALIBRATORS[c.algorithm].cacheName).join(', ')} suit the matching IInt8 calibrator classes).`,
    );
  }
  return lines.join('\n');
}
