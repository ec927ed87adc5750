/** ONNX TensorProto.DataType codes (onnx.proto), the ones qatkit uses. */
export enum DType {
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  UINT16 = 4,
  INT16 = 5,
  INT32 = 6,
  INT64 = 7,
  STRING = 8,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  UINT32 = 12,
  UINT64 = 13,
  UINT4 = 21,
  INT4 = 22,
}

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

export const dtypeName: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 21: 'uint4', 22: 'int4',
};

/** onnxruntime-common type strings. */
export const ortTypeOf: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 9: 'bool',
  11: 'float64', 12: 'uint32', 13: 'uint64', 21: 'uint4', 22: 'int4',
};

export function dtypeFromOrt(type: string): DType {
  for (const [code, name] of Object.entries(ortTypeOf)) if (name === type) return Number(code) as DType;
  throw new Error(`unsupported ONNX Runtime tensor type '${type}'`);
}

export function isFloat(d: DType): boolean {
  return d === DType.FLOAT || d === DType.DOUBLE || d === DType.FLOAT16;
}

export function allocate(d: DType, n: number): TypedArray {
  switch (d) {
    case DType.FLOAT: return new Float32Array(n);
    case DType.DOUBLE: return new Float64Array(n);
    case DType.INT8: return new Int8Array(n);
    case DType.UINT8: case DType.BOOL: return new Uint8Array(n);
    case DType.INT16: return new Int16Array(n);
    case DType.UINT16: case DType.FLOAT16: return new Uint16Array(n);
    case DType.INT32: return new Int32Array(n);
    case DType.UINT32: return new Uint32Array(n);
    case DType.INT64: return new BigInt64Array(n);
    case DType.UINT64: return new BigUint64Array(n);
    default: throw new Error(`cannot allocate a tensor of type ${dtypeName[d] ?? d}`);
  }
}
