/**
 * Statistics collection with the activations kept in native memory: the model runs through onnxruntime's C API
 * (the library onnxruntime-node ships, loaded by native/src/ort/collector.cc) and each exported activation is
 * counted by the native kernels straight from onnxruntime's output buffer.
 *
 * Why not onnxruntime-node: its binding copies every output into a new, zero-filled JS ArrayBuffer (even into
 * pre-allocated ones it copies back out), and the garbage collector then reclaims them. For MobileNetV2 with its
 * 70 exported activations (28 MB per image) that is 17-18 ms per run against 11.5 ms through the C API, for the
 * same kernels on the same graph (measured on 2 cores; bench/calibrate.mjs prints both).
 *
 * Pipelining: image k+1 runs while image k's activations are counted (the collector's own counting thread), so
 * the counting cost hides behind inference where cores allow. A few runs' activations are alive at once (the one
 * being produced, one queued, the one being counted, and up to two counted ones kept for onnxruntime to write the
 * next runs into, while they total at most 256 MB), so peak memory does not grow with the number of images.
 * The model, its exposed outputs, the session options and the statistics are those of the onnxruntime-node path
 * (./collect-worker.ts), which stays as the fallback where the library cannot be loaded; the two give the same
 * bytes (test/unit/native-collect.test.ts).
 */
import { checkFeed, loadFailure, nativeSessionConfig, onnxruntimeLibraryPath, runFailure } from '../backends/onnxruntime.js';
import type { TensorInfo } from '../backends/types.js';
import { loadNative, type OrtCollector, type OrtCollectorTarget } from '../native.js';
import { exposedModelBytesForOnnxruntime } from '../onnx/expose.js';
import { describeInputs, type ActivationInfo } from '../onnx/graph.js';
import type { OnnxModel } from '../onnx/model.js';
import { compareNames } from './collector.js';
import type { CollectionPlan } from './derive.js';
import { mergeInto } from './histogram.js';
import { HISTOGRAM_BINS, type TensorStatistics } from './types.js';

/** One pass of statistics collection over batches (this file, or ./worker-client.ts). */
export interface StatisticsPass {
  /** Loads the model; rejects with why it could not. */
  start(): Promise<void>;
  /** Hands a batch over; `data` may be reused once the promise resolves. */
  add(dims: number[], data: Float32Array): Promise<void>;
  /** Every tensor's statistics, sorted by name, once all batches are counted. */
  finish(): Promise<TensorStatistics[]>;
  close(): Promise<void>;
}

export interface NativeCollectionConfig {
  modelFile: string;
  model: OnnxModel;
  inputName: string;
  plan: CollectionPlan;
  activations: readonly ActivationInfo[];
  threads: number;
}

/** The onnxruntime library's failure (not the model's): the caller may use the onnxruntime-node path instead. */
export class OnnxruntimeLibraryError extends Error {}

const LIBRARY_ERROR = 'onnxruntime library: ';

/**
 * Why this collection cannot take the native path, or undefined when it can. TRT_CALIB_COLLECTOR=worker forces
 * the onnxruntime-node path (for comparisons); TRT_CALIB_COLLECTOR=native makes a failure to use this one an error.
 */
export function nativeCollectionUnsupported(config: Pick<NativeCollectionConfig, 'model' | 'inputName' | 'plan' | 'activations'>): string | undefined {
  if (process.env.TRT_CALIB_COLLECTOR === 'worker') return 'TRT_CALIB_COLLECTOR=worker';
  if (!onnxruntimeLibraryPath()) return `onnxruntime-node ships no onnxruntime library for ${process.platform}-${process.arch}`;
  const graphInputs = new Set(describeInputs(config.model).map((i) => i.name));
  const dtypes = new Map(config.activations.map((a) => [a.name, a.dtype]));
  for (const name of config.plan.exported) {
    if (graphInputs.has(name) && name !== config.inputName) return `graph input '${name}' is not the one fed with images`;
    const dtype = dtypes.get(name);
    if (dtype !== 'float32' && dtype !== 'float16') return `activation '${name}' is ${dtype ?? 'of unknown type'}`;
  }
  return undefined;
}

/** Statistics states, targets and merges for a collection plan (see OrtCollectorTarget). */
function layout(plan: CollectionPlan, inputName: string, graphInputs: ReadonlySet<string>) {
  const names = [...plan.exported, ...plan.derived.map((d) => d.name)];
  const index = new Map(names.map((n, i) => [n, i]));
  const targets = new Map<string, OrtCollectorTarget[]>(plan.exported.map((n) => [n, [{ state: index.get(n)! }]]));
  // A Pad's values are those of its root, or of a clamp of the root already counted: count only its zeros and
  // merge the twin's statistics in at the end (exact; the same bytes as counting the padded tensor).
  const merges: Array<[into: string, from: string]> = [];
  for (const d of plan.derived) {
    const list = targets.get(d.root);
    if (!list) throw new Error(`derived tensor ${d.name} has root ${d.root}, which is not exported`);
    const state = index.get(d.name)!;
    if (d.pads) {
      const twin = d.clamp
        ? plan.derived.find((c) => c.root === d.root && !c.pads && c.clamp && c.clamp.lo === d.clamp!.lo && c.clamp.hi === d.clamp!.hi)?.name
        : d.root;
      if (twin) {
        list.push({ state, pads: d.pads, zerosOnly: true });
        merges.push([d.name, twin]);
        continue;
      }
    }
    list.push({ state, ...(d.clamp ? { clamp: [d.clamp.lo, d.clamp.hi] as [number, number] } : {}), ...(d.pads ? { pads: d.pads } : {}) });
  }
  const outputs = plan.exported.filter((n) => !graphInputs.has(n)).map((name) => ({ name, targets: targets.get(name)! }));
  const inputTargets = graphInputs.has(inputName) ? (targets.get(inputName) ?? []) : [];
  return { names, outputs, inputTargets, merges };
}

export class NativeStatistics implements StatisticsPass {
  readonly #file: string;
  readonly #inputName: string;
  readonly #inputs: TensorInfo[];
  readonly #names: string[];
  readonly #merges: Array<[string, string]>;
  readonly #collector: OrtCollector;
  #closed = false;
  /** onnxruntime's version, once started. */
  version = '';

  constructor(config: NativeCollectionConfig) {
    const library = onnxruntimeLibraryPath();
    if (!library) throw new OnnxruntimeLibraryError(`onnxruntime-node ships no onnxruntime library for ${process.platform}-${process.arch}`);
    const { model, plan } = config;
    this.#file = config.modelFile;
    this.#inputName = config.inputName;
    this.#inputs = describeInputs(model, config.modelFile);
    const graphInputs = new Set(this.#inputs.map((i) => i.name));
    const { names, outputs, inputTargets, merges } = layout(plan, config.inputName, graphInputs);
    this.#names = names;
    this.#merges = merges;
    // The model as the onnxruntime-node path opens it (src/backends/onnxruntime.ts open()), with the same outputs.
    const bytes = exposedModelBytesForOnnxruntime(model, plan.exported.filter((n) => !graphInputs.has(n)), { file: config.modelFile });
    const native = loadNative();
    this.#collector = new native.OrtCollector(library, bytes, {
      ...nativeSessionConfig({ threads: config.threads }),
      inputName: config.inputName,
      bins: HISTOGRAM_BINS,
      states: names.length,
      inputTargets,
      outputs,
    });
  }

  async start(): Promise<void> {
    try {
      this.version = await this.#collector.open();
    } catch (err) {
      const message = (err as Error).message;
      if (message.startsWith(LIBRARY_ERROR)) throw new OnnxruntimeLibraryError(message.slice(LIBRARY_ERROR.length));
      throw loadFailure(this.#file, err);
    }
  }

  async add(dims: number[], data: Float32Array): Promise<void> {
    const feed = { [this.#inputName]: { dtype: 'float32' as const, dims, data } };
    checkFeed(this.#file, this.#inputs, feed);
    try {
      await this.#collector.infer(data, dims);
    } catch (err) {
      throw runFailure(this.#file, feed, err);
    }
  }

  async finish(): Promise<TensorStatistics[]> {
    await this.#collector.drain();
    const { headers, hists } = this.#collector.result();
    const bins = HISTOGRAM_BINS;
    const byName = new Map<string, TensorStatistics>();
    this.#names.forEach((name, i) => {
      const h = headers.subarray(i * 9, i * 9 + 9);
      byName.set(name, {
        name,
        count: h[0]!,
        nanCount: h[1]!,
        posInfCount: h[2]!,
        negInfCount: h[3]!,
        zeroCount: h[4]!,
        min: h[5]!,
        max: h[6]!,
        absMax: h[7]!,
        range: h[8]!,
        hist: hists.slice(i * bins, (i + 1) * bins),
      });
    });
    for (const [into, from] of this.#merges) mergeInto(byName.get(into)!, byName.get(from)!);
    return [...byName.values()].sort((a, b) => compareNames(a.name, b.name));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#collector.close();
  }
}
