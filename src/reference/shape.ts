import { DType, isFloat } from '../ir/dtype.js';
import { attrInt, attrInts } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { reshapeDims } from '../ops/shape.js';
import { normalizeAxis } from '../ops/shape-utils.js';
import { float64, KernelTable, ReferenceKernel, required, stridesOf } from './kernel.js';

// Ops that move data without arithmetic: Reshape, Flatten, Transpose, and Cast between float types.

const reshape: ReferenceKernel = (node, inputs) => {
  const x = required(node, inputs, 0);
  const dims = reshapeDims(x.dims, required(node, inputs, 1).toNumbers(), node) as number[];
  return [new Tensor(x.dtype, dims, x.data)];
};

const flatten: ReferenceKernel = (node, inputs) => {
  const x = required(node, inputs, 0);
  const axis = normalizeAxis(attrInt(node, 'axis', 1), x.dims.length + 1, node);
  const lead = x.dims.slice(0, axis).reduce((p, q) => p * q, 1);
  return [new Tensor(x.dtype, [lead, x.size / Math.max(lead, 1)], x.data)];
};

const transpose: ReferenceKernel = (node, inputs) => {
  const x = required(node, inputs, 0);
  const rank = x.dims.length;
  const perm = attrInts(node, 'perm', undefined) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const outDims = perm.map((p) => x.dims[p]);
  const inStrides = stridesOf(x.dims);
  const outStrides = stridesOf(outDims);
  const out = Tensor.zeros(x.dtype, outDims);
  const src = x.data as ArrayLike<number | bigint>;
  const dst = out.data as unknown as (number | bigint)[];
  for (let flat = 0; flat < out.size; flat++) {
    let offset = 0;
    for (let axis = 0; axis < rank; axis++) offset += (Math.floor(flat / outStrides[axis]) % outDims[axis]) * inStrides[perm[axis]];
    dst[flat] = src[offset];
  }
  return [out];
};

/** Float-to-float casts keep float64 precision here (this evaluator is the float64 reference). */
const cast: ReferenceKernel = (node, inputs) => {
  const x = required(node, inputs, 0);
  const to = attrInt(node, 'to', 1) as DType;
  if (!isFloat(to) || !isFloat(x.dtype)) {
    throw new Error(`node '${node.name}' (Cast): the reference evaluator casts between float types only (got ${x.dtype} -> ${to})`);
  }
  return [float64([...x.dims], x.data as Float64Array)];
};

export const shapeKernels: KernelTable = {
  Reshape: reshape,
  Flatten: flatten,
  Transpose: transpose,
  Cast: cast,
};
