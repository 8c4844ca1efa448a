import { UserError } from '../errors.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_BATCH, DEFAULT_OUT_DIR } from '../app/defaults.js';
import { GateError } from '../errors.js';
import { precisionMapPath } from '../precision/map.js';
import type { SensitivityReport } from '../sensitivity/analyze.js';
import { DEFAULT_MAX_MEMORY_BYTES } from '../sensitivity/data.js';
import type { MixedResult } from '../sensitivity/mixed.js';
import { DEFAULT_MEASURE, DEFAULT_RANK_METRIC, MEASURES, PROXY_CANDIDATE_SHARE, PROXY_MARGIN_DB, PROXY_MIN_CANDIDATES, RANK_METRICS, type MeasureChoice, type RankMetric } from '../sensitivity/rank.js';
import { renderMixed, renderSensitivity } from '../sensitivity/render.js';
import { writeFileAtomic } from '../util/fs.js';
import { prepareOutputs } from '../util/outputs.js';
import { capThreads, threadsLimitHelp } from '../util/threads.js';
import { addCommonOptions, emit, parseInteger, parseNumber, reporterFor, type CommonOptions } from './common.js';
import { addPreprocessOptions, preprocessOptionsFrom, type PreprocessCliValues } from './preprocess-options.js';
import type { ShardSpec } from '../app/shard.js';
import { addTaskOptions, taskFlagsFrom, type TaskCliValues } from './task-options.js';

interface SensitivityCliValues extends CommonOptions, PreprocessCliValues, TaskCliValues {
  model: string;
  cache: string;
  measure: MeasureChoice;
  exhaustive?: boolean;
  hardest?: number;
  metric?: RankMetric;
  layers?: string[];
  labels?: string;
  classes?: string;
  threads?: number;
  maxMemory: number;
  top?: number;
  out?: string;
  maxDrop?: number;
  maxLayers?: string;
  precisionOut?: string;
  outDir: string;
  shard?: string;
  biasCorrection?: boolean;
  biasCorrectionMode?: 'weights' | 'full';
  calibData?: string;
}

const EXAMPLES = `
Measures:
  one-at-a-time  only the layer in INT8, every other layer float: the damage it does alone (the default: one badly
                 calibrated layer stands out even when full INT8 is so damaged that removing any single layer
                 changes little)
  leave-one-out  every layer INT8 but this one: what taking it out of INT8 recovers (best when full INT8 is close
                 to the budget and layers interact)
  both           both, ranked by their sum

Search (one-at-a-time): one proxy pass runs the FP32 model with an INT8 copy beside every layer, giving each
layer's own output SNR (INT8 on FP32 input against FP32); the ${PROXY_CANDIDATE_SHARE * 100}% of layers with the lowest (at least
${PROXY_MIN_CANDIDATES}, and any within ${PROXY_MARGIN_DB} dB of the last) are then measured one at a time and ranked first, the others
after them by that SNR (the report says which, and where the two orders disagree). --exhaustive measures every layer.
Each one-at-a-time variant runs from its layer on, fed the FP32 activations at the cut (one FP32 run per group of
layers, at most 512 MiB kept); --hardest N measures the candidates on the N images where full INT8 is furthest
from FP32 (faster; everything else stays over all images).

Every layer also gets its own SNR: its quantized input(s) against FP32 (in), its per-channel INT8 weights (w),
and its output in INT8 on FP32 input against FP32 (out: the proxy pass's, or with --exhaustive a float copy of
the layer on the same input).
The images are decoded and FP32 runs once; they stay in memory (images x C x H x W x 4 bytes, limited by
--max-memory); each variant is one onnxruntime session over them.

Examples:
  # rank the layers of MobileNetV2 on the calibration images
  trt-calib sensitivity --model mobilenet_v2.onnx --cache calib-cache/mobilenet_v2.mse.cache --data ./calib --preset raw01

  # the same, the candidates measured on the 16 images where full INT8 is furthest from FP32
  trt-calib sensitivity --model mobilenet_v2.onnx --cache calib-cache/mobilenet_v2.mse.cache --data ./calib --preset raw01 --hardest 16

  # and choose the fewest layers to keep out of INT8 for a drop of at most 2.33 points of top-1 agreement
  # (42 of 43 images); writes ${DEFAULT_OUT_DIR}/mobilenet_v2.precision.json for quantize --precision-map
  trt-calib sensitivity --model mobilenet_v2.onnx --cache calib-cache/mobilenet_v2.mse.cache --data ./calib \\
            --preset raw01 --max-drop 2.33 --max-layers 10%

  # a quick look at a few layers on a few images
  trt-calib sensitivity --model m.onnx --cache C --data ./val --max-images 8 --layers 'block_1*,conv1'

Exit codes: 0 done (budget met, when --max-drop is given), 1 usage or data error, 2 the budget cannot be met.`;

function layerList(value: string, previous: string[] = []): string[] {
  const parts = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new InvalidArgumentError('Expected layer names or globs, comma-separated.');
  return [...previous, ...parts];
}

function layerCap(value: string): string {
  if (!/^\s*\d+(\.\d+)?%?\s*$/.test(value)) throw new InvalidArgumentError('Expected a number of layers or a percentage, e.g. 6 or 10%.');
  return value.trim();
}

export function register(program: Command): void {
  const cmd = program
    .command('sensitivity')
    .description('rank quantizable layers by how much INT8 hurts the outputs; with --max-drop, choose the layers to keep in FP16/FP32 and write a precision map')
    .requiredOption('--model <file>', 'FP32 ONNX model')
    .requiredOption('--cache <file>', 'calibration cache with the activation scales')
    .addOption(new Option('--measure <m>', 'one-at-a-time, leave-one-out or both (see below)').choices(MEASURES as string[]).default(DEFAULT_MEASURE))
    .option('--exhaustive', 'measure every layer one at a time (default: rank all by a proxy pass, the own output SNR of each layer, then measure only the candidates it cannot separate; see below)')
    .option('--hardest <n>', 'measure the proxy\'s candidate layers on the n images where full INT8 is furthest from FP32 (lowest per-image cosine) instead of on all of them; everything else stays over all images, and --max-drop is still checked on all (faster; the report lists the images)', parseInteger(1))
    .addOption(new Option('--metric <m>', `rank by the mean output cosine, the agreement (the task metric: top-1, mAP, mIoU, CER), or the worst image's cosine (default ${DEFAULT_RANK_METRIC} for classifiers, agreement for detect, segment and ocr)`).choices(RANK_METRICS as string[]))
    .option('--layers <names>', 'only these layers: names or globs (* and ?), comma-separated', layerList)
    .option('--labels <source>', 'rank and budget against labels: classify "folders" or a path,label CSV; detect a COCO .json or yolo:DIR; segment masks:DIR; ocr a path<TAB>text file')
    .option('--classes <file>', 'class names, one per line (line index = class index), or `id name` lines')
    .option('--threads <n>', `onnxruntime intra-op threads (default: one per core); ${threadsLimitHelp()}`, parseInteger(1, 1024))
    .option('--max-memory <MiB>', 'limit for the images and FP32 outputs kept in memory', parseNumber(1, 1024 * 1024), DEFAULT_MAX_MEMORY_BYTES / 1024 ** 2)
    .option('--top <n>', 'print only the n most sensitive layers', parseInteger(1))
    .option('-o, --out <file>', 'write the full results as JSON (ranking, and the trade-off with --max-drop)')
    .option('--max-drop <points>', 'choose a precision map: the largest drop against FP32, in points of the task metric (top-1 agreement, top-1 accuracy with labels, IoU for binary maps, mAP@[.5:.95], mIoU, CER)', parseNumber(0, 100))
    .option('--max-layers <n|p%>', 'with --max-drop: keep at most this many layers out of INT8 (a count, or a percentage of the quantizable layers)', layerCap)
    .option('--precision-out <file>', `with --max-drop: the precision map to write (default ${DEFAULT_OUT_DIR}/<model>.precision.json)`)
    .option('--out-dir <dir>', 'folder of the default precision map', DEFAULT_OUT_DIR)
    .option('--shard <K/N|auto|auto/N>', 'measure only the K-th of N slices of the layers, written to --out (default <out-dir>/<model>.sensitivity.<K>of<N>.json); trt-calib merge makes the whole report');
  cmd
    .option('--bias-correction', 'measure on the INT8 model with corrected biases (quantize --bias-correction), the shifts measured on --calib-data; quantize the chosen map with --bias-correction too')
    .addOption(new Option('--bias-correction-mode <mode>', 'weights (default) or full: see quantize --help').choices(['weights', 'full']).default('weights'))
    .option('--calib-data <dir>', 'the calibration images (preprocessed as --data) --bias-correction measures on; never the evaluation set');
  addTaskOptions(cmd, { what: 'the ranking and the budget' });
  addPreprocessOptions(cmd, { defaultBatch: DEFAULT_BATCH }); // the batch sensitivity/analyze.ts uses
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (opts: SensitivityCliValues) => {
    const reporter = reporterFor(opts);
    const data = preprocessOptionsFrom(opts);
    if (opts.biasCorrection && !opts.calibData) throw new UserError('--bias-correction measures the shifts on the calibration images: pass --calib-data DIR (not the evaluation set given as --data).');
    const shard = opts.shard !== undefined ? await sensitivityShard(opts) : undefined;
    if (shard) opts.out ??= shard.out;
    const outputs = prepareOutputs(
      [
        ...(opts.out ? [{ path: opts.out, option: '--out' }] : []),
        ...(opts.maxDrop !== undefined ? [{ path: opts.precisionOut ?? precisionMapPath(opts.model, opts.outDir), option: opts.precisionOut ? '--precision-out' : '--out-dir' }] : []),
      ],
      [
        { path: opts.model, what: '--model' },
        { path: opts.cache, what: '--cache' },
        ...(opts.labels && opts.labels !== 'folders' ? [{ path: opts.labels.replace(/^(yolo|masks):/, ''), what: '--labels' }] : []),
        ...(opts.classes ? [{ path: opts.classes, what: '--classes' }] : []),
      ],
      // The shards of one job write their one report each side by side: the folder is shared, not locked.
      { lock: shard === undefined },
    );
    try {
      await sensitivity(opts, data, reporter, shard?.spec);
    } finally {
      outputs.release();
    }
  });
}

async function sensitivity(opts: SensitivityCliValues, data: ReturnType<typeof preprocessOptionsFrom>, reporter: ReturnType<typeof reporterFor>, shard?: ShardSpec): Promise<void> {
  const { analyzeSensitivity } = await import('../sensitivity/analyze.js');
  const { autoMixedPrecision } = await import('../sensitivity/auto.js');
  const { report, context } = await analyzeSensitivity({
    model: opts.model,
    cache: opts.cache,
    data,
    measure: opts.measure,
    ...(opts.exhaustive ? { exhaustive: true } : {}),
    ...(opts.hardest !== undefined ? { hardest: opts.hardest } : {}),
    ...(opts.metric ? { metric: opts.metric } : {}),
    task: taskFlagsFrom(opts),
    ...(opts.layers ? { layers: opts.layers } : {}),
    ...(opts.labels ? { labelSource: { labels: opts.labels, ...(opts.classes ? { classes: opts.classes } : {}) } } : {}),
    ...(opts.threads ? { threads: capThreads(opts.threads, reporter) } : {}),
    maxMemoryBytes: Math.floor(opts.maxMemory * 1024 ** 2),
    ...(shard ? { shard } : {}),
    ...(opts.biasCorrection ? { biasCorrection: { mode: opts.biasCorrectionMode ?? 'weights', calibData: { ...data, data: opts.calibData!, maxImages: undefined } } } : {}),
    reporter,
  });
  let mixed: MixedResult | undefined;
  if (opts.maxDrop !== undefined) {
    ({ mixed } = await autoMixedPrecision(context, {
      maxDrop: opts.maxDrop,
      sensitivity: report,
      ...(opts.maxLayers !== undefined ? { maxNonInt8: opts.maxLayers } : {}),
      out: opts.precisionOut ?? precisionMapPath(opts.model, opts.outDir),
      reporter,
    }));
  }
  const json = resultJson(report, mixed);
  if (opts.out) await writeFileAtomic(opts.out, `${JSON.stringify(json, null, 2)}\n`);
  emit(opts, json, () => {
    const text = [renderSensitivity(report, opts.top !== undefined ? { top: opts.top } : {})];
    if (mixed) text.push(renderMixed(mixed, report.quantizableLayers));
    if (opts.out) text.push(`wrote ${opts.out}`);
    return text.join('\n');
  });
  if (mixed && !mixed.met) throw new GateError(`the accuracy budget of ${opts.maxDrop} points cannot be met: ${mixed.reason}`);
}

/** --shard: the slice, checked before the images are decoded, and the shard report's default file. */
async function sensitivityShard(opts: SensitivityCliValues) {
  const { parseShard, sensitivityShardPath } = await import('../app/shard.js');
  const { UserError } = await import('../errors.js');
  const spec = parseShard(opts.shard!);
  if (opts.maxDrop !== undefined) {
    throw new UserError(`${spec.source} measures a slice of the layers; --max-drop needs them all.`, {
      hint: 'Merge the shards with trt-calib merge, then run the search without --shard.',
    });
  }
  return { spec, out: sensitivityShardPath(opts.model, opts.outDir, spec) };
}

/** The JSON form: the sensitivity report, and the search with its map as a plain object. */
export function resultJson(report: SensitivityReport, mixed?: MixedResult): unknown {
  const finite = (v: number) => (Number.isFinite(v) ? v : v > 0 ? 'Infinity' : '-Infinity');
  const clean = JSON.parse(JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' ? finite(v) : v))) as unknown;
  if (!mixed) return { sensitivity: clean };
  return {
    sensitivity: clean,
    mixed: {
      met: mixed.met,
      ...(mixed.reason !== undefined ? { reason: mixed.reason } : {}),
      metric: mixed.metric,
      target: mixed.target,
      chosen: mixed.chosen,
      map: Object.fromEntries(mixed.map),
      ...(mixed.written !== undefined ? { written: mixed.written } : {}),
      points: mixed.points,
      tradeoff: mixed.tradeoff,
      evaluations: mixed.evaluations,
      seconds: mixed.seconds,
    },
  };
}
