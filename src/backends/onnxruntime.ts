/**
 * The default backend: onnxruntime-node on the CPU.
 *
 * Collecting activations: the tensors to calibrate are added to the model as extra graph outputs
 * (src/onnx/expose.ts), as onnxruntime's own Python calibrator does. onnxruntime never fuses away a graph output,
 * so the full optimisation level stays on: the model's other fusions and the NCHWc layout still apply, and the
 * exposed values are those of the original graph. Graph inputs are not exposed: a run hands the feed back.
 *
 * Memory: onnxruntime-node (>= 1.2x) returns outputs as external ArrayBuffers that own the OrtValue, without a
 * copy; the memory returns to onnxruntime when the ArrayBuffer is collected. `runEach` therefore drops every
 * reference it holds to a tensor once its consumer is done with it, so that peak memory is one batch of
 * activations, whatever the number of batches.
 *
 * Determinism: measured with onnxruntime-node 1.30 on MobileNetV2 and PP-OCRv4 det: every activation of an
 * image is bit-identical whether the image runs alone or in a batch, and with 1 or 2 intra-op threads
 * (test/unit/backend-onnxruntime.test.ts checks it), so statistics do not depend on batch size or threads.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { DTYPES, elementCount, formatDims, type DType, type Tensor } from '../tensor.js';
import { exposeTensors } from '../onnx/expose.js';
import { analyzeGraph, describeInputs, graphOutputs, type ActivationInfo, type UnknownTypedTensor } from '../onnx/graph.js';
import { decodeOnnxModel, graphOf, loadOnnxModel, onnx, saveOnnxModel, withGraph, type OnnxModel } from '../onnx/model.js';
import { openUserFile, READ_LIMITS } from '../util/fs.js';
import { removeOnnxruntimeDebugLog, removeOnnxruntimeDebugLogAtExit } from './onnxruntime-debug-log.js';
import type { Backend, Session, SessionOptions, TensorInfo } from './types.js';

// ---------------------------------------------------------------------------------------------------------------
// Tensor conversion, in one place.

const ORT_TYPES: ReadonlySet<string> = new Set(Object.keys(DTYPES));

/** Our Tensor -> onnxruntime's (no copy: the typed array is shared). */
export function toOrtTensor(t: Tensor): OrtTensor {
  return new ort.Tensor(t.dtype, t.data as never, t.dims);
}

/** onnxruntime's Tensor -> ours (no copy). */
export function fromOrtTensor(t: OrtTensor, name: string): Tensor {
  if (!ORT_TYPES.has(t.type)) throw new Error(`onnxruntime returned '${name}' as ${t.type}, which trt-calib does not handle`);
  return { dtype: t.type as DType, dims: Array.from(t.dims), data: t.data as Tensor['data'] };
}

// ---------------------------------------------------------------------------------------------------------------

export interface OnnxruntimeSessionOptions extends SessionOptions {
  /**
   * Q/DQ models: 'emulate' (default) keeps QuantizeLinear/DequantizeLinear as fake quantization in float, with
   * float biases as TensorRT has them; 'onnxruntime' lets onnxruntime apply its own QDQ rewrites (int32 bias
   * quantization, int8 kernels), i.e. how the model would run when deployed on onnxruntime.
   */
  qdq?: 'emulate' | 'onnxruntime';
  /** onnxruntime graph optimisation level; 'all' by default (see the file comment). */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
}

function ortSessionOptions(options: OnnxruntimeSessionOptions): InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: options.threads && options.threads > 0 ? options.threads : 0,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
    // Keep QuantizeLinear/DequantizeLinear as they are (fake quantization in float) instead of fusing them into
    // onnxruntime's own int8 kernels. The fused kernels change with the CPU (VNNI or not; the u8s8 AVX2 path
    // saturates with full-range int8 weights) and with which tensors a session exposes, so the same Q/DQ model
    // would give other numbers on another machine or in another command. Emulated Q/DQ gives the same numbers
    // everywhere, and it is how TensorRT's INT8 accuracy is usually estimated (pytorch-quantization, ModelOpt).
    ...(options.qdq === 'onnxruntime' ? {} : { extra: { session: { disable_quant_qdq: '1' } } }),
    // onnxruntime logs from native code straight to stderr, past our Reporter; its errors reach us as
    // exceptions anyway (turned into UserErrors below), so keep only fatal messages.
    logSeverityLevel: 4,
  };
}

/** The error for a run onnxruntime refused (the same wording on every path that runs a model). */
export function runFailure(file: string, feed: Record<string, { dims: readonly number[] }>, err: unknown): UserError {
  const dims = Object.entries(feed).map(([n, t]) => `'${n}' ${formatDims(t.dims)}`).join(', ');
  return new UserError(`onnxruntime failed to run ${file} on input ${dims}: ${firstLine((err as Error).message)}`, {
    hint: 'the model may need another input size (e.g. multiples of 32 for detectors): set --size or --shapes',
  });
}

/** The error for a model onnxruntime refuses to load. */
export function loadFailure(file: string, err: unknown): UserError {
  return new UserError(`onnxruntime cannot load ${file}: ${firstLine((err as Error).message)}`, {
    hint: 'check that the model is valid (onnx.checker) and uses operators onnxruntime supports',
  });
}

const OPTIMIZATION_LEVELS = { disabled: 0, basic: 1, extended: 2, layout: 3, all: 99 } as const;

/**
 * The settings of ortSessionOptions() for onnxruntime's C API (src/backends/onnxruntime-collect.ts runs sessions through
 * it): the same threads and optimisation level, and `extra` flattened to config entries the way onnxruntime-node
 * does it ({session: {disable_quant_qdq: '1'}} -> 'session.disable_quant_qdq' = '1').
 */
export function nativeSessionConfig(options: OnnxruntimeSessionOptions): { threads: number; optimization: number; configEntries: [string, string][] } {
  const o = ortSessionOptions(options);
  const configEntries: [string, string][] = [];
  const walk = (prefix: string, value: object) => {
    for (const [k, v] of Object.entries(value)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === 'object') walk(key, v as object);
      else configEntries.push([key, String(v)]);
    }
  };
  if (o.extra) walk('', o.extra);
  return { threads: o.intraOpNumThreads ?? 0, optimization: OPTIMIZATION_LEVELS[o.graphOptimizationLevel ?? 'all'], configEntries };
}

/**
 * The onnxruntime shared library that onnxruntime-node ships and loads (bin/napi-v*\/<platform>/<arch>/), or
 * undefined when this platform's is not there. Loading this same file keeps one onnxruntime in the process.
 */
export function onnxruntimeLibraryPath(): string | undefined {
  if (libraryPath === null) libraryPath = findOnnxruntimeLibrary();
  return libraryPath;
}

/** Found once per process: the install does not change while it runs. */
let libraryPath: string | undefined | null = null;

function findOnnxruntimeLibrary(): string | undefined {
  let root: string;
  try {
    root = path.resolve(path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..');
  } catch {
    return undefined;
  }
  const bin = path.join(root, 'bin');
  if (!existsSync(bin)) return undefined;
  const names: Partial<Record<NodeJS.Platform, RegExp>> = {
    linux: /^libonnxruntime\.so\.1$/,
    darwin: /^libonnxruntime\.1\.dylib$/,
    win32: /^onnxruntime\.dll$/,
  };
  const pattern = names[process.platform];
  if (!pattern) return undefined;
  const napis = readdirSync(bin).filter((d) => /^napi-v\d+$/.test(d)).sort((a, b) => Number(b.slice(6)) - Number(a.slice(6)));
  for (const napi of napis) {
    const dir = path.join(bin, napi, process.platform, process.arch);
    if (!existsSync(dir)) continue;
    const file = readdirSync(dir).find((f) => pattern.test(f));
    if (file) return path.join(dir, file);
  }
  return undefined;
}

function firstLine(message: string): string {
  return message.split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 3).join(' ');
}

/** The checks every model reader makes (src/util/fs.ts): a regular file, within protobuf's 2 GiB. */
async function requireFile(file: string): Promise<void> {
  const { handle } = await openUserFile(file, 'The model file', READ_LIMITS.onnxModel);
  await handle.close();
}

async function createOrtSession(source: string | Uint8Array, file: string, options: InferenceSession.SessionOptions): Promise<InferenceSession> {
  removeOnnxruntimeDebugLogAtExit();
  try {
    return typeof source === 'string' ? await ort.InferenceSession.create(source, options) : await ort.InferenceSession.create(source, options);
  } catch (err) {
    // Tell "not an ONNX file" apart from "ONNX that onnxruntime refuses".
    if (typeof source === 'string') await loadOnnxModel(source);
    else decodeOnnxModel(source, file);
    throw loadFailure(file, err);
  } finally {
    removeOnnxruntimeDebugLog();
  }
}

function tensorInfoFromMetadata(m: InferenceSession.ValueMetadata): TensorInfo | undefined {
  if (!m.isTensor || !ORT_TYPES.has(m.type)) return undefined;
  return { name: m.name, dtype: m.type as DType, dims: m.shape.map((d) => (typeof d === 'number' ? d : d === '' ? -1 : d)) };
}

/** Checks a feed against the model inputs: every input present, types equal, ranks and static dims equal. */
export function checkFeed(file: string, inputs: readonly TensorInfo[], feed: Record<string, Tensor>): void {
  const inputNames = new Set(inputs.map((i) => i.name));
  for (const name of Object.keys(feed)) {
    if (!inputNames.has(name)) {
      throw new UserError(`${file} has no input '${name}' (its inputs: ${[...inputNames].join(', ')})`, {
        hint: 'name the model inputs as the model does, e.g. in --shapes',
      });
    }
  }
  for (const input of inputs) {
    const t = feed[input.name];
    if (!t) {
      throw new UserError(`${file}: no data for model input '${input.name}' (${input.dtype} ${formatDims(input.dims)})`, {
        hint: 'every model input needs data',
      });
    }
    if (t.dtype !== input.dtype) {
      throw new UserError(`model input '${input.name}' of ${file} expects ${input.dtype} but the data is ${t.dtype}`, {
        hint: 'image presets produce float32; pick a preprocessing that matches the model',
      });
    }
    const mismatch = t.dims.length !== input.dims.length || input.dims.some((d, i) => typeof d === 'number' && d >= 0 && d !== t.dims[i]);
    if (mismatch) throw shapeError(file, input, t.dims);
    if (elementCount(t.dims) !== t.data.length) {
      throw new Error(`tensor for '${input.name}' has ${t.data.length} values for dims ${formatDims(t.dims)}`);
    }
  }
}

export class OnnxruntimeSession implements Session {
  readonly inputs: readonly TensorInfo[];
  /** The model's own outputs (exposed tensors are not listed here). */
  readonly outputs: readonly TensorInfo[];
  /** Tensors the session can return besides the model outputs (graph inputs included: they come from the feed). */
  readonly exposed: readonly string[];
  /** Types and shapes onnxruntime reports for the exposed tensors (after its own shape inference). */
  readonly exposedInfo: ReadonlyMap<string, TensorInfo>;
  readonly file: string;
  readonly threads: number;
  readonly optimization: string;
  #session: InferenceSession | undefined;
  readonly #inputNames: ReadonlySet<string>;
  readonly #fetchable: ReadonlySet<string>;
  /**
   * Output buffers kept from the last runEach with reuseOutputs, handed back to onnxruntime as pre-allocated
   * outputs while the input dims stay the same. Exposing every activation allocates (and page-faults) tens of
   * megabytes per image; writing into the same buffers each batch removes most of that cost.
   */
  #outputPool: { key: string; tensors: Map<string, OrtTensor> } | undefined;

  constructor(session: InferenceSession, file: string, exposed: readonly string[], modelOutputs: readonly string[], options: InferenceSession.SessionOptions) {
    this.#session = session;
    this.file = file;
    this.threads = options.intraOpNumThreads ?? 0;
    this.optimization = options.graphOptimizationLevel ?? 'all';
    const meta = new Map<string, TensorInfo>();
    for (const m of [...session.inputMetadata, ...session.outputMetadata]) {
      const info = tensorInfoFromMetadata(m);
      if (info) meta.set(m.name, info);
    }
    this.inputs = session.inputNames.map((n) => {
      const info = meta.get(n);
      if (!info) throw new UserError(`${file}: input '${n}' is not a numeric tensor`, { hint: 'trt-calib feeds image tensors' });
      return info;
    });
    this.outputs = modelOutputs.map((n) => meta.get(n) ?? { name: n, dtype: 'float32', dims: [] });
    this.exposed = exposed;
    this.exposedInfo = new Map(exposed.flatMap((n) => (meta.has(n) ? [[n, meta.get(n)!] as const] : [])));
    this.#inputNames = new Set(session.inputNames);
    this.#fetchable = new Set([...session.outputNames, ...session.inputNames]);
  }

  #ortSession(): InferenceSession {
    if (!this.#session) throw new Error(`session for ${this.file} was released`);
    return this.#session;
  }

  #checkFeed(feed: Record<string, Tensor>): void {
    checkFeed(this.file, this.inputs, feed);
  }

  #splitFetch(fetch: readonly string[]): string[] {
    const ortFetch: string[] = [];
    for (const name of fetch) {
      if (!this.#fetchable.has(name)) {
        throw new Error(`'${name}' is neither an output nor an exposed tensor of the session for ${this.file}; expose it when opening the session`);
      }
      if (!this.#inputNames.has(name)) ortFetch.push(name);
    }
    return ortFetch;
  }

  async #runOrt(feed: Record<string, Tensor>, ortFetch: readonly string[], reuseOutputs = false): Promise<InferenceSession.ReturnType> {
    const session = this.#ortSession();
    const feeds: Record<string, OrtTensor> = {};
    for (const [name, t] of Object.entries(feed)) feeds[name] = toOrtTensor(t);
    try {
      if (ortFetch.length === 0) return {};
      if (!reuseOutputs) return await session.run(feeds, ortFetch);
      const key = Object.entries(feed).map(([n, t]) => `${n}:${t.dims.join('x')}`).join(',');
      const pool = this.#outputPool?.key === key ? this.#outputPool.tensors : undefined;
      const fetches: Record<string, OrtTensor | null> = {};
      for (const name of ortFetch) fetches[name] = pool?.get(name) ?? null;
      const results = await session.run(feeds, fetches);
      this.#outputPool = { key, tensors: new Map(ortFetch.map((n) => [n, results[n] as OrtTensor])) };
      return results;
    } catch (err) {
      throw runFailure(this.file, feed, err);
    }
  }

  async run(feed: Record<string, Tensor>, fetch?: readonly string[]): Promise<Record<string, Tensor>> {
    this.#checkFeed(feed);
    const wanted = fetch ?? this.outputs.map((o) => o.name);
    const results = await this.#runOrt(feed, this.#splitFetch(wanted));
    const out: Record<string, Tensor> = {};
    for (const name of wanted) out[name] = this.#inputNames.has(name) ? feed[name]! : fromOrtTensor(results[name] as OrtTensor, name);
    return out;
  }

  /**
   * Runs one batch and hands the fetched tensors to `onTensor` one at a time, in `fetch` order, awaiting each.
   * A tensor's memory may be reclaimed once `onTensor` has returned (or its promise settled): consumers that
   * keep data must copy it. With `reuseOutputs`, the next runEach with the same input dims writes into the same
   * buffers: every use of a tensor must be over before the next run starts.
   */
  async runEach(
    feed: Record<string, Tensor>,
    fetch: readonly string[],
    onTensor: (name: string, tensor: Tensor) => void | Promise<void>,
    options: { reuseOutputs?: boolean } = {},
  ): Promise<void> {
    this.#checkFeed(feed);
    const results: Record<string, OrtTensor | undefined> = { ...(await this.#runOrt(feed, this.#splitFetch(fetch), options.reuseOutputs)) } as Record<string, OrtTensor>;
    for (const name of fetch) {
      if (this.#inputNames.has(name)) {
        await onTensor(name, feed[name]!);
        continue;
      }
      const ortTensor = results[name];
      // Drop our reference before the callback so that nothing here keeps the buffer alive afterwards.
      results[name] = undefined;
      if (!ortTensor) continue; // the same name fetched twice
      await onTensor(name, fromOrtTensor(ortTensor, name));
    }
  }

  async release(): Promise<void> {
    const s = this.#session;
    this.#session = undefined;
    this.#outputPool = undefined;
    if (s) await s.release();
  }
}

function shapeError(file: string, input: TensorInfo, got: readonly number[]): UserError {
  return new UserError(`model input '${input.name}' of ${file} expects ${formatDims(input.dims)} but the data is ${formatDims(got)}: set --size or --shapes`, {
    hint: `static dims must match exactly; symbolic ones (${input.dims.filter((d) => typeof d === 'string').join(', ') || 'none here'}) may take any size`,
  });
}

/**
 * Opens `model` with onnxruntime. With `expose`, the named tensors are added as graph outputs first
 * (see exposeTensors); names that are graph inputs or model outputs are served as they are.
 */
async function open(model: { path: string; bytes?: Uint8Array }, options: OnnxruntimeSessionOptions = {}): Promise<OnnxruntimeSession> {
  const file = model.path;
  const ortOptions = ortSessionOptions(options);
  const expose = [...new Set(options.expose ?? [])];
  let proto: OnnxModel | undefined;
  if (expose.length > 0) {
    proto = model.bytes ? decodeOnnxModel(model.bytes, file) : (await loadOnnxModel(file));
  } else if (!model.bytes) {
    await requireFile(file);
  }
  let source: string | Uint8Array = model.bytes ?? file;
  const modelOutputs = proto ? graphOutputs(proto).map((o) => o.name) : undefined;
  if (proto) {
    const inputs = new Set(describeInputs(proto, file).map((i) => i.name));
    const exposed = exposeTensors(proto, expose.filter((n) => !inputs.has(n)), { file });
    source = exposed === proto && model.bytes ? model.bytes : saveOnnxModel(exposed);
  }
  const session = await createOrtSession(source, file, ortOptions);
  const outputs = modelOutputs ?? session.outputNames;
  const available = new Set([...session.outputNames, ...session.inputNames]);
  const missing = expose.filter((n) => !available.has(n));
  if (missing.length > 0) {
    await session.release();
    throw new Error(`onnxruntime did not keep the exposed tensors ${missing.slice(0, 5).join(', ')} of ${file} as outputs`);
  }
  return new OnnxruntimeSession(session, file, expose, outputs, ortOptions);
}

export const onnxruntimeBackend = {
  name: 'onnxruntime',
  open,
} as const satisfies Backend;

/** A few lines describing a session: backend settings, inputs, outputs, exposed tensors. */
export function describeSession(session: Session): string[] {
  const lines: string[] = [];
  if (session instanceof OnnxruntimeSession) {
    lines.push(
      `backend: onnxruntime-node ${ort.env.versions.common} (cpu), ${session.threads > 0 ? `${session.threads} intra-op threads` : 'default intra-op threads'}, graph optimisation '${session.optimization}'`,
    );
  }
  for (const i of session.inputs) lines.push(`input  ${i.name}: ${i.dtype} ${formatDims(i.dims)}`);
  for (const o of session.outputs) lines.push(`output ${o.name}: ${o.dtype} ${formatDims(o.dims)}`);
  if (session instanceof OnnxruntimeSession && session.exposed.length > 0) lines.push(`exposed tensors: ${session.exposed.length}`);
  return lines;
}

// ---------------------------------------------------------------------------------------------------------------
// Cross-checks with onnxruntime's own type and shape inference.

export interface ProbedTensor {
  /** onnxruntime's type name ('float32', ...), or undefined when it is not a tensor type onnxruntime-node exposes. */
  dtype: string | undefined;
  dims: Array<number | string>;
}

/**
 * Asks onnxruntime for the element types and shapes of `names`, by exposing them as untyped graph outputs and
 * reading the session's output metadata (onnxruntime runs its own type and shape inference on load).
 */
export async function probeTensorTypes(model: OnnxModel, names: readonly string[], file = 'the model'): Promise<Map<string, ProbedTensor>> {
  const result = new Map<string, ProbedTensor>();
  if (names.length === 0) return result;
  const g = graphOf(model);
  const present = new Set(g.output.map((o) => o.name));
  const extra = names.filter((n) => !present.has(n)).map((name) => onnx.ValueInfoProto.create({ name }));
  const bytes = saveOnnxModel(withGraph(model, { ...g, output: [...g.output, ...extra] }));
  const session = await createOrtSession(bytes, file, ortSessionOptions({ threads: 1 }));
  try {
    const wanted = new Set(names);
    for (const m of session.outputMetadata) {
      if (!wanted.has(m.name)) continue;
      result.set(m.name, m.isTensor ? { dtype: m.type, dims: [...m.shape] } : { dtype: undefined, dims: [] });
    }
  } finally {
    await session.release();
  }
  return result;
}

const ORT_TYPE_TO_ELEM: Readonly<Record<string, number>> = Object.fromEntries(Object.entries(DTYPES).map(([k, v]) => [k, v.onnx]));

/**
 * The activations of a model, with the element types the rules could not infer (custom ops) filled in by
 * onnxruntime. `unresolved` lists the tensors whose type neither could determine (left out of `activations`).
 */
export async function listActivationsWithOrt(model: OnnxModel, file = 'the model'): Promise<{ activations: ActivationInfo[]; unresolved: UnknownTypedTensor[] }> {
  let analysis = analyzeGraph(model, { file });
  if (analysis.unknownTypes.length === 0) return { activations: analysis.activations, unresolved: [] };
  const probed = await probeTensorTypes(model, analysis.unknownTypes.map((u) => u.tensor), file);
  const hints = new Map<string, number>();
  for (const [name, p] of probed) if (p.dtype && ORT_TYPE_TO_ELEM[p.dtype]) hints.set(name, ORT_TYPE_TO_ELEM[p.dtype]!);
  analysis = analyzeGraph(model, { file, typeHints: hints });
  return { activations: analysis.activations, unresolved: analysis.unknownTypes };
}
