import { attrInt, attrInts, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { averagePoolDivisorGrid, resolveWindow } from '../ops/window-geometry.js';
import { float64, KernelTable, ReferenceKernel, required, values } from './kernel.js';
import { windowTable } from './windows.js';

// MaxPool (with its optional Indices output), AveragePool, GlobalAveragePool and GlobalMaxPool.

function pooled(node: Node, inputs: (Tensor | undefined)[]) {
  const x = required(node, inputs, 0);
  const [n, c, ...inSpatial] = x.dims;
  const kernel = attrInts(node, 'kernel_shape', undefined);
  if (!kernel) throw new Error(`node '${node.name}' (${node.opType}): kernel_shape is required`);
  const { window, outSpatial } = resolveWindow(node, inSpatial, kernel);
  const out = outSpatial as number[];
  const table = windowTable(inSpatial, out, window);
  const inCount = inSpatial.reduce((p, q) => p * q, 1);
  const outCount = out.reduce((p, q) => p * q, 1);
  return { xv: values(node, inputs, 0), n, c, dims: [n, c, ...out], table, inCount, outCount, k: table.length / outCount, window, inSpatial, out };
}

/** Max over each window, pads excluded; Indices (if asked for) flatten N, C and spatial, first maximum wins. */
const maxPool: ReferenceKernel = (node, inputs) => {
  const { xv, n, c, dims, table, inCount, outCount, k } = pooled(node, inputs);
  const y = new Float64Array(n * c * outCount);
  const indices = new Array<number>(y.length).fill(-1);
  for (let plane = 0; plane < n * c; plane++) {
    for (let o = 0; o < outCount; o++) {
      let best = -Infinity;
      let at = -1;
      for (let j = 0; j < k; j++) {
        const t = table[o * k + j];
        if (t >= 0 && (at < 0 || xv[plane * inCount + t] > best)) {
          best = xv[plane * inCount + t];
          at = plane * inCount + t;
        }
      }
      y[plane * outCount + o] = best;
      indices[plane * outCount + o] = at;
    }
  }
  const outputs = [float64(dims, y)];
  if (node.outputs[1]) outputs.push(Tensor.int64(dims, indices));
  return outputs;
};

/** Mean over each window; the divisor counts pad positions only with count_include_pad=1. */
const averagePool: ReferenceKernel = (node, inputs) => {
  const { xv, n, c, dims, table, inCount, outCount, k, window, inSpatial, out } = pooled(node, inputs);
  const includePad = attrInt(node, 'count_include_pad', 0) === 1;
  // With count_include_pad=1 the divisor counts the node's pads but not a ceil_mode extension.
  const padIncluded = averagePoolDivisorGrid(window, inSpatial, out, true);
  const y = new Float64Array(n * c * outCount);
  for (let plane = 0; plane < n * c; plane++) {
    for (let o = 0; o < outCount; o++) {
      let sum = 0;
      let count = 0;
      for (let j = 0; j < k; j++) {
        const t = table[o * k + j];
        if (t >= 0) {
          sum += xv[plane * inCount + t];
          count++;
        }
      }
      y[plane * outCount + o] = sum / (includePad ? padIncluded[o] : count);
    }
  }
  return [float64(dims, y)];
};

function globalPool(reduce: (plane: Float64Array) => number): ReferenceKernel {
  return (node, inputs) => {
    const x = required(node, inputs, 0);
    const xv = values(node, inputs, 0);
    const [n, c, ...spatial] = x.dims;
    const count = spatial.reduce((p, q) => p * q, 1);
    const y = new Float64Array(n * c);
    for (let plane = 0; plane < n * c; plane++) y[plane] = reduce(xv.subarray(plane * count, (plane + 1) * count));
    return [float64([n, c, ...spatial.map(() => 1)], y)];
  };
}

export const poolKernels: KernelTable = {
  MaxPool: maxPool,
  AveragePool: averagePool,
  GlobalAveragePool: globalPool((p) => p.reduce((s, v) => s + v, 0) / p.length),
  GlobalMaxPool: globalPool((p) => p.reduce((s, v) => Math.max(s, v), -Infinity)),
};
