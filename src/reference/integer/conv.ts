import { DType } from '../../ir/dtype.js';
import { attrInt } from '../../ir/graph.js';
import { resolveWindow } from '../../ops/window-geometry.js';
import { windowTable } from '../windows.js';
import { checkInt32, int32Bias } from './bias.js';
import { IntegerKernel } from './kernel.js';
import { perTensorInput, Quantized, quantizedInput, scaleAt, zeroAt } from './values.js';

/**
 * Conv on codes (ORT's QLinearConv without its requantization, which the following QuantizeLinear does):
 * acc[n, m, o] = bias[m] + sum (x - z_x) * (w - z_w[m]) in integers; padding reads z_x (a real 0). The result
 * is an int32 accumulator with zero point 0 and per-channel scale s_x * s_w[m].
 */
export const integerConv: IntegerKernel = (node, inputs) => {
  const x = perTensorInput(node, inputs, 0);
  const w = quantizedInput(node, inputs, 1);
  if (x.dims.length !== 4 || w.dims.length !== 4) throw new Error(`node '${node.name}' (Conv): the integer evaluator runs 2-D convolutions; X [${x.dims}], W [${w.dims}]`);
  if (w.axis !== undefined && w.axis !== 0) throw new Error(`node '${node.name}' (Conv): weights must be quantized per tensor or per output channel (axis 0), got axis ${w.axis}`);
  const group = attrInt(node, 'group', 1);
  const [n, c, ...inSpatial] = x.dims;
  const [m, cg, ...kernel] = w.dims;
  if (c !== cg * group) throw new Error(`node '${node.name}' (Conv): X has ${c} channels, W [${w.dims}] with group=${group} expects ${cg * group}`);
  const { window, outSpatial } = resolveWindow(node, inSpatial, kernel);
  const out = outSpatial as number[];
  const table = windowTable(inSpatial, out, window);
  const inCount = inSpatial[0] * inSpatial[1];
  const outCount = out[0] * out[1];
  const k = table.length / outCount;
  const accScale = (oc: number) => scaleAt(x, 0) * scaleAt(w, oc);
  const bias = int32Bias(node, inputs, 2, m, accScale);
  const zx = zeroAt(x, 0);
  const xs = Int32Array.from(x.codes, (v) => v - zx);
  const ws = Int32Array.from(w.codes, (v, i) => v - zeroAt(w, Math.floor(i / (cg * k))));
  const acc = new Int32Array(n * m * outCount);
  const perGroup = m / group;
  for (let b = 0; b < n; b++) {
    for (let oc = 0; oc < m; oc++) {
      const g = Math.floor(oc / perGroup);
      for (let o = 0; o < outCount; o++) {
        let sum = bias ? bias[oc] : 0;
        for (let ci = 0; ci < cg; ci++) {
          const xBase = (b * c + g * cg + ci) * inCount;
          const wBase = (oc * cg + ci) * k;
          for (let j = 0; j < k; j++) {
            const t = table[o * k + j];
            if (t >= 0) sum += xs[xBase + t] * ws[wBase + j];
          }
        }
        acc[(b * m + oc) * outCount + o] = checkInt32(node, sum);
      }
    }
  }
  return [accumulator([n, m, ...out], acc, m, accScale)];
};

/** An int32 accumulator: zero point 0, per-channel (axis 1) scale s_x * s_w[c], exact in float64. */
export function accumulator(dims: number[], codes: Int32Array, channels: number, scale: (c: number) => number): Quantized {
  const s = Float64Array.from({ length: channels }, (_, ch) => scale(ch));
  return { kind: 'quantized', dims, codes, scale: s, floatScale: Float32Array.from(s), zeroPoint: Int32Array.of(0), axis: 1, type: DType.INT32 };
}
