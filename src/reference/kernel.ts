import { DType, isFloat } from '../ir/dtype.js';
import type { Node } from '../ir/graph.js';
import { sizeOf, Tensor } from '../ir/tensor.js';

/**
 * A reference kernel: computes a node's outputs from its inputs (undefined where an optional input is
 * absent). Float tensors reach kernels as float64 and kernels return float64: the evaluator promotes
 * every float input and initializer once, so each kernel has one arithmetic path.
 */
export type ReferenceKernel = (node: Node, inputs: (Tensor | undefined)[]) => Tensor[];

export type KernelTable = Record<string, ReferenceKernel>;

/** A float tensor's values as float64 (copied only when they are not already). */
export function toFloat64(t: Tensor): Tensor {
  if (t.dtype === DType.DOUBLE) return t;
  if (!isFloat(t.dtype) || t.dtype === DType.FLOAT16) throw new Error(`cannot promote a tensor of type ${t.dtype} to float64`);
  return new Tensor(DType.DOUBLE, [...t.dims], Float64Array.from(t.data as Float32Array));
}

export function float64(dims: number[], data?: Float64Array): Tensor {
  return new Tensor(DType.DOUBLE, dims, data ?? new Float64Array(sizeOf(dims)));
}

/** The data of a float64 input, naming the node and input when it is missing or not a float. */
export function values(node: Node, inputs: (Tensor | undefined)[], index: number): Float64Array {
  const t = required(node, inputs, index);
  if (t.dtype !== DType.DOUBLE) throw new Error(`node '${node.name}' (${node.opType}): input ${index} must be a float tensor, got type ${t.dtype}`);
  return t.data as Float64Array;
}

export function required(node: Node, inputs: (Tensor | undefined)[], index: number): Tensor {
  const t = inputs[index];
  if (!t) throw new Error(`node '${node.name}' (${node.opType}) is missing input ${index}`);
  return t;
}

/** Row-major strides of dims. */
export function stridesOf(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i];
  }
  return s;
}
