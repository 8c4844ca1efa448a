/**
 * One tensor type used everywhere, and the one table that maps element types to typed arrays.
 * Names follow onnxruntime's `Tensor.Type` strings; ONNX TensorProto.DataType codes are mapped here too.
 */
export type DType =
  | 'float32'
  | 'float16'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

export interface Tensor {
  dtype: DType;
  dims: number[];
  data: TypedArray;
}

/** A model input's or output's name, type and shape (read from the ONNX graph, or from a backend's session). */
export interface TensorInfo {
  name: string;
  dtype: DType;
  /** Static dims as numbers, dynamic ones as their symbolic name (or -1 when unnamed). */
  dims: Array<number | string>;
}

interface DTypeInfo {
  /** ONNX TensorProto.DataType code. */
  onnx: number;
  bytes: number;
  array: { new (length: number): TypedArray; new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TypedArray };
  float: boolean;
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  float32: { onnx: 1, bytes: 4, array: Float32Array, float: true },
  uint8: { onnx: 2, bytes: 1, array: Uint8Array, float: false },
  int8: { onnx: 3, bytes: 1, array: Int8Array, float: false },
  uint16: { onnx: 4, bytes: 2, array: Uint16Array, float: false },
  int16: { onnx: 5, bytes: 2, array: Int16Array, float: false },
  int32: { onnx: 6, bytes: 4, array: Int32Array, float: false },
  int64: { onnx: 7, bytes: 8, array: BigInt64Array, float: false },
  bool: { onnx: 9, bytes: 1, array: Uint8Array, float: false },
  // float16 is carried as raw 16-bit patterns.
  float16: { onnx: 10, bytes: 2, array: Uint16Array, float: true },
  float64: { onnx: 11, bytes: 8, array: Float64Array, float: true },
  uint32: { onnx: 12, bytes: 4, array: Uint32Array, float: false },
  uint64: { onnx: 13, bytes: 8, array: BigUint64Array, float: false },
};

const BY_ONNX = new Map<number, DType>(Object.entries(DTYPES).map(([k, v]) => [v.onnx, k as DType]));

export function dtypeFromOnnx(code: number): DType | undefined {
  return BY_ONNX.get(code);
}

export function onnxFromDtype(dtype: DType): number {
  return DTYPES[dtype].onnx;
}

export function isFloatDtype(dtype: DType): boolean {
  return DTYPES[dtype].float;
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function formatDims(dims: readonly (number | string)[]): string {
  return dims.join('x');
}
