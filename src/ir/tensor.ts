import { DType, TypedArray, allocate } from './dtype.js';

/** A dense tensor with static dims; the data layout is row-major, like ONNX. */
export class Tensor {
  constructor(public dtype: DType, public dims: number[], public data: TypedArray) {
    const n = sizeOf(dims);
    if (data.length !== n && dtype !== DType.INT4 && dtype !== DType.UINT4) {
      throw new Error(`tensor data has ${data.length} elements but dims [${dims}] need ${n}`);
    }
  }

  get size(): number {
    return sizeOf(this.dims);
  }

  static zeros(dtype: DType, dims: number[]): Tensor {
    return new Tensor(dtype, dims, allocate(dtype, sizeOf(dims)));
  }

  static float(dims: number[], values: ArrayLike<number>): Tensor {
    return new Tensor(DType.FLOAT, dims, Float32Array.from(values));
  }

  static double(dims: number[], values: ArrayLike<number>): Tensor {
    return new Tensor(DType.DOUBLE, dims, Float64Array.from(values));
  }

  static int64(dims: number[], values: ArrayLike<number>): Tensor {
    return new Tensor(DType.INT64, dims, BigInt64Array.from(Array.from(values, (v) => BigInt(v))));
  }

  /** Values as JS numbers (int64 converted; fine for shapes and indices). */
  toNumbers(): number[] {
    return Array.from(this.data as ArrayLike<number | bigint>, (v) => Number(v));
  }
}

export function sizeOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}
