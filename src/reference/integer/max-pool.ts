import { attrInts } from '../../ir/graph.js';
import { resolveWindow } from '../../ops/window-geometry.js';
import { windowTable } from '../windows.js';
import { IntegerKernel } from './kernel.js';
import { quantizedInput, withCodes } from './values.js';

/** MaxPool on codes: the maximum code is the code of the maximum (positive scale), pads excluded. */
export const integerMaxPool: IntegerKernel = (node, inputs) => {
  const x = quantizedInput(node, inputs, 0);
  if (node.outputs[1]) throw new Error(`node '${node.name}' (MaxPool): the Indices output is not supported by the integer evaluator`);
  const kernel = attrInts(node, 'kernel_shape', undefined);
  if (!kernel) throw new Error(`node '${node.name}' (MaxPool): kernel_shape is required`);
  const [n, c, ...inSpatial] = x.dims;
  const { window, outSpatial } = resolveWindow(node, inSpatial, kernel);
  const out = outSpatial as number[];
  const table = windowTable(inSpatial, out, window);
  const inCount = inSpatial.reduce((p, q) => p * q, 1);
  const outCount = out.reduce((p, q) => p * q, 1);
  const k = table.length / outCount;
  const codes = new Int32Array(n * c * outCount);
  for (let plane = 0; plane < n * c; plane++) {
    for (let o = 0; o < outCount; o++) {
      let best = -Infinity;
      for (let j = 0; j < k; j++) {
        const t = table[o * k + j];
        if (t >= 0) best = Math.max(best, x.codes[plane * inCount + t]);
      }
      codes[plane * outCount + o] = best;
    }
  }
  return [withCodes(x, [n, c, ...out], codes)];
};
