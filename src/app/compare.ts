/**
 * `compare`: runs FP32, FP16 and INT8 variants (one per calibration cache) of a model on the same preprocessed
 * batches and reports, per output and per layer, how far each is from FP32 — and, with labels, their accuracy.
 * The report is a typed value (src/compare/types.ts); renderers format it; `maxDrop` turns it into a gate.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { onnxruntimeBackend } from '../backends/onnxruntime.js';
import type { Session } from '../backends/types.js';
import { ALGORITHM_NAMES, computeAllAmaxes } from '../calibrators/registry.js';
import { buildCompareReport, buildHistograms } from '../compare/report.js';
import { labelMap, runComparison, type ComparisonRun, type VariantRun } from '../compare/run.js';
import { selectionSha256, type ShardSpec } from './shard.js';
import { relativeToCommonFolder, slashPath } from '../stats/image-list.js';
import type { TaskFlags } from '../compare/task/index.js';
import type { CompareReport, Precision } from '../compare/types.js';
import { UserError } from '../errors.js';
import { graphOutputs, listActivations } from '../onnx/graph.js';
import { externalDataFiles, loadOnnxModel, modelSha256, saveOnnxModel, type OnnxModel } from '../onnx/model.js';
import type { QdqPlacement } from '../onnx/qdq.js';
import { precisionMapPath, type PrecisionMap } from '../precision/map.js';
import { withoutProtected, type ProtectedTensor } from '../precision/protect.js';
import { protectedForCache, protectionStatistics } from './protection.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { loadStatistics } from '../stats/store.js';
import { prepareOutputs, type InputPath, type OutputPath, type PreparedOutputs } from '../util/outputs.js';
import { TOOL_VERSION } from '../version.js';
import { DEFAULT_OUT_DIR } from './calibrate.js';
import { datasetForModel, type DataOptions } from './data.js';
import { resolveTask } from './task.js';
import { searchMixedPrecision, summarizeMixed, type MixedSummary } from './mixed.js';
import { buildFp16Variant, buildInt8Variant, checkCacheCoverage, describePartialCoverage, loadCacheFor, readPrecisionMapFor, type CacheCoverage } from './variants.js';
import { highPrecisionOptions, statisticsForFp16, type HighPrecision } from './high-precision.js';
import type { MixedResult } from '../sensitivity/mixed.js';

export interface CompareOptions {
  /** fp16: also each cache's INT8 + FP16 model (the TensorRT 11 artefact, quantize --high-precision fp16), as `int8+fp16-<algo>`. */
  highPrecision?: HighPrecision;
  model: string;
  data: DataOptions;
  /** One INT8 variant per cache. */
  caches?: readonly string[];
  /** Already-written model files compared as they are (a `quantize` output, another tool's Q/DQ model...). */
  variantModels?: readonly string[];
  precisions?: readonly Precision[];
  /**
   * The task's labels: "folders" or a CSV of path,label (classify), a COCO .json or yolo:DIR (detect), masks:DIR
   * (segment), a path<TAB>text file (ocr).
   */
  labels?: string;
  /** Class names, for every task (classify: one a line; detect: `id name` lines or one a line). */
  classes?: string;
  /** --task and its flags (default auto: decided from the outputs, said through the reporter). */
  task?: Omit<TaskFlags, 'labels' | 'classes'>;
  /** Points of the task metric (top-1, mAP@[.5:.95], mIoU, CER...) a variant may lose before the gate fails. */
  maxDrop?: number;
  /** Per-layer SNR of the INT8 variants (default true). */
  layers?: boolean;
  /** Statistics for the per-tensor histograms (default <outDir>/<model>.stats.msgpack when present). */
  stats?: string;
  precisionMap?: string;
  /** Dense outputs: the same-side threshold (default 0.3). */
  threshold?: number;
  worst?: number;
  /** Folder of report.json and report.html (default <outDir>/<model>.report). */
  reportDir?: string;
  outDir?: string;
  threads?: number;
  /**
   * 'onnxruntime' (default): Q/DQ models on the CPU. 'tensorrt': real engines through the native bridge, built
   * from the FP32 model at each variant's precision (INT8 from each cache), run with enqueueV3.
   */
  backend?: 'onnxruntime' | 'tensorrt';
  /** How onnxruntime executes the Q/DQ variants (see OnnxruntimeSessionOptions.qdq); default 'emulate'. */
  qdq?: 'emulate' | 'onnxruntime';
  /**
   * --mixed auto: with the first cache, keep the most sensitive layers out of INT8 until the drop is at most
   * maxDrop points on these images; the mixed model is added as a variant and the trade-off curve to the report.
   */
  mixed?: { maxDrop: number; maxLayers?: string; precisionOut?: string };
  /**
   * Keep the tensors INT8 would destroy out of every INT8 variant (default true; src/precision/protect.ts),
   * decided from the graph and the statistics (`stats`, else each cache's own ranges). false (--no-protect): every
   * scale of the cache is used. The TensorRT backend builds from the cache files as they are.
   */
  protect?: boolean;
  /**
   * Q/DQ placement of each cache's INT8 variant (onnxruntime backend): 'explicit' (as `quantize` writes it),
   * 'implicit' (every tensor the cache names rounded: the pessimistic TensorRT <= 10 implicit INT8 case, variant
   * `int8-<algo>-implicit`) or 'both' (default). The TensorRT backend builds real engines: explicit only.
   */
  placement?: ComparePlacement;
  /**
   * Also, per cache, the INT8 variant with these methods (src/app/methods.ts), named int8-<algo>+ws, +bc,
   * +ws+bc...: the weight scales searched and the biases corrected on `calibData` (the calibration images).
   */
  methods?: import('./methods.js').Int8Methods;
  /** The calibration images the methods measure on (preprocessed as `data`). */
  calibData?: string;
  reporter?: Reporter;
  /**
   * compare --shard K/N: only the K-th slice of the images (src/app/shard.ts), written as a shard file of
   * accumulators (<report-dir>/report.<K>of<N>.msgpack, src/compare/shard.ts) instead of a report; `trt-calib merge`
   * makes the report of all N.
   */
  shard?: ShardSpec;
}

export type ComparePlacement = 'explicit' | 'implicit' | 'both';

export interface CompareResult {
  report: CompareReport;
  files: string[];
  mixed?: MixedSummary;
}

/** compare --shard: the shard file written, no report. */
export interface CompareShardResult {
  shardFile: string;
  shard: { index: number; count: number; start: number; end: number; selected: number; images: number; skipped: number };
}

/** What a report says apart from the pass's results: a compare shard carries it, and the merge builds the report from it. */
export interface CompareReportContext {
  tool: CompareReport['tool'];
  model: CompareReport['model'];
  data: Omit<CompareReport['data'], 'images' | 'skipped'>;
  settings: CompareReport['settings'];
  /** Cache coverage per INT8 variant name. */
  coverage: Array<[string, CacheCoverage]>;
  /** The task's and the placement's notes (the coverage notes are added from `coverage`). */
  notes: string[];
}

/** The report of a pass (one run, or the merged shards of compare --shard). */
export function compareReportFrom(context: CompareReportContext, run: Pick<ComparisonRun, 'variants' | 'images' | 'skipped' | 'primaryOutput' | 'referenceTask'>, extra: { histograms?: CompareReport['histograms']; tradeoff?: CompareReport['tradeoff'] } = {}): CompareReport {
  const coverageOf = new Map(context.coverage);
  return buildCompareReport({
    tool: context.tool,
    model: context.model,
    data: { source: context.data.source, images: run.images, skipped: run.skipped.length, ...(context.data.labels ? { labels: context.data.labels } : {}) },
    settings: context.settings,
    variants: run.variants.map((v) => (coverageOf.has(v.name) ? { ...v, cacheCoverage: coverageOf.get(v.name)! } : v)),
    primaryOutput: run.primaryOutput,
    ...(run.referenceTask ? { referenceTask: run.referenceTask } : {}),
    notes: [...context.notes, ...context.coverage.flatMap(([name, c]) => (c.missing.length > 0 ? [`${name}: ${describePartialCoverage(c, context.model.file)}`] : []))],
    ...(extra.histograms ? { histograms: extra.histograms } : {}),
    ...(extra.tradeoff ? { tradeoff: extra.tradeoff } : {}),
  });
}

export async function compare(options: CompareOptions & { shard?: undefined }): Promise<CompareResult>;
export async function compare(options: CompareOptions & { shard: ShardSpec }): Promise<CompareShardResult>;
export async function compare(options: CompareOptions): Promise<CompareResult | CompareShardResult>;
export async function compare(options: CompareOptions): Promise<CompareResult | CompareShardResult> {
  // The report folder stays locked (src/util/outputs.ts) until the report is written or the run fails.
  const held: PreparedOutputs[] = [];
  try {
    return await compareWithOutputs(options, held);
  } finally {
    for (const outputs of held) outputs.release();
  }
}

async function compareWithOutputs(options: CompareOptions, held: PreparedOutputs[]): Promise<CompareResult | CompareShardResult> {
  const reporter = options.reporter ?? silentReporter;
  const precisions: Precision[] = [...new Set<Precision>(options.precisions ?? ['fp32', 'fp16', 'int8'])];
  const caches = [...new Set(options.caches ?? [])];
  if (precisions.includes('int8') && caches.length === 0 && (options.variantModels ?? []).length === 0) {
    throw new UserError('INT8 needs activation scales: pass --cache FILE (one or more, comma-separated), or drop int8 from --precisions.', {
      hint: 'Write caches with: trt-calib --model m.onnx --data ./calib --algo all',
    });
  }
  if (!precisions.includes('int8') && caches.length > 0) throw new UserError('--cache was given but --precisions has no int8.');
  const outDir = options.outDir ?? DEFAULT_OUT_DIR;
  const modelBase = path.basename(options.model).replace(/\.onnx$/i, '');
  if (options.shard) checkShardable(options, options.shard);

  const sha = await modelSha256(options.model);
  const model = await loadOnnxModel(options.model);
  const activations = listActivations(model, { file: options.model }).map((a) => a.name);
  held.push(
    prepareOutputs(
      options.shard ? [{ path: compareShardPath(reportFolder(options, outDir, modelBase), options.shard), option: options.reportDir !== undefined ? '--report-dir' : '--out-dir' }] : compareOutputs(options, outDir, modelBase),
      compareInputs(options, outDir, modelBase, externalDataFiles(model)),
      // The shards of one job write their files side by side: the folder is shared, not locked.
      { lock: !options.shard },
    ),
  );
  const { input, preprocess, batchSize, dataset, selection } = await datasetForModel(options.model, model, { ...options.data, ...(options.shard ? { shard: options.shard } : {}) }, 'comparison');
  const inputs = [input];
  let precisionMap: PrecisionMap | undefined;
  if (options.precisionMap) precisionMap = await readPrecisionMapFor(options.precisionMap, model, options.model);
  if (options.mixed && caches.length === 0) throw new UserError('--mixed auto needs a --cache (its scales are the INT8 of the mixed model).');
  if (options.mixed && precisionMap) throw new UserError('--mixed auto chooses its own precision map: drop --precision-map.');
  const taskFlags: TaskFlags = { ...(options.task ?? {}), ...(options.labels !== undefined ? { labels: options.labels } : {}), ...(options.classes !== undefined ? { classes: options.classes } : {}) };
  const task = await resolveTask(options.model, model, dataset, options.data.data, taskFlags, { threads: options.threads, worst: options.worst, threshold: options.threshold, reporter });
  if (options.shard && !SHARDABLE_TASKS.includes(task.kind)) {
    throw new UserError(`${options.shard.source}: the ${task.kind} task cannot be split into shards yet (compare --shard supports --task ${SHARDABLE_TASKS.join(', ')}).`, {
      hint: 'Run this comparison without --shard.',
    });
  }
  const labelAssignment = task.classifyLabels;

  // Build every variant before the long pass, so that a bad cache fails in a second.
  const placements: QdqPlacement[] = options.backend === 'tensorrt' || options.placement === 'explicit' ? ['explicit'] : options.placement === 'implicit' ? ['implicit'] : ['explicit', 'implicit'];
  const int8: Array<{ loaded: Awaited<ReturnType<typeof loadCacheFor>>; scales: ReadonlyMap<string, number>; built: ReturnType<typeof buildInt8Variant>; placement: QdqPlacement; protected: ProtectedTensor[]; coverage: CacheCoverage; mixed?: boolean; name?: string }> = [];
  const statsFile = options.stats ?? path.join(outDir, `${modelBase}.stats.msgpack`);
  const protection = options.protect !== false && caches.length > 0 ? await protectionStatistics(statsFile, options.stats !== undefined, sha, options.model, reporter) : {};
  for (const file of caches) {
    const loaded = await loadCacheFor(file, activations, options.model);
    let scales: ReadonlyMap<string, number> = loaded.scales;
    let protectedTensors: ProtectedTensor[] = [];
    if (options.protect !== false && options.backend !== 'tensorrt') {
      // A cache written with protection already lacks these; one written with --no-protect has them all.
      protectedTensors = protectedForCache(model, loaded.scales, protection, options.model);
      scales = withoutProtected(loaded.scales, protectedTensors);
    }
    // A cache covering none of the INT8 layers' inputs is an error; one covering part of them, a warning and a note.
    const explicit = buildInt8Variant(model, scales, { precisionMap, file: options.model, placement: 'explicit' });
    const isProtected = new Set(protectedTensors.map((p) => p.tensor));
    const checked = checkCacheCoverage(loaded, explicit, options.model);
    const coverage = { ...checked, missing: checked.missing.filter((m) => !isProtected.has(m)) };
    const warning = describePartialCoverage(coverage, options.model);
    if (warning) reporter.warn(warning);
    for (const placement of placements) {
      const built = placement === 'explicit' ? explicit : buildInt8Variant(model, scales, { precisionMap, file: options.model, placement });
      int8.push({ loaded, scales, built, placement, protected: protectedTensors, coverage });
    }
  }
  const methods = options.methods ?? {};
  if (methods.weightSearch || methods.biasCorrection) {
    const { buildInt8WithMethods, methodsSuffix } = await import('./methods.js');
    if (!options.calibData) throw new UserError('--weight-search and --bias-correction measure on the calibration images: pass --calib-data DIR (not the validation set given as --data).');
    if (options.backend === 'tensorrt') throw new UserError('--weight-search and --bias-correction change the Q/DQ model: with --backend tensorrt, write the model with quantize and pass it as --variant-model.');
    if (caches.length === 0) throw new UserError('--weight-search and --bias-correction build on a cache\'s scales: pass --cache.');
    for (const v of int8.filter((e) => e.placement === 'explicit' && !e.name)) {
      // All of the calibration images: --max-images limits the comparison's images, not these.
      const calibData = { ...options.data, data: options.calibData };
      delete calibData.maxImages;
      reporter.info(`${methodsSuffix(methods).slice(1)} for ${v.loaded.algorithm}, on the calibration images ${options.calibData}`);
      const m = await buildInt8WithMethods({ modelFile: options.model, model, scales: v.scales, precisionMap, methods, calibData, threads: options.threads, reporter });
      int8.push({ ...v, built: m.built, name: `int8-${v.loaded.algorithm}${precisionMap ? '-mixed' : ''}${methodsSuffix(methods)}` });
    }
  }
  let fp16Statistics: Awaited<ReturnType<typeof statisticsForFp16>> | undefined;
  if (options.highPrecision === 'fp16') {
    // The INT8 + FP16 model `quantize --high-precision fp16` writes, with float16 rounding between the ops onnxruntime's
    // CPU provider runs in float32 (src/onnx/autocast.ts), so its FP16 error is measured, not hidden.
    if (caches.length === 0) throw new UserError('--high-precision fp16 builds the INT8 + FP16 model from a cache\'s scales: pass --cache (to measure a model written earlier, use --variant-model).');
    if (options.backend === 'tensorrt') throw new UserError('--high-precision fp16 builds onnxruntime variants: with --backend tensorrt, write the model with quantize --high-precision fp16 and pass it as --variant-model.');
    const statistics = await statisticsForFp16(statsFile, sha, options.model);
    fp16Statistics = statistics;
    for (const v of int8.filter((e) => e.placement === 'explicit')) {
      const built = buildInt8Variant(model, v.scales, { precisionMap, file: options.model, highPrecision: highPrecisionOptions(statistics, v.protected, { emulateOnCpu: true }) });
      int8.push({ ...v, built, name: `int8+fp16-${v.loaded.algorithm}${precisionMap ? '-mixed' : ''}` });
    }
  }
  let mixed: MixedResult | undefined;
  if (options.mixed) {
    // The budget is against FP32 (no labels), in points of the task metric.
    const mixedTask: TaskFlags = { ...taskFlags, task: task.kind };
    delete mixedTask.labels;
    delete mixedTask.saveDetections;
    // With --high-precision fp16 the candidates are measured as INT8 + FP16 models (the TensorRT 11 artefact), and
    // the chosen map is reported both ways: int8-<algo>-mixed (rest FP32) and int8+fp16-<algo>-mixed (what was searched).
    const first = int8[0]!;
    const hp = fp16Statistics ? highPrecisionOptions(fp16Statistics, first.protected, { emulateOnCpu: true }) : undefined;
    ({ mixed } = await searchMixedPrecision({ model: options.model, cache: caches[0]!, data: options.data, outDir, threads: options.threads, reporter, task: mixedTask, ...options.mixed, ...(hp ? { highPrecision: hp } : {}) }));
    const { loaded, scales } = first;
    int8.push({ loaded, scales, built: buildInt8Variant(model, scales, { precisionMap: mixed.map, file: options.model }), placement: 'explicit', protected: first.protected, coverage: first.coverage, mixed: true });
    if (hp) {
      const built = buildInt8Variant(model, scales, { precisionMap: mixed.map, file: options.model, highPrecision: hp });
      int8.push({ loaded, scales, built, placement: 'explicit', protected: first.protected, coverage: first.coverage, mixed: true, name: `int8+fp16-${loaded.algorithm}-mixed` });
    }
  }
  const names = new Map<string, number>();
  const variantName = (base: string) => {
    const n = (names.get(base) ?? 0) + 1;
    names.set(base, n);
    return n === 1 ? base : `${base}-${n}`;
  };

  const useTrt = options.backend === 'tensorrt';
  const layerNames = options.layers === false ? [] : [...new Set(int8.flatMap((v) => v.built.qdq.quantizedTensors))];
  const sessions: Session[] = [];
  const open = async (file: string, m: OnnxModel | undefined, expose: readonly string[]) => {
    const s = await onnxruntimeBackend.open(m ? { path: file, bytes: saveOnnxModel(m) } : { path: file }, { threads: options.threads, expose, qdq: options.qdq ?? 'emulate' });
    sessions.push(s);
    return s;
  };
  // TensorRT: every variant is an engine built from the FP32 model (INT8 with the cache's scales), exposing the
  // same tensor names, so that layers compare name to name.
  const openTrt = async (precision: Precision, cache?: string, file = options.model, expose: readonly string[] = layerNames) => {
    const { tensorrtBackend } = await import('../backends/tensorrt.js');
    const s = await tensorrtBackend({ precision, cache, precisionMap, reporter }).open({ path: file }, { expose });
    sessions.push(s);
    return s;
  };
  try {
    const exposedInRef = layerNames.filter((n) => !inputs.some((i) => i.name === n));
    const reference = useTrt ? await openTrt('fp32', undefined, options.model, exposedInRef) : await open(options.model, undefined, exposedInRef);
    const variants: VariantRun[] = [];
    const coverageOf = new Map<string, CacheCoverage>();
    if (precisions.includes('fp16')) {
      const session = useTrt ? await openTrt('fp16', undefined, options.model, []) : await open(`${options.model} (fp16)`, buildFp16Variant(model, { file: options.model }).model, []);
      variants.push({ spec: { name: 'fp16', precision: 'fp16' }, session });
    }
    for (const v of int8) {
      const { loaded, built } = v;
      const name = variantName(v.name ?? `int8-${loaded.algorithm}${precisionMap || v.mixed ? '-mixed' : ''}${v.placement === 'implicit' ? '-implicit' : ''}`);
      const spec = {
        name,
        precision: 'int8' as const,
        algorithm: loaded.algorithm,
        modelFile: loaded.file,
        placement: v.placement,
        ...(v.protected.length > 0 ? { protected: v.protected.map((p) => p.tensor) } : {}),
      };
      coverageOf.set(name, v.coverage);
      if (useTrt) {
        const layers = options.layers === false ? [] : built.qdq.quantizedTensors.filter((t) => exposedInRef.includes(t));
        variants.push({ spec, session: await openTrt('int8', loaded.file, options.model, layers), layers });
        continue;
      }
      // The INT8 value of a quantized tensor is its dequantized copy: compare that with the FP32 tensor.
      // (The INT8 + FP16 variant's dequantized copies are float16: not compared layer by layer.)
      const layers = options.layers === false || built.autocast ? [] : built.qdq.quantizedTensors.map((t) => ({ reference: t, variant: built.qdq.dequantized.get(t)! }));
      variants.push({ spec, session: await open(`${options.model} (${name})`, built.model, layers.map((l) => l.variant)), layers });
    }
    for (const file of options.variantModels ?? []) {
      const isEngine = /\.(engine|plan|trt)$/i.test(file);
      if (isEngine && !useTrt) throw new UserError(`${file} is a TensorRT engine: compare it with --backend tensorrt.`);
      const precision = isEngine ? 'int8' : precisionOfModel(await loadOnnxModel(file));
      const name = variantName(path.basename(file).replace(/\.(onnx|engine|plan|trt)$/i, ''));
      const session = useTrt ? await openTrt(precision, undefined, file, []) : await open(file, undefined, []);
      variants.push({ spec: { name, precision, modelFile: file }, session });
    }
    if (variants.length === 0 && !precisions.includes('fp32')) throw new UserError('Nothing to compare: --precisions names no variant.');
    const opTypes = new Map<string, string>();
    for (const n of model.graph?.node ?? []) for (const o of n.output ?? []) opTypes.set(o, n.opType ?? '');

    reporter.info(`comparing ${[...(precisions.includes('fp32') ? ['fp32'] : []), ...variants.map((v) => v.spec.name)].join(', ')} on ${dataset.size} images, batch ${batchSize}`);
    const evaluator = task.create();
    const run = await runComparison({
      dataset,
      task: evaluator,
      reference,
      variants,
      labels: labelAssignment ? labelMap(dataset.files, labelAssignment.labels) : undefined,
      includeReference: precisions.includes('fp32'),
      metrics: { threshold: options.threshold, worstCount: options.worst },
      opTypes,
      reporter,
      ...(options.shard ? { keepState: true } : {}),
    });
    for (const s of run.skipped) reporter.warn(`skipped ${s.file}: ${s.reason}`);
    if (run.images === 0) throw new UserError(`None of the images in ${options.data.data} could be read.`);

    const context: CompareReportContext = {
      tool: { name: 'trt-calib', version: TOOL_VERSION },
      model: {
        file: options.model,
        sha256: sha,
        inputs: inputs.map((i) => ({ name: i.name, dims: i.dims ?? [] })),
        outputs: graphOutputs(model).map((o) => ({ name: o.name, dims: o.dims ?? [] })),
      },
      data: {
        source: options.data.data,
        ...(task.labels ? { labels: task.labels } : {}),
      },
      settings: {
        backend: useTrt ? 'tensorrt' : options.qdq === 'onnxruntime' ? 'onnxruntime (its own QDQ kernels)' : 'onnxruntime (Q/DQ emulated as TensorRT computes it)',
        batchSize,
        ...(options.threads ? { threads: options.threads } : {}),
        precisions,
        algorithms: int8.map((v) => v.loaded.algorithm),
        threshold: options.threshold ?? 0.3,
        task: { kind: task.kind, requested: task.selection.requested, reason: task.selection.reason, outputs: [...evaluator.outputs], options: task.settings },
        worstCount: options.worst ?? 5,
        ...(options.maxDrop !== undefined ? { maxDrop: options.maxDrop } : {}),
        preprocess,
      },
      coverage: [...coverageOf],
      notes: [...task.notes, ...placementNotes(int8)],
    };
    const reportDir = reportFolder(options, outDir, modelBase);
    if (options.shard) {
      const { writeCompareShard } = await import('../compare/shard.js');
      const htmlOptions = task.htmlOptions ? await task.htmlOptions(evaluator, run.variants.map((v) => v.name)) : undefined;
      const shardFile = compareShardPath(reportDir, options.shard);
      await writeCompareShard(shardFile, {
        context,
        shard: { index: options.shard.index, count: options.shard.count, start: selection!.start, end: selection!.end, selectedCount: selection!.files.length, selectionSha256: selectionSha256(selection!.files) },
        images: selectionImages(selection!),
        inputs: await inputDigests(options, statsFile),
        stats: { file: statsFile, explicit: options.stats !== undefined, maxTensors: activations.length },
        opTypes: [...opTypes].filter(([t]) => layerNames.includes(t)),
        ...(htmlOptions?.classNames ? { classNames: [...htmlOptions.classNames] } : {}),
        state: run.state!,
      });
      return { shardFile, shard: { index: options.shard.index, count: options.shard.count, start: selection!.start, end: selection!.end, selected: selection!.files.length, images: run.images, skipped: run.skipped.length } };
    }
    const histograms = await histogramsFor(statsFile, options.stats !== undefined, sha, options.model, run.variants, reporter, activations.length);
    const report = compareReportFrom(context, run, { ...(histograms ? { histograms } : {}), ...(mixed ? { tradeoff: mixed.tradeoff } : {}) });
    const { writeReportFiles } = await import('../compare/write.js');
    const htmlOptions = task.htmlOptions ? await task.htmlOptions(evaluator, run.variants.map((v) => v.name)) : undefined;
    const files = await writeReportFiles(report, { json: path.join(reportDir, 'report.json'), html: path.join(reportDir, 'report.html'), reporter, ...(htmlOptions ? { htmlOptions } : {}) });
    if (task.writeOutputs) files.push(...(await task.writeOutputs(evaluator, run.variants.map((v) => v.name))));
    return { report, files, ...(mixed ? { mixed: summarizeMixed(mixed) } : {}) };
  } finally {
    for (const s of sessions) await s.release();
  }
}

/** The tasks whose evaluators can be merged from shards (src/compare/task/*: toState/addState). */
const SHARDABLE_TASKS: readonly string[] = ['classify', 'detect', 'raw'];

/** `<report-dir>/report.<K>of<N>.msgpack`: a compare shard, beside the report.json that the merge writes. */
export function compareShardPath(reportDir: string, shard: { index: number; count: number }): string {
  return path.join(reportDir, `report.${shard.index}of${shard.count}.msgpack`);
}

/** The slice's images, relative to the selection's common folder (as the statistics shards name them). */
function selectionImages(selection: { files: readonly string[]; start: number; end: number }): string[] {
  return relativeToCommonFolder(selection.files.map((f) => slashPath(path.resolve(f)))).slice(selection.start, selection.end);
}

/** What compare --shard cannot do on a slice of the images, refused before any work. */
function checkShardable(options: CompareOptions, shard: ShardSpec): void {
  const refuse = (what: string, hint: string) => {
    throw new UserError(`${shard.source} compares a slice of the images: ${what}.`, { hint });
  };
  if (options.mixed) refuse('--mixed auto searches the precision of every layer on all the images at once', 'Run --mixed auto without --shard (or shard sensitivity, then pass the precision map with --precision-map).');
  if (options.labels !== undefined) refuse('--labels are matched against all the images, which a shard does not see (not supported with --shard yet)', 'Run the labelled comparison without --shard, or shard it against FP32 (no --labels).');
  if (options.task?.saveDetections !== undefined) refuse('--save-detections writes the detections of all the images (not supported with --shard yet)', 'Drop --save-detections, or run without --shard.');
}

/** sha256 of every file whose content decides the numbers: the shards of one comparison must agree on all of them. */
async function inputDigests(options: CompareOptions, statsFile: string): Promise<Array<[string, string]>> {
  const files: Array<[string, string]> = [
    ...(options.caches ?? []).map((f) => [`--cache ${f}`, f] as [string, string]),
    ...(options.variantModels ?? []).map((f) => [`--variant-model ${f}`, f] as [string, string]),
    ...(options.precisionMap ? [[`--precision-map`, options.precisionMap] as [string, string]] : []),
    ...(options.classes ? [[`--classes`, options.classes] as [string, string]] : []),
    ...(existsSync(statsFile) ? [[`statistics ${path.basename(statsFile)}`, statsFile] as [string, string]] : []),
  ];
  return Promise.all(files.map(async ([what, file]) => [what, await modelSha256(file)] as [string, string]));
}

function reportFolder(options: CompareOptions, outDir: string, modelBase: string): string {
  return options.reportDir ?? path.join(outDir, `${modelBase}.report`);
}

/** Every file the comparison writes, with the option that set its path. */
function compareOutputs(options: CompareOptions, outDir: string, modelBase: string): OutputPath[] {
  const reportDir = reportFolder(options, outDir, modelBase);
  const reportOption = options.reportDir !== undefined ? '--report-dir' : '--out-dir';
  return [
    { path: path.join(reportDir, 'report.json'), option: reportOption },
    { path: path.join(reportDir, 'report.html'), option: reportOption },
    ...(options.mixed
      ? [{ path: options.mixed.precisionOut ?? precisionMapPath(options.model, outDir), option: options.mixed.precisionOut !== undefined ? '--precision-out' : '--out-dir' }]
      : []),
    // One <variant>.json per variant; the FP32 one stands for the folder (the others are named after the caches).
    ...(options.task?.saveDetections !== undefined ? [{ path: path.join(options.task.saveDetections, 'fp32.json'), option: '--save-detections' }] : []),
  ];
}

/** Every file the comparison reads, which no output may replace. */
function compareInputs(options: CompareOptions, outDir: string, modelBase: string, external: readonly string[]): InputPath[] {
  return [
    { path: options.model, what: '--model' },
    ...external.map((f) => ({ path: f, what: 'the external data of --model' })),
    ...(options.caches ?? []).map((f) => ({ path: f, what: '--cache' })),
    ...(options.variantModels ?? []).map((f) => ({ path: f, what: '--variant-model' })),
    { path: options.stats ?? path.join(outDir, `${modelBase}.stats.msgpack`), what: options.stats !== undefined ? '--stats' : 'the statistics read from --out-dir' },
    ...(options.precisionMap ? [{ path: options.precisionMap, what: '--precision-map' }] : []),
    ...(options.labels && options.labels !== 'folders' ? [{ path: options.labels.replace(/^(yolo|masks):/, ''), what: '--labels' }] : []),
    ...(options.classes ? [{ path: options.classes, what: '--classes' }] : []),
  ];
}

/** What the report says about implicit-placement variants and protected tensors. */
function placementNotes(int8: ReadonlyArray<{ placement: QdqPlacement; protected: readonly ProtectedTensor[]; loaded: { file: string } }>): string[] {
  const notes: string[] = [];
  if (int8.some((v) => v.placement === 'implicit')) {
    notes.push(
      'int8-*-implicit variants round every tensor their cache names to its INT8 grid (the worst case of TensorRT <= 10 implicit INT8, where any layer with scales may run in INT8); ' +
        'with the explicit placement of the same cache they bound the range a user of implicit INT8 lands in. The winner and the gate use the explicit placement.',
    );
  }
  const seen = new Set<string>();
  for (const v of int8) {
    if (v.protected.length === 0 || seen.has(v.loaded.file)) continue;
    seen.add(v.loaded.file);
    notes.push(`${v.loaded.file}: ${v.protected.length} tensor(s) kept out of INT8 (--no-protect keeps them in): ${v.protected.map((p) => `${p.tensor} [${p.kind}]`).join(', ')}.`);
  }
  return notes;
}

/** What a model file computes in: INT8 when it has QuantizeLinear nodes, FP16 when it has float16 weights, else FP32. */
function precisionOfModel(model: OnnxModel): Precision {
  const g = model.graph;
  if (g?.node?.some((n) => n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear')) return 'int8';
  if (g?.initializer?.some((t) => t.dataType === 10)) return 'fp16';
  return 'fp32';
}

/**
 * Per-tensor histograms for the report, with the threshold every algorithm would pick, from the stored statistics.
 * Statistics of another model are refused when named explicitly and silently left out when only found by default.
 */
export async function histogramsFor(file: string, explicit: boolean, sha: string, modelFile: string, variants: CompareReport['variants'], reporter: Reporter, maxTensors: number) {
  if (!existsSync(file)) {
    if (explicit) throw new UserError(`The statistics file ${file} does not exist.`);
    reporter.info(`no statistics at ${file}: the report has no histograms (run calibration first, or pass --stats)`);
    return undefined;
  }
  let stored;
  try {
    stored = await loadStatistics(file, { expectModelSha256: sha, modelFile, maxTensors });
  } catch (err) {
    if (explicit) throw err;
    reporter.warn(`${file} left out of the report: ${(err as Error).message}`);
    return undefined;
  }
  const amaxes = await computeAllAmaxes(ALGORITHM_NAMES, stored.tensors);
  const thresholds = [...amaxes].map(([algorithm, amax]) => ({ algorithm, amax }));
  // Layer SNR of the best INT8 variant, to sort the histograms worst first.
  const int8 = variants.filter((v) => v.precision === 'int8' && v.layers && v.layers.length > 0);
  const snr = new Map<string, number>();
  for (const l of int8[0]?.layers ?? []) snr.set(l.name, l.snrDb);
  return buildHistograms(stored.tensors, thresholds, snr);
}
