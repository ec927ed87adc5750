import { attrInt, attrInts, Node } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { resolveTransposeWindow, resolveWindow } from '../ops/window-geometry.js';
import { float64, KernelTable, ReferenceKernel, required, values } from './kernel.js';
import { windowTable } from './windows.js';

// Conv and ConvTranspose, any spatial rank, with groups, straight from the ONNX definitions.

function shapes(node: Node, inputs: (Tensor | undefined)[]) {
  const x = required(node, inputs, 0);
  const w = required(node, inputs, 1);
  if (x.dims.length < 3 || w.dims.length !== x.dims.length) {
    throw new Error(`node '${node.name}' (${node.opType}): X [${x.dims}] and W [${w.dims}] must have the same rank >= 3`);
  }
  const kernel = attrInts(node, 'kernel_shape', undefined) ?? w.dims.slice(2);
  return { x, w, kernel, group: attrInt(node, 'group', 1), bias: inputs[2] ? values(node, inputs, 2) : undefined };
}

const conv: ReferenceKernel = (node, inputs) => {
  const { x, w, kernel, group, bias } = shapes(node, inputs);
  const [n, c, ...inSpatial] = x.dims;
  const [m, cg] = w.dims;
  if (c !== cg * group) throw new Error(`node '${node.name}' (Conv): X has ${c} channels, W [${w.dims}] with group=${group} expects ${cg * group}`);
  const { window, outSpatial } = resolveWindow(node, inSpatial, kernel);
  const out = outSpatial as number[];
  const table = windowTable(inSpatial, out, window);
  const [xv, wv] = [values(node, inputs, 0), values(node, inputs, 1)];
  const inCount = inSpatial.reduce((p, q) => p * q, 1);
  const outCount = out.reduce((p, q) => p * q, 1);
  const k = table.length / outCount;
  const y = new Float64Array(n * m * outCount);
  const perGroup = m / group;
  for (let b = 0; b < n; b++) {
    for (let oc = 0; oc < m; oc++) {
      const g = Math.floor(oc / perGroup);
      for (let o = 0; o < outCount; o++) {
        let acc = bias ? bias[oc] : 0;
        for (let ci = 0; ci < cg; ci++) {
          const xBase = (b * c + g * cg + ci) * inCount;
          const wBase = (oc * cg + ci) * k;
          for (let j = 0; j < k; j++) {
            const t = table[o * k + j];
            if (t >= 0) acc += xv[xBase + t] * wv[wBase + j];
          }
        }
        y[(b * m + oc) * outCount + o] = acc;
      }
    }
  }
  return [float64([n, m, ...out], y)];
};

const convTranspose: ReferenceKernel = (node, inputs) => {
  const { x, w, kernel, group, bias } = shapes(node, inputs);
  const [n, c, ...inSpatial] = x.dims;
  const [cw, mg] = w.dims;
  if (c !== cw) throw new Error(`node '${node.name}' (ConvTranspose): X has ${c} channels, W [${w.dims}] expects ${cw}`);
  const m = mg * group;
  const { window, outSpatial } = resolveTransposeWindow(node, inSpatial, kernel);
  const out = outSpatial as number[];
  // The transposed relation: input position i and kernel offset j write output position i·s + j·d − pad.
  const table = windowTable(out, inSpatial, window);
  const [xv, wv] = [values(node, inputs, 0), values(node, inputs, 1)];
  const inCount = inSpatial.reduce((p, q) => p * q, 1);
  const outCount = out.reduce((p, q) => p * q, 1);
  const k = table.length / inCount;
  const y = new Float64Array(n * m * outCount);
  const cPerGroup = c / group;
  for (let b = 0; b < n; b++) {
    for (let ci = 0; ci < c; ci++) {
      const g = Math.floor(ci / cPerGroup);
      for (let i = 0; i < inCount; i++) {
        const xval = xv[(b * c + ci) * inCount + i];
        for (let o = 0; o < mg; o++) {
          const wBase = (ci * mg + o) * k;
          const yBase = (b * m + g * mg + o) * outCount;
          for (let j = 0; j < k; j++) {
            const t = table[i * k + j];
            if (t >= 0) y[yBase + t] += xval * wv[wBase + j];
          }
        }
      }
    }
  }
  if (bias) for (let b = 0; b < n; b++) for (let oc = 0; oc < m; oc++) for (let o = 0; o < outCount; o++) y[(b * m + oc) * outCount + o] += bias[oc];
  return [float64([n, m, ...out], y)];
};

export const convKernels: KernelTable = {
  Conv: conv,
  ConvTranspose: convTranspose,
};
