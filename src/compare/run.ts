/**
 * Runs the comparison: every batch of the dataset goes once through the FP32 reference session and then
 * through each variant's session (FP16, INT8 Q/DQ...), on the very same preprocessed tensors; the accumulators
 * take each batch and let it go. Only one batch of outputs (and of layer tensors, for layerwise SNR) is alive
 * at a time.
 *
 * A task evaluator (src/compare/task/), when given, sees every batch too: FP32's outputs as the reference, then FP32's
 * own row (always, as 'fp32', so that labelled drops have FP32's labelled value even when the report has no fp32
 * row) and each variant's, with the batch's image geometries (read from the files' headers); its verdict becomes
 * each VariantReport's `task`.
 */
import path from 'node:path';
import type { Session } from '../backends/types.js';
import { imageGeometries } from '../datasets/geometry.js';
import type { Dataset, SkippedFile } from '../datasets/types.js';
import { silentReporter, type Reporter } from '../reporter.js';
import type { Tensor } from '../tensor.js';
import type { OutputComparisonOptions } from './metrics.js';
import { choosePrimaryOutput, VariantComparison, type VariantComparisonState, type VariantSpec } from './report.js';
import type { TaskEvaluator, TaskMetrics } from './task/types.js';
import type { VariantReport } from './types.js';

/** A tensor compared layerwise: the same name in both models, or a reference name and the variant's name for it. */
export type LayerTensor = string | { reference: string; variant: string };

export interface VariantRun {
  spec: VariantSpec;
  session: Session;
  /**
   * Tensors to compare layerwise (INT8: the quantized activations). The reference session must return the
   * reference names and this session the variant names (open both with them exposed).
   */
  layers?: readonly LayerTensor[];
}

export interface RunComparisonOptions {
  dataset: Dataset;
  /** The FP32 model. */
  reference: Session;
  variants: readonly VariantRun[];
  /** Output names to compare, in order (default: the reference session's outputs). */
  outputs?: readonly string[];
  /** Class index per file (files as the dataset names them); files not in the map are unlabelled. */
  labels?: ReadonlyMap<string, number>;
  /** Add an "fp32" row: the reference against itself (exact by construction; it carries FP32's accuracy). */
  includeReference?: boolean;
  metrics?: OutputComparisonOptions;
  /** Operator type per tensor name, to annotate layer rows. */
  opTypes?: ReadonlyMap<string, string>;
  /** Judges every variant in the task's terms; the outputs it reads are fetched from every session. */
  task?: TaskEvaluator;
  reporter?: Reporter;
  signal?: AbortSignal;
  /** compare --shard: also return what was accumulated (ComparisonRun.state), for `trt-calib merge`. */
  keepState?: boolean;
}

/** What a pass accumulated, as plain data: a compare shard's body (src/compare/shard.ts). */
export interface ComparisonState {
  /** The outputs compared as numbers, in order. */
  compared: string[];
  images: number;
  skipped: SkippedFile[];
  fp32?: VariantComparisonState;
  variants: VariantComparisonState[];
  task?: unknown;
}

export interface ComparisonRun {
  variants: VariantReport[];
  images: number;
  skipped: SkippedFile[];
  /** The output the per-variant summary is about (the task's first output, else choosePrimaryOutput's pick). */
  primaryOutput: string;
  /** FP32's own task metrics (FP32 against itself, and against the labels), whether or not the report has an fp32 row. */
  referenceTask?: TaskMetrics;
  /** With keepState. */
  state?: ComparisonState;
}

/** Builds the label lookup runComparison takes from files and their labels (undefined = unlabelled). */
export function labelMap(files: readonly string[], labels: readonly (number | undefined)[]): Map<string, number> {
  const map = new Map<string, number>();
  files.forEach((f, i) => {
    const l = labels[i];
    if (l !== undefined) map.set(path.resolve(f), l);
  });
  return map;
}

const refName = (l: LayerTensor) => (typeof l === 'string' ? l : l.reference);
const varName = (l: LayerTensor) => (typeof l === 'string' ? l : l.variant);

export async function runComparison(options: RunComparisonOptions): Promise<ComparisonRun> {
  const { dataset, reference } = options;
  const reporter = options.reporter ?? silentReporter;
  const compared = options.outputs ?? reference.outputs.map((o) => o.name);
  // The task's outputs are fetched too; only `compared` are compared as numbers.
  const outputs = [...new Set([...compared, ...(options.task?.outputs ?? [])])];
  if (outputs.length === 0) throw new Error('The reference model has no outputs to compare.');
  const referenceLayers = [...new Set(options.variants.flatMap((v) => (v.layers ?? []).map(refName)))].filter((n) => !outputs.includes(n));
  const runs = options.variants.map((v) => ({ run: v, cmp: new VariantComparison(v.spec, options.metrics) }));
  const fp32 = options.includeReference ? new VariantComparison({ name: 'fp32', precision: 'fp32' }, options.metrics) : undefined;
  const labels = options.labels === undefined ? undefined : new Map([...options.labels].map(([f, l]) => [path.resolve(f), l]));
  const skipped: SkippedFile[] = [];
  let images = 0;

  reporter.start(`Comparing ${[...(fp32 ? ['fp32'] : []), ...options.variants.map((v) => v.spec.name)].join(', ')}`, dataset.size, 'images');
  try {
    // The task's work on one session's outputs (decoding, NMS...) runs while the next session computes, in the
    // order the evaluator expects: queued, and done right after the next run has started (or after the pass).
    const task = options.task;
    const queued: Array<() => void> = [];
    const flushTask = () => {
      for (const work of queued.splice(0)) work();
    };
    const whileRunning = async (running: Promise<Record<string, Tensor>>): Promise<Record<string, Tensor>> => {
      try {
        flushTask();
      } catch (err) {
        await running.catch(() => undefined);
        throw err;
      }
      return running;
    };
    for await (const batch of dataset.batches({ onSkip: (s) => skipped.push(s), ...(options.signal ? { signal: options.signal } : {}) })) {
      const feed: Record<string, Tensor> = { [dataset.inputName]: { dtype: 'float32', dims: batch.dims, data: batch.data } };
      const batchLabels = labels === undefined ? undefined : batch.files.map((f) => labels.get(path.resolve(f)));
      const ref = await whileRunning(reference.run(feed, [...outputs, ...referenceLayers]));
      fp32?.addOutputs(ref, ref, batch.files, batchLabels, compared);
      const geometries = task ? await imageGeometries(batch.files, dataset.preprocess) : [];
      if (task) {
        await task.prepareBatch?.(geometries);
        queued.push(() => {
          task.addReference(ref, geometries);
          task.addVariant('fp32', ref, geometries);
        });
      }
      for (const { run, cmp } of runs) {
        const layers = run.layers ?? [];
        const fetch = [...new Set([...outputs, ...layers.map(varName)])];
        const out = await whileRunning(run.session.run(feed, fetch));
        cmp.addOutputs(ref, out, batch.files, batchLabels, compared);
        if (task) queued.push(() => task.addVariant(run.spec.name, out, geometries));
        if (layers.length > 0) {
          const r: Record<string, Tensor> = {};
          const v: Record<string, Tensor> = {};
          for (const l of layers) {
            const rt = ref[refName(l)];
            const vt = out[varName(l)];
            if (rt === undefined) throw new Error(`The reference run did not return tensor ${JSON.stringify(refName(l))}; open it with that tensor exposed.`);
            if (vt === undefined) throw new Error(`Variant ${run.spec.name} did not return tensor ${JSON.stringify(varName(l))}; open it with that tensor exposed.`);
            r[refName(l)] = rt;
            v[refName(l)] = vt;
          }
          cmp.addLayers(r, v, layers.map(refName));
        }
      }
      // The next batch's masks (prepareBatch) replace this batch's: its task work must be done first.
      if (task?.prepareBatch) flushTask();
      images += batch.files.length;
      reporter.update({ done: images + skipped.length });
    }
    flushTask();
  } finally {
    reporter.stop();
  }
  if (images === 0) throw new Error('No image could be compared (every file was skipped).');
  const state: ComparisonState | undefined = options.keepState
    ? {
        compared: [...compared],
        images,
        skipped,
        ...(fp32 ? { fp32: fp32.toState() } : {}),
        variants: runs.map((r) => r.cmp.toState()),
        ...(options.task?.toState ? { task: options.task.toState() } : {}),
      }
    : undefined;
  const run = finishComparison(fp32, runs.map((r) => r.cmp), compared, options.task, images, skipped, options.opTypes);
  return state ? { ...run, state } : run;
}

/**
 * The run that the shards' states make together (in shard order): the same numbers as one pass over all their
 * images. `task` is a fresh evaluator of the same task.
 */
export function comparisonFromStates(
  states: readonly ComparisonState[],
  options: { metrics?: OutputComparisonOptions; task?: TaskEvaluator; opTypes?: ReadonlyMap<string, string> },
): ComparisonRun {
  const first = states[0];
  if (first === undefined) throw new Error('No comparison state to merge.');
  const fp32 = first.fp32 ? new VariantComparison(first.fp32.spec, options.metrics) : undefined;
  const cmps = first.variants.map((v) => new VariantComparison(v.spec, options.metrics));
  let images = 0;
  const skipped: SkippedFile[] = [];
  for (const s of states) {
    if (s.variants.length !== cmps.length || Boolean(s.fp32) !== Boolean(fp32)) throw new Error('The comparison states have different variants.');
    if (fp32) fp32.addState(s.fp32!);
    s.variants.forEach((v, i) => cmps[i]!.addState(v));
    if (options.task) {
      if (!options.task.addState) throw new Error(`The ${options.task.kind} task cannot be merged from shards.`);
      options.task.addState(s.task);
    }
    images += s.images;
    skipped.push(...s.skipped);
  }
  return finishComparison(fp32, cmps, first.compared, options.task, images, skipped, options.opTypes);
}

function finishComparison(
  fp32: VariantComparison | undefined,
  cmps: readonly VariantComparison[],
  compared: readonly string[],
  task: TaskEvaluator | undefined,
  images: number,
  skipped: SkippedFile[],
  opTypes: ReadonlyMap<string, string> | undefined,
): ComparisonRun {
  const first = fp32 ?? cmps[0];
  if (first === undefined) throw new Error('Nothing to compare: no variant was given.');
  // One primary output for every variant: the task's first output (what the verdict reads), else chosen from the
  // first variant's results.
  const taskOutput = task?.outputs.find((o) => compared.includes(o));
  const primaryName = taskOutput ?? choosePrimaryOutput(first.result().outputs);
  const variants = [...(fp32 ? [fp32] : []), ...cmps].map((c) => c.result(primaryName, opTypes));
  if (task === undefined) return { variants, images, skipped, primaryOutput: primaryName };
  const metrics = task.finish();
  for (const v of variants) {
    const m = metrics.get(v.name);
    if (m === undefined) throw new Error(`The task evaluator has no result for variant ${v.name}.`);
    v.task = m;
  }
  return { variants, images, skipped, primaryOutput: primaryName, ...(metrics.has('fp32') ? { referenceTask: metrics.get('fp32')! } : {}) };
}
