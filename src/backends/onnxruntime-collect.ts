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
 * Counting in the graph (the default, withCountingNodes): a counting node after each activation's producer counts
 * it on onnxruntime's thread and a helper while it is in cache, and onnxruntime frees or reuses it like any
 * intermediate, so a pass holds one plain run's activation memory (PP-OCR det at 576x768 exports 671 MB per image:
 * counted from the outputs, two runs' worth were alive, 1.65 GB peak; in the graph 0.35 GB). Its session gets
 * every core and does not spin (counting runs between the operators, where a spinning thread would take the
 * helper's core).
 * Counting from the outputs (TRT_CALIB_COUNT=outputs, the path before): image k+1 runs while image k's outputs are
 * counted on the collector's own counting thread; two runs' outputs are alive at once, plus up to two counted ones
 * kept for onnxruntime to write the next runs into (while they total at most 256 MB).
 * Layout: on x86-64 onnxruntime runs convolutions in a blocked layout (NCHWc) and would reorder every exposed
 * activation to NCHW; the session here runs onnxruntime's own optimised graph, edited so that activations are
 * exported in blocks where that gives exactly their values (src/onnx/nchwc.ts). Counting does not depend on the
 * order of the values, so the statistics are the same bytes; MobileNetV2's exposed run goes from 11.6 to 8.4 ms.
 * That graph comes from a first session that only optimises (ortOptimizeModel), written with its weights to a
 * temporary folder that is removed once the real session is open: 30-40 ms more to start, 3 ms less per image.
 *
 * The model, its exposed outputs, the session options and the statistics are those of the onnxruntime-node path
 * (./onnxruntime-collect-worker.ts), which stays as the fallback where the library cannot be loaded; the two give the same
 * bytes (test/unit/backend-onnxruntime-collect.test.ts).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { checkFeed, loadFailure, nativeSessionConfig, onnxruntimeLibraryPath, runFailure } from './onnxruntime.js';
import { removeOnnxruntimeDebugLog, removeOnnxruntimeDebugLogAtExit } from './onnxruntime-debug-log.js';
import type { CollectingSession, TensorInfo } from './types.js';
import { StatisticsWorker } from './onnxruntime-collect-client.js';
import { loadNative, type OrtCollector, type OrtCollectorConfig, type OrtCollectorTarget } from '../native.js';
import { exposeTensors, exposedModelBytesForOnnxruntime } from '../onnx/expose.js';
import { describeInputs, type ActivationInfo } from '../onnx/graph.js';
import { decodeOnnxModel, graphOf, onnx, saveOnnxModel, withGraph, type OnnxModel, type OnnxNode } from '../onnx/model.js';
import { exportBlockedActivations } from '../onnx/nchwc.js';
import { newTemporaryFolder, removeTemporaryFolder } from '../util/run-temp.js';
import { statisticsFromStates } from '../stats/collector.js';
import { HISTOGRAM_BINS, type TensorStatistics } from '../stats/types.js';
import type { CollectionPlan } from './collection-plan.js';

export interface NativeCollectionConfig {
  modelFile: string;
  model: OnnxModel;
  inputName: string;
  plan: CollectionPlan;
  activations: readonly ActivationInfo[];
  /** onnxruntime intra-op threads; undefined: the path's default (see NativeStatistics). */
  threads?: number;
  /** Run everything but count nothing (bench/calibrate.mjs measures the counting's share of the time with it). */
  countNothing?: boolean;
}

/** The domain and name of the collector's counting op (native/src/ort/collector.cc). */
const COUNT_DOMAIN = 'trtcalib';
const COUNT_OP = 'CountStatistics';

/**
 * The model with counting nodes in place of the graph outputs `counted`: the node for counted[i] counts its input
 * into config.outputs[i]'s targets (attribute `slot`), right after the tensor's producer. onnxruntime then treats
 * the activations as intermediate tensors: counted while in cache, then freed or reused, never copied out. The
 * nodes' outputs are empty; the last one's is the one graph output to fetch (`countOutput`).
 * Undefined when some name is not a graph output (the outputs path counts then).
 */
export function withCountingNodes(model: OnnxModel, counted: readonly string[]): { model: OnnxModel; countOutput: string } | undefined {
  const g = graphOf(model);
  const outputs = new Set(g.output.map((o) => o.name!));
  if (counted.length === 0 || counted.some((n) => !outputs.has(n))) return undefined;
  // Where each tensor appears: graph inputs first, then in node order.
  const position = new Map<string, number>();
  for (const i of g.input) position.set(i.name!, -1);
  g.node.forEach((n, k) => n.output.forEach((o) => position.set(o, k)));
  const order = counted.map((_, i) => i).sort((a, b) => (position.get(counted[a]!) ?? -1) - (position.get(counted[b]!) ?? -1) || a - b);
  // Chained in that order, each node's second input the previous one's output, and after all of the model's
  // nodes in the list. onnxruntime orders nodes by a depth-first walk back from the graph's leaves that follows
  // the input with the highest node index first: from the last counting node, down the chain to the first, which
  // places each counting node right after its tensor's producer. Unchained, or placed after their producers in
  // the list, they ran after everything else (every activation alive to the end of the run: 1.5 GB for PP-OCR at
  // 576x768).
  const nameOf = (i: number) => `${counted[i]}::counted`;
  const counting = order.map((slot, k) =>
    onnx.NodeProto.create({
      opType: COUNT_OP,
      domain: COUNT_DOMAIN,
      name: nameOf(slot),
      input: k === 0 ? [counted[slot]!] : [counted[slot]!, nameOf(order[k - 1]!)],
      output: [nameOf(slot)],
      attribute: [onnx.AttributeProto.create({ name: 'slot', type: onnx.AttributeProto.AttributeType.INT, i: slot })],
    }),
  );
  const node = [...g.node, ...counting];
  const countOutput = nameOf(order[order.length - 1]!);
  const set = new Set(counted);
  const output = [
    ...g.output.filter((o) => !set.has(o.name!)),
    onnx.ValueInfoProto.create({ name: countOutput, type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: onnx.TensorProto.DataType.FLOAT }) }) }),
  ];
  const edited = withGraph(model, { ...g, node, output });
  edited.opsetImport = [...(model.opsetImport ?? []).filter((o) => o.domain !== COUNT_DOMAIN), onnx.OperatorSetIdProto.create({ domain: COUNT_DOMAIN, version: 1 })];
  return { model: edited, countOutput };
}

/**
 * How activations are counted: 'graph' (default) by counting nodes inside the model as it runs (withCountingNodes),
 * 'outputs' from the model's outputs on a counting thread beside the next image's run (what trt-calib did before;
 * TRT_CALIB_COUNT=outputs, for comparisons). The same bytes either way.
 */
export function countingMode(): 'graph' | 'outputs' {
  return process.env.TRT_CALIB_COUNT === 'outputs' ? 'outputs' : 'graph';
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

export class NativeStatistics implements CollectingSession {
  readonly #file: string;
  readonly #inputName: string;
  readonly #inputs: TensorInfo[];
  readonly #names: string[];
  readonly #merges: Array<[string, string]>;
  readonly #library: string;
  /** The exposed model's bytes, until the session is open (then released: 14 MB for MobileNetV2). */
  #bytes: Uint8Array;
  /** The model, until the session is open. */
  #model: OnnxModel | undefined;
  readonly #exposed: string[];
  readonly #config: OrtCollectorConfig;
  readonly #tryBlocked: boolean;
  #collector: OrtCollector | undefined;
  #closed = false;
  /** onnxruntime's version, once started. */
  version = '';
  /** Activations exported in onnxruntime's blocked layout (src/onnx/nchwc.ts), once started. */
  blockedExports = 0;
  /** onnxruntime intra-op threads. */
  readonly threads: number;
  /** Counting in the graph (withCountingNodes), once started; false: from the outputs. */
  countsInGraph = false;
  readonly #inGraph: boolean;

  constructor(config: NativeCollectionConfig) {
    const library = onnxruntimeLibraryPath();
    if (!library) throw new OnnxruntimeLibraryError(`onnxruntime-node ships no onnxruntime library for ${process.platform}-${process.arch}`);
    const { model, plan } = config;
    this.#library = library;
    this.#file = config.modelFile;
    this.#inputName = config.inputName;
    this.#inputs = describeInputs(model, config.modelFile);
    const graphInputs = new Set(this.#inputs.map((i) => i.name));
    const { names, outputs, inputTargets, merges } = layout(plan, config.inputName, graphInputs);
    this.#names = names;
    this.#merges = merges;
    this.#exposed = outputs.map((o) => o.name);
    // The model as the onnxruntime-node path opens it (src/backends/onnxruntime.ts open()), with the same outputs.
    this.#bytes = exposedModelBytesForOnnxruntime(model, plan.exported.filter((n) => !graphInputs.has(n)), { file: config.modelFile });
    this.#model = model;
    this.#inGraph = countingMode() === 'graph';
    // In-graph counting runs between the model's operators, on onnxruntime's thread and a helper: both get every
    // core. Counting from outputs runs beside the next image's inference: onnxruntime gets all cores but one.
    const cores = availableParallelism();
    this.threads = config.threads ?? (this.#inGraph ? cores : Math.max(1, cores - 1));
    const session = nativeSessionConfig({ threads: this.threads });
    // onnxruntime's idle intra-op threads spin (for a while) waiting for work; in-graph counting runs between the
    // operators, where a spinning thread takes a core from the counting helper.
    if (this.#inGraph && process.env.TRT_CALIB_SPIN !== '1') session.configEntries.push(['session.intra_op.allow_spinning', '0']);
    this.#config = {
      ...session,
      ...(this.#inGraph ? { countThreads: Math.min(2, cores) } : {}),
      inputName: config.inputName,
      bins: HISTOGRAM_BINS,
      states: names.length,
      inputTargets: config.countNothing ? [] : inputTargets,
      outputs: config.countNothing ? outputs.map((o) => ({ ...o, targets: [] })) : outputs,
    };
    // onnxruntime's blocked layout exists on x86-64 only, for convolutions.
    // It writes the weights to a temporary folder once: not for models so large that this would cost more than it
    // saves (and /tmp may be memory).
    this.#tryBlocked =
      process.env.TRT_CALIB_NCHWC !== '0' &&
      process.arch === 'x64' &&
      this.#bytes.length <= BLOCKED_MAX_MODEL_BYTES &&
      graphOf(model).node.some((n) => n.opType === 'Conv' && !n.domain);
  }

  async start(): Promise<void> {
    removeOnnxruntimeDebugLogAtExit();
    try {
      await this.#open();
    } finally {
      this.#bytes = new Uint8Array(0);
      this.#model = undefined;
      removeOnnxruntimeDebugLog(); // the library's environment started with the first session
    }
  }

  async #open(): Promise<void> {
    const native = loadNative();
    try {
      const blocked = this.#tryBlocked ? await blockedModel(this.#library, this.#bytes, this.#config, this.#exposed, this.#inGraph) : undefined;
      if (blocked) {
        try {
          const collector = new native.OrtCollector(this.#library, blocked.file, { ...this.#config, optimization: 0, ...(blocked.countOutput ? { countOutput: blocked.countOutput } : {}) });
          this.#collector = collector;
          this.version = await collector.open();
          this.blockedExports = blocked.count;
          this.countsInGraph = !!blocked.countOutput;
          return;
        } catch {
          // Not expected (the graph is onnxruntime's own, edited); the model as it is still works.
          this.#collector?.close();
          this.#collector = undefined;
        } finally {
          await removeTemporary(blocked.dir);
        }
      }
      // From the model itself: #bytes may be its source bytes with the added outputs appended (protobuf merges
      // those when onnxruntime reads them, but protobufjs's decode keeps only the last graph).
      const counting = this.#inGraph ? withCountingNodes(exposeTensors(this.#model!, this.#exposed, { file: this.#file }), this.#exposed) : undefined;
      if (counting) {
        try {
          this.#collector = new native.OrtCollector(this.#library, saveOnnxModel(counting.model), { ...this.#config, countOutput: counting.countOutput });
          this.version = await this.#collector.open();
          this.countsInGraph = true;
          return;
        } catch (err) {
          // A library error ends here; anything else (not expected: onnxruntime refusing the counting op) is
          // retried counting from the outputs, which reports any fault of the model itself.
          this.#collector?.close();
          this.#collector = undefined;
          if ((err as Error).message.startsWith(LIBRARY_ERROR)) throw err;
        }
      }
      this.#collector = new native.OrtCollector(this.#library, this.#bytes, this.#config);
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
      await this.#started().infer(data, dims);
    } catch (err) {
      throw runFailure(this.#file, feed, err);
    }
  }

  async finish(): Promise<TensorStatistics[]> {
    const collector = this.#started();
    await collector.drain();
    return statisticsFromStates(this.#names, collector.result(), HISTOGRAM_BINS, this.#merges);
  }

  #started(): OrtCollector {
    if (!this.#collector) throw new Error('NativeStatistics used before start()');
    return this.#collector;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#collector?.close();
  }
}

/** Models above this size (their weights, 512 MiB) are opened as they are. */
const BLOCKED_MAX_MODEL_BYTES = 512 * 2 ** 20;

async function removeTemporary(dir: string): Promise<void> {
  try {
    await removeTemporaryFolder(dir);
  } catch {
    // left to the exit hook (Windows: onnxruntime may still have the weights mapped)
  }
}

/**
 * onnxruntime's optimised graph of an exposed model (`bytes`, opened with `config`), edited to export the
 * activations in `exposed` in its blocked layout (src/onnx/nchwc.ts), in a new temporary folder with its weights
 * beside it: open `file` at optimisation level 0, then remove `dir`. Undefined when that does not apply or fails;
 * the model as it is then opens as before (and reports any fault of the model itself).
 */
export async function blockedModel(
  library: string,
  bytes: Uint8Array,
  config: Pick<OrtCollectorConfig, 'optimization' | 'configEntries'>,
  exposed: readonly string[],
  countInGraph = false,
): Promise<{ dir: string; file: string; count: number; countOutput?: string } | undefined> {
  let dir: string | undefined;
  try {
    // Inside the run's temporary folder, which goes at exit, or with the next run if this one is killed.
    dir = await newTemporaryFolder('nchwc');
    const optimized = path.join(dir, 'optimized.onnx');
    await loadNative().ortOptimizeModel(
      library,
      bytes,
      {
        // One thread: this session only optimises; weights prepacked for its kernels would be thrown away.
        threads: 1,
        optimization: config.optimization,
        configEntries: [
          ...config.configEntries,
          ['session.disable_prepacking', '1'],
          ['session.optimized_model_external_initializers_file_name', 'weights.bin'],
          ['session.optimized_model_external_initializers_min_size_in_bytes', '1024'],
        ],
      },
      optimized,
    );
    const edit = exportBlockedActivations(decodeOnnxModel(await readFile(optimized), optimized), new Set(exposed));
    if (!edit) throw new Error('nothing to export blocked');
    const file = path.join(dir, 'blocked.onnx');
    const counting = countInGraph ? withCountingNodes(edit.model, exposed) : undefined;
    await writeFile(file, saveOnnxModel(counting?.model ?? edit.model));
    return { dir, file, count: edit.blocked.length, ...(counting ? { countOutput: counting.countOutput } : {}) };
  } catch {
    if (dir) await removeTemporary(dir);
    return undefined;
  }
}

/**
 * The statistics pass: activations counted natively next to onnxruntime's C API (NativeStatistics) where
 * onnxruntime-node's library can be loaded, else the model in a worker thread through onnxruntime-node
 * (./onnxruntime-collect-worker.ts). Both give the same statistics, byte for byte. `info` hears why the fallback
 * was taken.
 */
export async function openCollectingSession(config: NativeCollectionConfig, info: (message: string) => void): Promise<CollectingSession> {
  const forced = process.env.TRT_CALIB_COLLECTOR === 'native';
  const why = nativeCollectionUnsupported(config);
  if (!why || forced) {
    const pass = new NativeStatistics(config);
    try {
      await pass.start();
      return pass;
    } catch (err) {
      await pass.close();
      if (!(err instanceof OnnxruntimeLibraryError) || forced) throw err;
      info(`statistics through onnxruntime-node (${err.message})`);
    }
  }
  // onnxruntime gets all cores but one by default: image decoding and the statistics run beside it.
  const threads = config.threads ?? Math.max(1, availableParallelism() - 1);
  const worker = new StatisticsWorker({ modelFile: config.modelFile, inputName: config.inputName, plan: config.plan, threads });
  try {
    await worker.start();
  } catch (err) {
    await worker.close();
    throw err;
  }
  return worker;
}
