import { attrInt } from '../ir/graph.js';
import { reduceAxes } from '../ops/reduce.js';
import { float64, KernelTable, ReferenceKernel, required, stridesOf, values } from './kernel.js';

// ReduceSum (axes as input, opset 13+); ReduceMean and ReduceSumSquare (axes as attribute until opset 18).

function reduce(mean: boolean, square = false): ReferenceKernel {
  return (node, inputs) => {
    const x = required(node, inputs, 0);
    const v = values(node, inputs, 0);
    const axesInput = inputs[1]?.toNumbers();
    const axes = new Set(reduceAxes({ node }, x.dims.length, axesInput));
    const keep = attrInt(node, 'keepdims', 1) === 1;
    const keptDims = x.dims.map((d, i) => (axes.has(i) ? 1 : d));
    const out = new Float64Array(keptDims.reduce((p, q) => p * q, 1));
    const outStrides = stridesOf(keptDims);
    const inStrides = stridesOf(x.dims);
    for (let flat = 0; flat < v.length; flat++) {
      let o = 0;
      for (let axis = 0; axis < x.dims.length; axis++) {
        if (!axes.has(axis)) o += (Math.floor(flat / inStrides[axis]) % x.dims[axis]) * outStrides[axis];
      }
      out[o] += square ? v[flat] * v[flat] : v[flat];
    }
    if (mean) {
      const count = v.length / Math.max(out.length, 1);
      for (let i = 0; i < out.length; i++) out[i] /= count;
    }
    return [float64(keep ? keptDims : x.dims.filter((_, i) => !axes.has(i)), out)];
  };
}

export const reduceKernels: KernelTable = {
  ReduceSum: reduce(false),
  ReduceMean: reduce(true),
  ReduceSumSquare: reduce(false, true),
};
