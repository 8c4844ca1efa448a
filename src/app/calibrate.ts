/**
 * The calibration job, with no CLI in it: images -> activation statistics -> amax per tensor for each algorithm
 * -> TensorRT calibration caches, plus the statistics file so that any algorithm can be derived later without
 * running the model again (`fromStats`).
 *
 * Order of work: every cheap check first (TensorRT version, options, model, input shape, data selection), so that
 * a mistake fails in a second, before the long pass and with nothing written.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { assertCacheableNames, formatCalibrationCache, scaleFromAmax } from '../cache/trt-cache.js';
import { encodeTrtVersion, formatTrtVersion, resolveTrtVersion, type TrtVersion } from '../cache/trt-version.js';
import { CALIBRATORS, computeAllAmaxes } from '../calibrators/registry.js';
import type { AlgorithmName, CalibratorOptions } from '../calibrators/types.js';
import type { PreprocessConfig, SkippedFile } from '../datasets/types.js';
import { UserError } from '../errors.js';
import { listActivations, type ActivationInfo } from '../onnx/graph.js';
import { nodeLabel } from '../onnx/opset.js';
import { datasetForModel, type DataOptions } from './data.js';
import { shardRecord, shardStatsName, type ShardSpec } from './shard.js';
import { writeBiasCorrectedModels, type BiasCorrectionMode, type BiasCorrectionSummary } from './bias-correction.js';

export type { DataOptions } from './data.js';
import { externalDataFiles, loadOnnxModel, modelSha256 } from '../onnx/model.js';
import { writePrecisionMap } from '../precision/map.js';
import { findProtectedTensors, protectionPrecisionMap, type ProtectedTensor } from '../precision/protect.js';
import { silentReporter, type Reporter } from '../reporter.js';
import { planCollection } from '../backends/collection-plan.js';
import { compareNames } from '../stats/collector.js';
import { NativeStatistics, openCollectingSession } from '../backends/onnxruntime-collect.js';
import type { CollectingSession } from '../backends/types.js';
import { loadStatistics, saveStatistics } from '../stats/store.js';
import { imageListSha256, slashPath } from '../stats/image-list.js';
import { HISTOGRAM_BINS, type StoredStatistics, type TensorStatistics } from '../stats/types.js';
import { writeFileAtomic } from '../util/fs.js';
import { prepareOutputs, type PreparedOutputs } from '../util/outputs.js';
import { TOOL_VERSION } from '../version.js';

import { DEFAULT_OUT_DIR } from './defaults.js';

export { DEFAULT_OUT_DIR };

export interface CalibrateOptions {
  model: string;
  /** Images to calibrate on; or `fromStats`. */
  data?: DataOptions;
  /** A statistics file from an earlier run: no model run, no images. */
  fromStats?: string;
  /** Statistics already in memory (the merged shards of `trt-calib merge`): written to the statistics file like collected ones. */
  statistics?: { stored: StoredStatistics; from: string };
  algorithms: readonly AlgorithmName[];
  calibrator?: CalibratorOptions;
  /** TensorRT version of the cache header ("10.3.0"); detected when absent (error when none is installed). */
  trtVersion?: string;
  /** false: compute the scales (result.amax) and save the statistics, but write no cache (no TensorRT version needed). */
  writeCaches?: boolean;
  /** Header algorithm to write instead of the algorithm's own (e.g. EntropyCalibration2 for trtexec --calib). */
  cacheAlgorithm?: string;
  /** Cache path; only with a single algorithm. */
  out?: string;
  /** Folder of the default outputs (calib-cache). */
  outDir?: string;
  /** Statistics file to write (default <outDir>/<model>.stats.msgpack). */
  statsOut?: string;
  /** onnxruntime intra-op threads (0: its default). */
  threads?: number;
  /**
   * Keep the tensors INT8 would destroy out of the caches (src/precision/protect.ts; default true) and write the
   * precision map that keeps their layers in FP16 for `build`. false (--no-protect): every tensor gets a scale.
   */
  protect?: boolean;
  /** false: export every activation instead of counting Clip/Relu/Pad outputs from their inputs (same statistics; slower). */
  deriveStatistics?: boolean;
  /** Statistics of one slice of the images only (<model>.stats.<K>of<N>.msgpack), no scales, no cache: see `trt-calib merge`. */
  shard?: ShardSpec;
  /** Also write, per algorithm, the FP32 model with bias-corrected biases (<outDir>/<model>.<algo>.bc.onnx), for TensorRT's implicit INT8 with that cache. */
  biasCorrection?: boolean;
  biasCorrectionMode?: BiasCorrectionMode;
  reporter?: Reporter;
  signal?: AbortSignal;
}

export interface CacheWritten {
  algorithm: AlgorithmName;
  file: string;
  header: string;
  tensors: number;
}

export interface TensorRange {
  name: string;
  absMax: number;
  min: number;
  max: number;
}

export interface CalibrateResult {
  model: string;
  /** Absent when no cache was written (writeCaches: false). */
  trtVersion?: { version: string; encoded: number; source: string };
  caches: CacheWritten[];
  statsFile: string;
  /** Whether the statistics were collected now or read from a file. */
  statsSource: 'collected' | 'file' | 'merged';
  preprocess?: PreprocessConfig;
  batchSize?: number;
  /** dropped: images of a last, short batch that a fixed-batch model cannot run. */
  images: { used: number; skipped: SkippedFile[]; dropped: number };
  tensors: number;
  seconds: { total: number; collect: number; algorithms: number };
  imagesPerSecond?: number;
  widest: TensorRange[];
  narrowest: TensorRange[];
  /** Tensors that saw NaN or Inf, or no non-zero value. */
  problems: Array<{ name: string; problem: string }>;
  /** amax per algorithm per tensor, in cache order (the protected tensors left out, as in the caches). */
  amax: Record<string, Record<string, number>>;
  /** Tensors kept out of INT8 (left out of the caches), in topological order; empty with protect: false. */
  protected: ProtectedTensor[];
  /** The precision map with their layers in fp16 (for `build --precision-map`), when one was written. */
  protectedPrecisionMap?: string;
  /** With --shard: which slice of the selected images ([start, end)) these statistics cover. */
  shard?: { index: number; count: number; start: number; end: number; selected: number };
  /** With biasCorrection: the bias-corrected FP32 model written for each algorithm. */
  biasCorrected?: Array<{ algorithm: AlgorithmName; file: string } & BiasCorrectionSummary>;
}

export async function calibrate(options: CalibrateOptions): Promise<CalibrateResult> {
  // The output folders stay locked (src/util/outputs.ts) until every output is written or the run fails.
  const held: PreparedOutputs[] = [];
  try {
    return await calibrateWithOutputs(options, held);
  } finally {
    for (const outputs of held) outputs.release();
  }
}

async function calibrateWithOutputs(options: CalibrateOptions, held: PreparedOutputs[]): Promise<CalibrateResult> {
  const reporter = options.reporter ?? silentReporter;
  const started = performance.now();
  const algorithms = [...options.algorithms];
  if (algorithms.length === 0) throw new UserError('No calibration algorithm was given.', { hint: 'Pass --algo entropy2 (or minmax, entropy, percentile, mse, all).' });
  if (options.out !== undefined && algorithms.length > 1) {
    throw new UserError(`--out names one cache file but ${algorithms.length} algorithms were asked for (${algorithms.join(', ')}).`, {
      hint: `Drop --out to write ${DEFAULT_OUT_DIR}/<model>.<algo>.cache for each, or use --out-dir.`,
    });
  }
  if (options.data && options.fromStats) throw new UserError('Give either --data (calibrate on images) or --from-stats (reuse statistics), not both.');
  if (!options.data && !options.fromStats && !options.statistics) throw new UserError('No calibration data: pass --data DIR (images) or --from-stats FILE.');
  if (options.shard && (options.fromStats || options.out !== undefined)) {
    throw new UserError(`${options.shard.source} collects the statistics of a slice of the images and writes no cache: it cannot be combined with ${options.fromStats ? '--from-stats' : '--out'}.`, {
      hint: 'Run the shards with --data, then trt-calib merge their statistics files to write the caches.',
    });
  }
  // A shard computes no scales: they exist only for all the images (trt-calib merge).
  const scaled = options.shard ? [] : algorithms;
  if (options.biasCorrection && options.shard) throw new UserError(`--bias-correction needs the scales of all the images: run it with trt-calib merge's caches, not with ${options.shard.source}.`, { hint: 'Calibrate (or merge) first, then run calibrate --bias-correction on the calibration images.' });
  if (options.biasCorrection && !options.data) throw new UserError('--bias-correction measures the shifts on images: pass --data DIR (the calibration images), not --from-stats.');

  const writeCaches = !options.shard && (options.writeCaches ?? true);
  const trt = writeCaches ? resolveTrtVersion(options.trtVersion) : undefined;
  // Echoed once every check has passed, so that a failing run prints its error alone.
  const announce = () => {
    if (trt) reporter.info(`TensorRT cache version: ${formatTrtVersion(trt.version)} (${encodeTrtVersion(trt.version)}, ${trt.source})`);
    if (trt?.warning) reporter.warn(trt.warning);
  };

  // The model's hash goes into the statistics' provenance; it is computed while the model loads and runs.
  const modelShaPending = modelSha256(options.model);
  modelShaPending.catch(() => undefined); // awaited below; loadOnnxModel reports a missing file the same way
  const model = await loadOnnxModel(options.model);
  const activations = listActivations(model, { file: options.model });
  if (activations.length === 0) throw new UserError(`${options.model} has no floating-point activations to calibrate.`);
  if (writeCaches) assertCacheableNames(activations.map((a) => a.name), options.model);
  const modelBase = path.basename(options.model).replace(/\.onnx$/i, '');
  const outDir = options.outDir ?? DEFAULT_OUT_DIR;
  const statsFile = options.statsOut ?? path.join(outDir, options.shard ? shardStatsName(modelBase, options.shard) : `${modelBase}.stats.msgpack`);
  const cacheFile = (algorithm: AlgorithmName) => options.out ?? path.join(outDir, `${modelBase}.${algorithm}.cache`);
  const protectedMapFile = path.join(options.out !== undefined ? path.dirname(options.out) : outDir, `${modelBase}.protected.precision.json`);
  // Before the first image is decoded: no output is an input, every output folder can be written, and is ours.
  held.push(prepareOutputs(
    [
      ...(trt ? algorithms.map((a) => ({ path: cacheFile(a), option: options.out !== undefined ? '--out' : '--out-dir' })) : []),
      // Written only when some tensor is protected; checked like the caches beside it.
      ...(trt && options.protect !== false ? [{ path: protectedMapFile, option: options.out !== undefined ? '--out' : '--out-dir' }] : []),
      ...(options.fromStats ? [] : [{ path: statsFile, option: options.statsOut !== undefined ? '--stats-out' : '--out-dir' }]),
      ...(options.biasCorrection && !options.shard ? algorithms.map((a) => ({ path: path.join(outDir, `${modelBase}.${a}.bc.onnx`), option: '--out-dir' })) : []),
    ],
    [
      { path: options.model, what: '--model' },
      ...externalDataFiles(model).map((f) => ({ path: f, what: 'the external data of --model' })),
      ...(options.fromStats ? [{ path: options.fromStats, what: '--from-stats' }] : []),
    ],
    // A shard writes one file, atomically, beside the other shards of its job: the folder is shared, not locked.
    { lock: !options.shard },
  ));
  // Default outputs are named by the model's file name only: say so before replacing another model's.
  const writesDefaults = (writeCaches && options.out === undefined) || (!options.fromStats && options.statsOut === undefined);
  if (writesDefaults) await warnIfAnotherModels(path.join(outDir, `${modelBase}.stats.msgpack`), options.model, await modelShaPending, reporter);

  let tensors: TensorStatistics[];
  let collected: Awaited<ReturnType<typeof collectStatistics>> | undefined;
  const collectStarted = performance.now();
  if (options.statistics) {
    const { stored, from } = options.statistics;
    if (stored.provenance.modelSha256.toLowerCase() !== (await modelShaPending).toLowerCase()) {
      throw new UserError(`${from} were collected on model sha256 ${stored.provenance.modelSha256.slice(0, 12)}... (${stored.provenance.modelFile}), not on ${options.model}.`, {
        hint: 'Pass the --model the statistics were collected on.',
      });
    }
    tensors = stored.tensors;
    announce();
  } else if (options.fromStats) {
    const stored = await loadStatistics(options.fromStats, { expectModelSha256: await modelShaPending, modelFile: options.model, maxTensors: activations.length });
    tensors = stored.tensors;
    announce();
    reporter.info(`statistics: ${options.fromStats} (${stored.provenance.imageCount} images, ${tensors.length} tensors)`);
  } else {
    collected = await collectStatistics(options.model, model, activations, { ...options.data!, shard: options.shard }, { threads: options.threads, reporter, signal: options.signal, announce, derive: options.deriveStatistics });
    tensors = collected.stored.tensors;
    try {
      collected.stored.provenance.modelSha256 = await modelShaPending;
    } catch (err) {
      await collected.release();
      throw err;
    }
  }
  try {
    const collectSeconds = (performance.now() - collectStarted) / 1000;

    // Cache order: the network input first, then the activations in topological order (as TensorRT lists them).
    const byName = new Map(tensors.map((t) => [t.name, t]));
    const missing = activations.filter((a) => !byName.has(a.name));
    if (missing.length > 0) {
      throw new UserError(
        `${options.fromStats ?? statsFile} has no statistics for ${missing.length} activation(s) of ${options.model}, e.g. ${missing.slice(0, 3).map((m) => m.name).join(', ')}.`,
        { hint: 'Re-run calibration on this model.' },
      );
    }
    const ordered = activations.map((a) => byName.get(a.name)!);

    const algoStarted = performance.now();
    if (scaled.length > 0) reporter.start('computing scales', ordered.length, 'tensors');
    const computing = computeAllAmaxes(scaled, ordered, options.calibrator ?? {}, (done) => reporter.update({ done }));
    // The statistics are written while the native KL scans of the entropy calibrators run on other threads.
    const toSave = collected?.stored ?? options.statistics?.stored;
    const saving = toSave ? saveStatistics(statsFile, toSave) : Promise.resolve();
    const released = collected?.release(); // now that the scans run on other threads
    const [amaxes] = await Promise.all([computing, saving, released]); // all settle before any cache is written
    reporter.stop();
    const algoSeconds = (performance.now() - algoStarted) / 1000;

    // Decided from the graph and every tensor's statistics; the statistics file keeps them all, so that a later
    // --from-stats run can decide again.
    const protectedTensors = options.protect === false ? [] : findProtectedTensors(model, ordered, { calibrator: options.calibrator, file: options.model });
    const dropped = new Set(protectedTensors.map((p) => p.tensor));
    const cached = ordered.filter((t) => !dropped.has(t.name));

    const caches: CacheWritten[] = [];
    const writes: Array<Promise<void>> = [];
    const amaxOut: Record<string, Record<string, number>> = {};
    let protectedPrecisionMap: string | undefined;
    if (trt && protectedTensors.length > 0) {
      protectedPrecisionMap = protectedMapFile;
      const map = protectionPrecisionMap(model, protectedTensors, { file: options.model });
      writes.push(writePrecisionMap(protectedPrecisionMap, map, (model.graph?.node ?? []).map((n) => nodeLabel(n))));
    }
    for (const algorithm of scaled) {
      const calibrator = CALIBRATORS[algorithm];
      const amax = amaxes.get(algorithm)!;
      amaxOut[algorithm] = Object.fromEntries(cached.map((t) => [t.name, amax.get(t.name)!]));
      if (!trt) continue;
      // TensorRT has no percentile/MSE calibrator class: such caches carry the header of IInt8EntropyCalibrator2,
      // the calibrator trtexec --calib uses, so that they are read rather than silently recalibrated.
      const header = options.cacheAlgorithm ?? (calibrator.trtNative ? calibrator.cacheName : 'EntropyCalibration2');
      const text = formatCalibrationCache({
        trtVersion: trt.version,
        algorithm: header,
        entries: cached.map((t) => ({ name: t.name, scale: scaleFromAmax(amax.get(t.name)!) })),
      });
      const file = cacheFile(algorithm);
      writes.push(writeFileAtomic(file, text));
      caches.push({ algorithm, file, header: text.slice(0, text.indexOf('\n')), tensors: cached.length });
    }
    // Written side by side: each waits for its own fsync.
    const written = await Promise.allSettled(writes);
    const failed = written.find((w): w is PromiseRejectedResult => w.status === 'rejected');
    if (failed) throw failed.reason;

    const withData = ordered.filter((t) => t.absMax > 0);
    const byRange = [...withData].sort((a, b) => b.absMax - a.absMax || (a.name < b.name ? -1 : 1));
    const range = (t: TensorStatistics): TensorRange => ({ name: t.name, absMax: t.absMax, min: t.min, max: t.max });
    const problems: CalibrateResult['problems'] = [];
    // One entry per tensor, with all that is wrong with it: the summary counts tensors, not problems.
    for (const t of ordered) {
      const parts: string[] = [];
      if (t.nanCount > 0 || t.posInfCount > 0 || t.negInfCount > 0) parts.push(`${t.nanCount} NaN, ${t.posInfCount} +Inf, ${t.negInfCount} -Inf (ignored for the scale)`);
      if (t.count === 0) parts.push('no finite values: scale set for the range [-1, 1]');
      else if (t.absMax === 0) parts.push('all values were 0: scale set for the range [-1, 1]');
      if (parts.length > 0) problems.push({ name: t.name, problem: parts.join('; ') });
    }
    const biasCorrected = options.biasCorrection
      ? await writeBiasCorrectedModels({ modelFile: options.model, model, amax: amaxOut, algorithms, data: options.data!, outDir, mode: options.biasCorrectionMode, threads: options.threads, reporter })
      : undefined;
    const total = (performance.now() - started) / 1000;
    const shardRun = collected?.stored.provenance.shard;
    return {
      model: options.model,
      ...(trt ? { trtVersion: { version: formatTrtVersion(trt.version), encoded: encodeTrtVersion(trt.version), source: trt.source } } : {}),
      caches,
      statsFile: options.fromStats ?? statsFile,
      statsSource: options.fromStats ? 'file' : options.statistics ? 'merged' : 'collected',
      preprocess: collected?.preprocess,
      batchSize: collected?.batchSize,
      images: { used: collected?.used ?? 0, skipped: collected?.skipped ?? [], dropped: collected?.dropped ?? 0 },
      tensors: ordered.length,
      seconds: { total, collect: collectSeconds, algorithms: algoSeconds },
      imagesPerSecond: collected ? collected.used / collectSeconds : undefined,
      widest: byRange.slice(0, 5).map(range),
      narrowest: byRange.slice(-5).reverse().map(range),
      problems,
      amax: amaxOut,
      protected: protectedTensors,
      ...(protectedPrecisionMap ? { protectedPrecisionMap } : {}),
      ...(shardRun ? { shard: { index: shardRun.index, count: shardRun.count, start: shardRun.start, end: shardRun.end, selected: shardRun.selectedCount } } : {}),
      ...(biasCorrected ? { biasCorrected } : {}),
    };
  } finally {
    await collected?.release();
  }
}

/**
 * Two models with the same file name in different folders share default output names (<out-dir>/<name>.*). The
 * statistics there record the sha256 of the model they were collected on: when it is another model's, a warning
 * names it before its statistics and caches are replaced. A warning, not a refusal: the provenance holds the file
 * name only (not its folder, so that the bytes do not depend on where the model lies), so a namesake cannot be
 * told apart from the same model exported again, and refusing would stop the everyday re-export-and-recalibrate
 * loop; --out-dir keeps both.
 */
async function warnIfAnotherModels(defaultStats: string, modelFile: string, sha: string, reporter: Reporter): Promise<void> {
  let other: StoredStatistics['provenance'];
  try {
    other = (await loadStatistics(defaultStats)).provenance;
  } catch {
    return; // none there, or unreadable: nothing of value is replaced
  }
  if (other.modelSha256 === sha || other.modelSha256 === '') return;
  reporter.warn(
    `${defaultStats} and the caches beside it are of another model named ${other.modelFile} (sha256 ${other.modelSha256.slice(0, 12)}..., ` +
      `${other.imageCount} images), not of ${modelFile} (sha256 ${sha.slice(0, 12)}...): they are replaced. ` +
      `If that is a different model (the same file name in another folder), keep both with --out-dir.`,
  );
}

interface CollectOptions {
  /** false: export every activation from onnxruntime (for checking that derived statistics are the same). */
  derive?: boolean;
  /** Called once the checks have passed, before the long pass. */
  announce: () => void;
  threads?: number;
  reporter: Reporter;
  signal?: AbortSignal;
}

/**
 * One pass over the images: each activation goes to the statistics as soon as onnxruntime returns it and is then
 * released, so peak memory is bounded by one batch of activations plus (tensors x bins), whatever the image count.
 */
async function collectStatistics(
  modelFile: string,
  model: Awaited<ReturnType<typeof loadOnnxModel>>,
  activations: readonly ActivationInfo[],
  data: DataOptions,
  options: CollectOptions,
) {
  const { reporter } = options;
  // Batch 1 by default: a few runs' activations are alive at once (28 MB per image exported for MobileNetV2), and
  // onnxruntime on the CPU is as fast per image at batch 1; batch 8 was slower (43 images: 0.96 s vs 1.26 s).
  // The statistics do not depend on the batch size.
  // Eight images decoded ahead (5 MB at 224x224): enough to ride out the uneven decode times of photos.
  const { input, preprocess, batchSize, dataset, selection } = await datasetForModel(modelFile, model, { prefetchImages: 8, ...data }, 'calibration', 1);

  const names = activations.map((a) => a.name);
  // The model runs off the main thread (openCollectingSession, which picks onnxruntime's threads by default):
  // decoding goes on beside it.
  // Clip/Relu/Pad outputs are counted from their inputs' values rather than exported (src/backends/collection-plan.ts).
  const plan = planCollection(model, activations, { derive: options.derive });
  const skipped: SkippedFile[] = [];
  // For the image-list hash of the provenance.
  const sizes = fileSizes(dataset.files);
  // Decoding starts now, beside the model's preparation and loading (tens to hundreds of milliseconds).
  // Statistics are sums of exact counts: images can go to the model in the order they finish decoding, so one
  // large photo does not hold up the others. Not with a fixed batch larger than 1, whose short last batch is
  // dropped: which images it holds must not depend on timing.
  const fixedBatch = typeof input.dims[0] === 'number' && input.dims[0] > 0;
  const batches = dataset
    .batches({
      order: batchSize === 1 || !fixedBatch ? 'any' : 'files',
      reuseBuffer: true, // worker.add() is done with a batch's data when it resolves
      signal: options.signal,
      onSkip: (s) => {
        skipped.push(s);
        reporter.warn(`skipped ${s.file}: ${s.reason}`);
      },
    })
    [Symbol.asyncIterator]();
  const first = batches.next();
  first.catch(() => undefined); // awaited below; a failure surfaces there
  let worker: CollectingSession;
  try {
    worker = await openCollectingSession({ modelFile, model, inputName: input.name, plan, activations, threads: options.threads }, (m) => reporter.info(m));
  } catch (err) {
    await batches.return?.(undefined).catch(() => undefined);
    throw err;
  }
  let used = 0;
  let tensors: TensorStatistics[] = [];
  let dropped = 0;
  try {
    options.announce();
    const via =
      worker instanceof NativeStatistics
        ? `onnxruntime ${worker.version}, ${worker.threads} threads${worker.blockedExports ? `, ${worker.blockedExports} in its blocked layout` : ''}, counted ${worker.countsInGraph ? 'in the graph' : 'from its outputs'}`
        : 'onnxruntime-node, in a worker thread';
    reporter.info(`calibrating on ${dataset.size} images, batch ${batchSize}, ${names.length} tensors (${via})`);
    reporter.start('calibrating', dataset.size, 'images');
    for (let next = await first; !next.done; next = await batches.next()) {
      const batch = next.value;
      if (batch.partial && typeof input.dims[0] === 'number' && input.dims[0] > 0 && batch.files.length !== input.dims[0]) {
        // A model with a fixed batch cannot run the short last batch; padding it would count images twice.
        dropped = batch.files.length;
        reporter.warn(`the last ${dropped} image(s) were not used: ${modelFile} has a fixed batch of ${input.dims[0]} (use --max-images to pick a multiple)`);
        continue;
      }
      await worker.add(batch.dims, batch.data);
      used += batch.files.length;
      reporter.update({ done: used + skipped.length, detail: path.basename(batch.files[batch.files.length - 1]!) });
    }
    if (used > 0) tensors = await worker.finish();
  } catch (err) {
    await worker.close();
    throw err;
  } finally {
    reporter.stop();
    await batches.return?.(undefined).catch(() => undefined); // stops decoding after an error
  }
  // After a pass, freeing the session (about 10 ms for MobileNetV2, on this thread) waits until the scale
  // computations are under way: the caller calls release() once it has started them, and again at its end.
  const release = () => worker.close();
  try {
    if (used === 0) throw new UserError(`None of the ${dataset.size} images in ${data.data} could be read.`);
    skipped.sort((a, b) => compareNames(a.file, b.file));
    const skippedFiles = new Set(skipped.map((s) => s.file));
    const shard = data.shard && selection ? shardRecord(data.shard, selection.files, selection, await sizes, skippedFiles, fixedBatch ? (input.dims[0] as number) : 1) : undefined;

    const stored: StoredStatistics = {
      format: 'trt-calib-stats',
      formatVersion: 1,
      provenance: {
        tool: 'trt-calib',
        toolVersion: TOOL_VERSION,
        modelFile: path.basename(modelFile),
        modelSha256: '',
        shapes: { [input.name]: dataset.imageDims },
        preprocess,
        imageCount: used,
        skippedCount: skipped.length,
        imageListSha256: imageListHash(dataset.files, await sizes, skippedFiles),
        histogramBins: HISTOGRAM_BINS,
        createdBy: 'trt-calib calibrate',
        ...(shard ? { shard } : {}),
      },
      tensors,
    };
    return { stored, preprocess, batchSize, used, skipped, dropped, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** The provenance's imageListSha256 (src/stats/image-list.ts) over the images used. */
function imageListHash(files: readonly string[], sizes: readonly number[], skipped: ReadonlySet<string>): string {
  return imageListSha256(files.flatMap((f, i) => (skipped.has(f) ? [] : [[slashPath(path.resolve(f)), sizes[i]!] as const])));
}

/** The files' sizes, read all at once (at the start of the pass, beside the decoding); -1 for one that cannot be
 * read (the pass skips it, so the hash leaves it out). */
function fileSizes(files: readonly string[]): Promise<number[]> {
  return Promise.all(files.map((f) => fsp.stat(f).then((st) => st.size, () => -1)));
}
