import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_BATCH, DEFAULT_OUT_DIR } from '../app/defaults.js';
import { renderJson } from '../compare/render-json.js';
import { renderText } from '../compare/render-text.js';
import type { CompareReport, Precision } from '../compare/types.js';
import type { MixedSummary } from '../app/mixed.js';
import { GateError, UserError } from '../errors.js';
import { capThreads, threadsLimitHelp } from '../util/threads.js';
import { addCommonOptions, parseInteger, parseNumber, reporterFor, type CommonOptions } from './common.js';
import { addPreprocessOptions, preprocessOptionsFrom, type PreprocessCliValues } from './preprocess-options.js';
import { addTaskOptions, taskFlagsFrom, type TaskCliValues } from './task-options.js';

interface CompareCliValues extends CommonOptions, PreprocessCliValues, TaskCliValues {
  model: string;
  cache: string[];
  variantModel: string[];
  weightSearch?: boolean;
  biasCorrection?: boolean;
  biasCorrectionMode?: 'weights' | 'full';
  calibData?: string;
  precisions: Precision[];
  labels?: string;
  classes?: string;
  maxDrop?: number;
  layers: boolean;
  stats?: string;
  precisionMap?: string;
  threshold: number;
  worst: number;
  reportDir?: string;
  outDir: string;
  threads?: number;
  qdq: 'emulate' | 'onnxruntime';
  mixed?: 'auto';
  maxLayers?: string;
  precisionOut?: string;
  backend: 'onnxruntime' | 'tensorrt';
  protect: boolean;
  placement: 'explicit' | 'implicit' | 'both';
  highPrecision: 'fp16' | 'fp32';
  shard?: string;
}

const EXAMPLES = `
Examples:
  # FP32 vs FP16 vs INT8 for every algorithm's cache, on validation images (FP32 predictions as the reference)
  trt-calib compare --model model.onnx --data ./val --cache calib-cache/model.entropy2.cache,calib-cache/model.minmax.cache

  # with labels from folder names (val/<class>/img.jpg) and a class list; fail (exit 2) when INT8 loses > 1 point
  trt-calib compare --model model.onnx --data ./val --labels folders --classes classes.txt \\
                    --cache calib-cache/model.entropy2.cache --max-drop 1

  # a model written earlier (trt-calib quantize, or another quantizer) compared as it is
  trt-calib compare --model model.onnx --data ./val --precisions fp32 --variant-model calib-cache/model.entropy2.int8.onnx

  # a detector, judged by mAP@[.5:.95] against FP32's detections (auto recognises most layouts; here named)
  trt-calib compare --model ssdlite.onnx --data ./street --preset raw-1-1 --cache calib-cache/ssdlite.entropy2.cache \
                    --boxes boxes:yxyx:norm --scores scores --class-offset 1 --classes coco_labels.txt --save-detections dets

  # a text detector's probability map, judged as a binary segmentation (IoU at 0.3), with cosine and SNR
  trt-calib compare --model ppocr_v4_det.onnx --data ./street --preset paddleocr-det --shapes x:1x3x576x768 \\
                    --cache calib-cache/ppocr_v4_det.entropy2.cache

  # each cache measured as quantize places Q/DQ (int8-<algo>) and as implicit INT8 may round every tensor
  # (int8-<algo>-implicit, the default --placement both); here the implicit bound only, without protection
  trt-calib compare --model yolov8n.onnx --data ./val --preset yolo --cache calib-cache/yolov8n.entropy2.cache \\
                    --placement implicit --no-protect

  # the same comparison in 2 shards (2 machines, or --shard auto in a Kubernetes Indexed Job / Slurm array), then the
  # report one run writes (and its exit code 2 when the gate fails): see docs/scale-out.md
  trt-calib compare --model model.onnx --data ./val --cache calib-cache/model.entropy2.cache --max-drop 1 --shard 1/2
  trt-calib merge calib-cache/model.report/report.*of2.msgpack

Writes <out-dir>/<model>.report/report.json (schema: docs/report-schema.md) and report.html (self-contained).
Tasks (--task): auto decides from the outputs' names, shapes and value ranges and prints why; classify (top-1),
detect (mAP), segment (mIoU, IoU of a binary map), ocr (1 - CER), raw (cosine and SNR only).
Exit code 2 when --max-drop is exceeded.`;

const collect = (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((s) => s.trim()).filter(Boolean)];

function parsePrecisions(value: string): Precision[] {
  const list = value.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  const bad = list.filter((p) => p !== 'fp32' && p !== 'fp16' && p !== 'int8');
  if (list.length === 0 || bad.length > 0) throw new InvalidArgumentError('Expected a comma-separated list of fp32, fp16, int8.');
  return list as Precision[];
}

export function register(program: Command): void {
  const cmd = program
    .command('compare')
    .description('compare INT8 (one variant per cache) and FP16 against FP32 on images: per output, per layer, per image; optional accuracy gate')
    .requiredOption('--model <file>', 'FP32 ONNX model')
    .option('--cache <files>', 'calibration cache(s), comma-separated or repeated: one INT8 variant each', collect, [])
    .option('--variant-model <files>', 'model file(s) compared as they are, comma-separated or repeated (e.g. the output of trt-calib quantize)', collect, [])
    .option('--precisions <list>', 'variants to run: fp32,fp16,int8', parsePrecisions, ['fp32', 'fp16', 'int8'] as Precision[])
    .option('--labels <source>', 'classify: "folders" (class = parent folder name) or a CSV of path,label; detect: a COCO .json or yolo:DIR; segment: masks:DIR; ocr: a path<TAB>text file')
    .option('--classes <file>', 'class names, for every task: one per line (line index = class index), or `id name` lines')
    .option('--max-drop <points>', 'gate: exit 2 when a variant loses more than this many points of the task metric (top-1, mAP@[.5:.95], mIoU, CER; against the labels when given, else against FP32)', parseNumber(0, 100))
    .addOption(new Option('--mixed <mode>', 'auto: also build a mixed INT8/FP16 variant from the first cache, keeping the most sensitive layers out of INT8 until --max-drop is met').choices(['auto']))
    .option('--max-layers <n|p%>', 'with --mixed auto: at most this many layers out of INT8')
    .option('--precision-out <file>', 'with --mixed auto: the precision map to write (default <out-dir>/<model>.precision.json)')
    .option('--no-layers', 'skip the per-layer SNR of the INT8 variants (faster, less memory)')
    .option('--stats <file>', 'statistics for the per-tensor histograms (default <out-dir>/<model>.stats.msgpack)')
    .option('--precision-map <file>', 'layers kept out of INT8 (JSON {layer: "int8"|"fp16"|"fp32"})')
    .option('--threshold <t>', 'dense outputs: the same-side threshold', parseNumber(-1e9, 1e9), 0.3)
    .option('--worst <n>', 'worst images listed per variant', parseInteger(0, 1000), 5)
    .option('--report-dir <dir>', 'folder of report.json and report.html (default <out-dir>/<model>.report)')
    .option('--out-dir <dir>', 'folder of the default inputs and outputs', DEFAULT_OUT_DIR)
    .option('--threads <n>', `onnxruntime intra-op threads; ${threadsLimitHelp()}`, parseInteger(1, 1024))
    .addOption(new Option('--backend <name>', 'onnxruntime (CPU, Q/DQ models) or tensorrt (real engines, needs the TensorRT bridge: see trt-calib doctor)').choices(['onnxruntime', 'tensorrt']).default('onnxruntime'))
    .addOption(
      new Option('--qdq <mode>', 'INT8 execution: emulate (fake quantization with float biases, as TensorRT computes) or onnxruntime (its own int8 kernels and int32 biases, as deployed on onnxruntime)')
        .choices(['emulate', 'onnxruntime'])
        .default('emulate'),
    )
    .addOption(
      // Not --qdq (it already says how onnxruntime executes the Q/DQ): this says where they go.
      new Option(
        '--placement <where>',
        'Q/DQ placement of each cache\'s INT8 variant: explicit (where `quantize` puts them), implicit (every tensor the cache names: the worst case of TensorRT <= 10 implicit INT8, variant int8-<algo>-implicit) or both; the winner and the gate use explicit',
      )
        .choices(['explicit', 'implicit', 'both'])
        .default('both'),
    )
    .option('--no-protect', 'use every scale of the caches, even on tensors INT8 would destroy (see docs/quantization.md)')
    .addOption(
      new Option('--high-precision <type>', 'fp16: also each cache\'s INT8 + FP16 model (quantize --high-precision fp16, what TensorRT 11 builds), variant int8+fp16-<algo>; needs the statistics (--stats)')
        .choices(['fp32', 'fp16'])
        .default('fp32'),
    );
  cmd.option('--shard <K/N|auto|auto/N>', 'compare only the K-th of N slices of the images, written as <report-dir>/report.<K>of<N>.msgpack (no report); trt-calib merge makes the report of all N; auto: from JOB_COMPLETION_INDEX (with /N) or SLURM_ARRAY_TASK_ID/COUNT');
  cmd
    .option('--weight-search', 'also each cache\'s INT8 variant with searched weight scales (int8-<algo>+ws), measured on --calib-data: docs/algorithms.md')
    .option('--bias-correction', 'also each cache\'s INT8 variant with corrected biases (int8-<algo>+bc; with --weight-search +ws+bc), measured on --calib-data')
    .addOption(new Option('--bias-correction-mode <mode>', 'weights (default) or full: see quantize --help').choices(['weights', 'full']).default('weights'))
    .option('--calib-data <dir>', 'the calibration images (preprocessed as --data) that --weight-search and --bias-correction measure on; never the validation set');
  addTaskOptions(cmd, { saveDetections: true });
  addPreprocessOptions(cmd, { defaultBatch: DEFAULT_BATCH }); // the batch app/compare.ts uses
  addCommonOptions(cmd).addHelpText('after', EXAMPLES);
  cmd.action(async (opts: CompareCliValues) => {
    const reporter = reporterFor(opts);
    if (opts.mixed && opts.maxDrop === undefined) throw new UserError('--mixed auto needs --max-drop POINTS (the accuracy budget).');
    const { compare } = await import('../app/compare.js');
    const shard = opts.shard !== undefined ? (await import('../app/shard.js')).parseShard(opts.shard) : undefined;
    const result = await compare({
      model: opts.model,
      data: preprocessOptionsFrom(opts),
      caches: opts.cache,
      variantModels: opts.variantModel,
      precisions: opts.precisions,
      labels: opts.labels,
      classes: opts.classes,
      task: taskFlagsFrom(opts),
      maxDrop: opts.maxDrop,
      layers: opts.layers,
      stats: opts.stats,
      precisionMap: opts.precisionMap,
      threshold: opts.threshold,
      worst: opts.worst,
      reportDir: opts.reportDir,
      outDir: opts.outDir,
      threads: capThreads(opts.threads, reporter),
      qdq: opts.qdq,
      backend: opts.backend,
      protect: opts.protect,
      placement: opts.placement,
      highPrecision: opts.highPrecision,
      ...(opts.weightSearch || opts.biasCorrection ? { methods: { weightSearch: opts.weightSearch, ...(opts.biasCorrection ? { biasCorrection: opts.biasCorrectionMode ?? 'weights' } : {}) }, calibData: opts.calibData } : {}),
      ...(opts.mixed ? { mixed: { maxDrop: opts.maxDrop!, maxLayers: opts.maxLayers, precisionOut: opts.precisionOut } } : {}),
      ...(shard ? { shard } : {}),
      reporter,
    });
    if ('shardFile' in result) {
      const { shardFile, shard: s } = result;
      if (opts.json) process.stdout.write(`${JSON.stringify({ shardFile, shard: s }, null, 2)}\n`);
      else if (!opts.quiet) {
        process.stdout.write(`shard ${s.index} of ${s.count}: images ${s.start + 1}..${s.end} of the ${s.selected} selected (${s.images} compared, ${s.skipped} skipped); no report (trt-calib merge writes it from all ${s.count} shards)\nwrote ${shardFile}\n`);
      }
      return;
    }
    emitCompareReport(opts, result.report, result.files, result.mixed);
  });
}

/** The report on stdout (text or --json), then the --max-drop verdict: exit 2 (GateError) when it failed. */
export function emitCompareReport(opts: CommonOptions, report: CompareReport, files: readonly string[], mixed?: MixedSummary, header?: string): void {
  {
    if (opts.json) process.stdout.write(renderJson(report));
    else if (!opts.quiet) {
      const lines = [...(header ? [header] : []), renderText(report)];
      if (mixed) {
        lines.push(
          `mixed precision: ${mixed.met ? 'budget met' : `budget NOT met (${mixed.reason})`} with ${mixed.nonInt8Layers} layer(s) out of INT8 ` +
            `(${mixed.keptOut.map((k) => `${k.layer}: ${k.precision}`).join(', ') || 'none'}), measured with the rest in ${mixed.highPrecision.toUpperCase()}; precision map ${mixed.precisionMap ?? '-'}`,
        );
      }
      lines.push(`report: ${files.join(', ')}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (report.gate && !report.gate.passed) {
      const failed = report.gate.variants.filter((v) => !v.passed).map((v) => `${v.name} lost ${v.drop.toFixed(2)} points`);
      throw new GateError(`accuracy gate failed (${report.gate.taskMetric ?? report.gate.metric}, --max-drop ${report.gate.maxDrop}): ${failed.join(', ')}`);
    }
  }
}
