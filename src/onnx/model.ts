/**
 * ONNX model I/O: decode/encode with `onnx-proto` (protobufjs static code of onnx.proto, ONNX 1.10, IR 8),
 * external data inlined on load, atomic writes, the model hash, and TensorProto <-> Tensor conversion.
 *
 * Models are treated as immutable values: every graph edit in src/onnx returns a copy that shares the
 * untouched messages (initializers, nodes) with its source, so copies are cheap and the source stays valid.
 *
 * Byte order: ONNX raw_data is little-endian; the typed-array views here assume a little-endian host
 * (x86-64, arm64), as onnxruntime-node does.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { writeFileAtomic } from '../util/fs.js';
import { UserError } from '../errors.js';
import { DTYPES, dtypeFromOnnx, elementCount, type DType, type Tensor, type TypedArray } from '../tensor.js';

export const onnx = onnxProto.onnx;
export type OnnxModel = OnnxTypes.ModelProto;
export type OnnxNode = OnnxTypes.NodeProto;
export type OnnxTensorProto = OnnxTypes.TensorProto;
export type OnnxValueInfo = OnnxTypes.ValueInfoProto;
/**
 * GraphProto with its repeated fields typed as the message classes: decoding and `create` always produce class
 * instances there (protobufjs types them as the looser I-interfaces).
 */
export type OnnxGraph = Omit<OnnxTypes.GraphProto, 'node' | 'initializer' | 'input' | 'output' | 'valueInfo' | 'sparseInitializer'> & {
  node: OnnxNode[];
  initializer: OnnxTensorProto[];
  input: OnnxValueInfo[];
  output: OnnxValueInfo[];
  valueInfo: OnnxValueInfo[];
  sparseInitializer: OnnxTypes.SparseTensorProto[];
};
export type OnnxAttribute = OnnxTypes.AttributeProto;

/** ONNX TensorProto.DataType codes used by the graph code (the full list is in onnx.proto). */
export const ELEM = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;

const ELEM_NAMES: Record<number, string> = {
  0: 'unknown',
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
  21: 'uint4',
  22: 'int4',
  23: 'float4e2m1',
};

/** Name of an ONNX element type ('float32', 'bfloat16', ..., 'unknown' for 0, 'type<N>' beyond the table). */
export function elemTypeName(code: number): string {
  return ELEM_NAMES[code] ?? `type<${code}>`;
}

/** Floating-point element types: the ones that get an INT8 scale. */
export function isFloatElemType(code: number): boolean {
  return code === ELEM.FLOAT || code === ELEM.FLOAT16 || code === ELEM.DOUBLE || code === ELEM.BFLOAT16 || (code >= 17 && code <= 20) || code === 23;
}

/** protobufjs gives int64 fields as Long objects (the `long` package is installed) or plain numbers. */
export type Int64Like = number | { toNumber(): number } | string | null | undefined;

export function int64(v: Int64Like): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  return v.toNumber();
}

/** Attribute helpers (attributes are few per node; a linear scan is fine). */
export function getAttribute(node: OnnxTypes.INodeProto, name: string): OnnxTypes.IAttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}
export function attrInt(node: OnnxTypes.INodeProto, name: string): number | undefined {
  const a = getAttribute(node, name);
  return a ? int64(a.i as Int64Like) : undefined;
}
export function attrInts(node: OnnxTypes.INodeProto, name: string): number[] | undefined {
  const a = getAttribute(node, name);
  return a ? (a.ints ?? []).map((v) => int64(v as Int64Like)) : undefined;
}
export function attrFloat(node: OnnxTypes.INodeProto, name: string): number | undefined {
  const a = getAttribute(node, name);
  return a ? (a.f ?? 0) : undefined;
}
export function attrString(node: OnnxTypes.INodeProto, name: string): string | undefined {
  const a = getAttribute(node, name);
  return a && a.s ? Buffer.from(a.s).toString('utf8') : undefined;
}

/**
 * The model's graph as a GraphProto. Decoded and `create`d messages always carry every repeated field as an
 * array, so the nullable fields of the IGraphProto interface are never null here.
 */
export function graphOf(model: OnnxModel): OnnxGraph {
  if (!model.graph) throw new Error('ONNX model without a graph');
  return model.graph as unknown as OnnxGraph;
}

/** The default-domain opset version the model imports ('' and 'ai.onnx' are the same domain). */
export function defaultOpset(model: OnnxModel): number {
  const imp = model.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
  return imp ? int64(imp.version as Int64Like) : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Loading and saving

/** Decodes ONNX bytes; `file` is only used in messages. External data must already be inlined or absent. */
export function decodeOnnxModel(bytes: Uint8Array, file: string): OnnxModel {
  let model: OnnxModel;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw notOnnx(file, (err as Error).message);
  }
  // Protobuf decoding is lenient: many non-ONNX files decode into an empty or nonsensical message.
  if (!model.graph) throw notOnnx(file, 'it has no graph');
  if (model.opsetImport.length === 0 && int64(model.irVersion as Int64Like) === 0) {
    throw notOnnx(file, 'it has neither an IR version nor an opset import');
  }
  if (graphOf(model).node.length === 0 && graphOf(model).output.length === 0) {
    throw notOnnx(file, 'its graph has no nodes and no outputs');
  }
  return model;
}

function notOnnx(file: string, why: string): UserError {
  return new UserError(`${file} is not an ONNX model: ${why}`, {
    hint: 'pass the .onnx file exported from your framework (torch.onnx.export, tf2onnx, paddle2onnx...)',
  });
}

/**
 * Reads and decodes an ONNX model. Tensors stored as external data (TensorProto.data_location = EXTERNAL,
 * `location` relative to the model's folder) are read into raw_data, so the model's bytes are self-contained
 * and can be handed to onnxruntime from memory after graph edits.
 */
export async function loadOnnxModel(file: string): Promise<OnnxModel> {
  let bytes: Uint8Array;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new UserError(`model ${file} is not a file`, { hint: 'pass the path of an .onnx file to --model' });
    bytes = await readFile(file);
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`model file ${file} does not exist`, { hint: 'check the path given to --model' });
    throw new UserError(`cannot read model ${file}: ${(err as Error).message}`);
  }
  const model = decodeOnnxModel(bytes, file);
  if (!(await inlineExternalData(model, file))) sourceBytes.set(model, bytes);
  return model;
}

/** The file bytes of models loaded from a file that holds all of the model (no external data). */
const sourceBytes = new WeakMap<OnnxModel, Uint8Array>();

/**
 * The bytes `model` was decoded from, when they hold all of it (loaded by loadOnnxModel from a file without
 * external data). Only meaningful while the model is unmodified: callers use it right after loading.
 */
export function sourceBytesOf(model: OnnxModel): Uint8Array | undefined {
  return sourceBytes.get(model);
}

/** All TensorProtos of a model that may hold data: initializers and tensor attributes, subgraphs included. */
export function* modelTensors(graph: OnnxTypes.IGraphProto): Generator<OnnxTypes.ITensorProto> {
  for (const t of graph.initializer ?? []) yield t;
  for (const s of graph.sparseInitializer ?? []) {
    if (s.values) yield s.values;
    if (s.indices) yield s.indices;
  }
  for (const node of graph.node ?? []) {
    for (const a of node.attribute ?? []) {
      if (a.t) yield a.t;
      for (const t of a.tensors ?? []) yield t;
      if (a.sparseTensor?.values) yield a.sparseTensor.values;
      if (a.sparseTensor?.indices) yield a.sparseTensor.indices;
      if (a.g) yield* modelTensors(a.g);
      for (const g of a.graphs ?? []) yield* modelTensors(g);
    }
  }
}

const externalFiles = new WeakMap<OnnxModel, string[]>();

/** The external data files a model loaded by loadOnnxModel() was read from (inputs no output may overwrite). */
export function externalDataFiles(model: OnnxModel): string[] {
  return externalFiles.get(model) ?? [];
}

/** Reads every external tensor into the model; returns whether there was any. */
async function inlineExternalData(model: OnnxModel, file: string): Promise<boolean> {
  let any = false;
  const baseDir = path.dirname(path.resolve(file));
  const handles = new Map<string, Awaited<ReturnType<typeof open>>>();
  try {
    for (const t of modelTensors(model.graph!)) {
      if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
      any = true;
      const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
      const location = entries.get('location');
      if (!location) {
        throw new UserError(`${file}: tensor '${t.name}' is stored as external data but names no location`, {
          hint: 'the model is damaged; export it again',
        });
      }
      const dataFile = path.resolve(baseDir, location);
      // ONNX's checker forbids locations outside the model's folder; so do we (no reading arbitrary files).
      if (path.isAbsolute(location) || !(dataFile + path.sep).startsWith(baseDir + path.sep) || dataFile === baseDir) {
        throw new UserError(`${file}: external data location '${location}' of tensor '${t.name}' is outside the model's folder`, {
          hint: 'external data files must sit in the model folder or below it',
        });
      }
      let fh = handles.get(dataFile);
      if (!fh) {
        try {
          fh = await open(dataFile, 'r');
        } catch (err) {
          throw new UserError(`${file}: external data file ${dataFile} (tensor '${t.name}') cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
            hint: 'keep the external data files next to the .onnx file, under the names the model gives',
          });
        }
        handles.set(dataFile, fh);
      }
      const offset = Number(entries.get('offset') ?? '0');
      const size = (await fh.stat()).size;
      const expected = expectedByteLength(t);
      const length = entries.has('length') ? Number(entries.get('length')) : expected ?? size - offset;
      if (!Number.isFinite(offset) || !Number.isFinite(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new UserError(`${file}: tensor '${t.name}' wants bytes ${offset}..${offset + length} of ${dataFile}, which has ${size} bytes`, {
          hint: 'the external data file does not belong to this model or is truncated',
        });
      }
      const buf = Buffer.alloc(length);
      await fh.read(buf, 0, length, offset);
      t.rawData = buf;
      t.externalData = [];
      t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    }
  } finally {
    for (const fh of handles.values()) await fh.close();
  }
  if (handles.size > 0) externalFiles.set(model, [...handles.keys()]);
  return any;
}

function expectedByteLength(t: OnnxTypes.ITensorProto): number | undefined {
  const dtype = dtypeFromOnnx(t.dataType ?? 0);
  if (!dtype) return undefined;
  return elementCount((t.dims ?? []).map((d) => int64(d as Int64Like))) * DTYPES[dtype].bytes;
}

/** Serializes a model to ONNX bytes. */
export function saveOnnxModel(model: OnnxModel): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Writes a model atomically: a temporary file in the same folder, then a rename. */
export async function writeOnnxModel(file: string, model: OnnxModel): Promise<void> {
  await writeFileAtomic(file, saveOnnxModel(model));
}


/** sha256 (hex) of the model file's bytes, streamed. External data files are not part of the hash. */
export async function modelSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UserError(`model file ${file} does not exist`, { hint: 'check the path given to --model' });
    }
    throw err;
  }
  return hash.digest('hex');
}

/** A shallow copy of a model with a replaced graph; everything else is shared. */
export function withGraph(model: OnnxModel, graph: OnnxTypes.IGraphProto): OnnxModel {
  return onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create(graph) });
}

// ---------------------------------------------------------------------------------------------------------------
// TensorProto <-> Tensor

/** The dims of a TensorProto as numbers. */
export function tensorProtoDims(t: OnnxTypes.ITensorProto): number[] {
  return (t.dims ?? []).map((d) => int64(d as Int64Like));
}

/**
 * Reads a TensorProto's values (raw_data or the typed repeated fields) into a Tensor with its own,
 * aligned buffer. Throws for element types outside the Tensor table (bfloat16, strings, float8...).
 */
export function tensorFromProto(t: OnnxTypes.ITensorProto): Tensor {
  const dtype = dtypeFromOnnx(t.dataType ?? 0);
  if (!dtype) throw new Error(`tensor '${t.name}' has element type ${elemTypeName(t.dataType ?? 0)}, which is not supported here`);
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new Error(`tensor '${t.name}' still points to external data; load the model with loadOnnxModel()`);
  }
  const dims = tensorProtoDims(t);
  const n = elementCount(dims);
  const info = DTYPES[dtype];
  if (t.rawData && t.rawData.length > 0) {
    if (t.rawData.length !== n * info.bytes) {
      throw new Error(`tensor '${t.name}' has ${t.rawData.length} bytes of raw data for ${n} ${dtype} values`);
    }
    // Copy: raw_data is a view into the file buffer at an arbitrary (possibly unaligned) offset.
    const buf = new ArrayBuffer(t.rawData.length);
    new Uint8Array(buf).set(t.rawData);
    return { dtype, dims, data: new info.array(buf, 0, n) };
  }
  const data = new info.array(n);
  const fill = (src: ArrayLike<unknown> | null | undefined, conv: (v: unknown) => number | bigint) => {
    const len = src?.length ?? 0;
    if (len !== n) throw new Error(`tensor '${t.name}' has ${len} values for dims [${dims.join(',')}]`);
    for (let i = 0; i < n; i++) (data as unknown as Array<number | bigint>)[i] = conv(src![i]);
  };
  const num = (v: unknown) => int64(v as Int64Like);
  switch (dtype) {
    case 'float32':
      fill(t.floatData, (v) => v as number);
      break;
    case 'float64':
      fill(t.doubleData, (v) => v as number);
      break;
    case 'int64':
      fill(t.int64Data, (v) => BigInt(longToString(v)));
      break;
    case 'uint32':
    case 'uint64':
      fill(t.uint64Data, (v) => (dtype === 'uint64' ? BigInt(longToString(v)) : num(v)));
      break;
    default:
      // int32, int16, int8, uint16, uint8, bool and float16 (as its 16-bit pattern) all live in int32_data.
      fill(t.int32Data, (v) => v as number);
  }
  return { dtype, dims, data };
}

function longToString(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'string') return String(v);
  return (v as { toString(): string }).toString();
}

/** Builds a TensorProto holding `tensor` in raw_data (little-endian). */
export function tensorToProto(name: string, tensor: Tensor): OnnxTensorProto {
  const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  return onnx.TensorProto.create({
    name,
    dataType: DTYPES[tensor.dtype].onnx,
    dims: tensor.dims.slice(),
    rawData: Uint8Array.from(bytes),
  });
}

/** Convenience: a Tensor from a dtype, dims and values. */
export function makeTensor(dtype: DType, dims: number[], values: ArrayLike<number> | ArrayLike<bigint> | TypedArray): Tensor {
  const info = DTYPES[dtype];
  const data = new info.array(elementCount(dims));
  (data as unknown as { set(a: ArrayLike<number | bigint>): void }).set(values as ArrayLike<number | bigint>);
  return { dtype, dims: dims.slice(), data };
}
