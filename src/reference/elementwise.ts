import type { Node } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { broadcastShapes } from '../ops/shape-utils.js';
import { erf } from './erf.js';
import { float64, KernelTable, ReferenceKernel, required, stridesOf, values } from './kernel.js';

// Elementwise ops with ONNX multidirectional (NumPy) broadcasting.

/** For each flat index of `outDims`, the flat index of the element of `dims` that broadcasts to it. */
export function broadcastOffsets(dims: readonly number[], outDims: readonly number[]): Int32Array {
  const rank = outDims.length;
  const lead = rank - dims.length;
  const inStrides = stridesOf(dims);
  const step = outDims.map((d, i) => (i < lead || dims[i - lead] === 1 ? 0 : inStrides[i - lead]));
  const total = outDims.reduce((p, q) => p * q, 1);
  const offsets = new Int32Array(total);
  const index = new Array<number>(rank).fill(0);
  let offset = 0;
  for (let flat = 0; flat < total; flat++) {
    offsets[flat] = offset;
    for (let axis = rank - 1; axis >= 0; axis--) {
      index[axis]++;
      offset += step[axis];
      if (index[axis] < outDims[axis]) break;
      offset -= step[axis] * outDims[axis];
      index[axis] = 0;
    }
  }
  return offsets;
}

function nary(fn: (acc: number, v: number) => number): ReferenceKernel {
  return (node, inputs) => {
    const present = inputs.map((_, i) => required(node, inputs, i));
    const outDims = broadcastShapes(present.map((t) => t.dims), node) as number[];
    const out = float64(outDims);
    const result = out.data as Float64Array;
    present.forEach((t, k) => {
      const v = values(node, inputs, k);
      const offsets = broadcastOffsets(t.dims, outDims);
      if (k === 0) for (let i = 0; i < result.length; i++) result[i] = v[offsets[i]];
      else for (let i = 0; i < result.length; i++) result[i] = fn(result[i], v[offsets[i]]);
    });
    return [out];
  };
}

function unary(fn: (v: number) => number): ReferenceKernel {
  return (node, inputs) => {
    const v = values(node, inputs, 0);
    return [float64([...required(node, inputs, 0).dims], v.map(fn))];
  };
}

const identity: ReferenceKernel = (node: Node, inputs: (Tensor | undefined)[]) => [required(node, inputs, 0)];

export const elementwiseKernels: KernelTable = {
  Add: nary((a, b) => a + b),
  Sub: nary((a, b) => a - b),
  Mul: nary((a, b) => a * b),
  Div: nary((a, b) => a / b),
  Pow: nary((a, b) => a ** b),
  Sum: nary((a, b) => a + b),
  Max: nary(Math.max),
  Min: nary(Math.min),
  Neg: unary((v) => -v),
  Abs: unary(Math.abs),
  Exp: unary(Math.exp),
  Log: unary(Math.log),
  Sqrt: unary(Math.sqrt),
  Reciprocal: unary((v) => 1 / v),
  Relu: unary((v) => (v > 0 ? v : 0)),
  Sigmoid: unary((v) => 1 / (1 + Math.exp(-v))),
  Tanh: unary(Math.tanh),
  Erf: unary(erf),
  Identity: identity,
};
