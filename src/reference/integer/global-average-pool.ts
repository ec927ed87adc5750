import { DType } from '../../ir/dtype.js';
import { roundingDivideByPOT } from './fixed-point.js';
import { IntegerKernel } from './kernel.js';
import { isPerTensor, Quantized, quantizedInput, zeroAt } from './values.js';

/**
 * GlobalAveragePool on codes: per plane, round(sum(q - z) / count) with ties away from zero (TFLite's quantized
 * AveragePool rounding), kept at the input's scale with zero point 0 in int32 so the next QuantizeLinear
 * requantizes it. A power-of-two count divides by a rounding shift.
 */
export const integerGlobalAveragePool: IntegerKernel = (node, inputs) => {
  const x = quantizedInput(node, inputs, 0);
  if (!isPerTensor(x)) throw new Error(`node '${node.name}' (GlobalAveragePool): the input must be quantized per tensor`);
  const [n, c, ...spatial] = x.dims;
  const count = spatial.reduce((p, q) => p * q, 1);
  const z = zeroAt(x, 0);
  const codes = new Int32Array(n * c);
  for (let plane = 0; plane < n * c; plane++) {
    let sum = 0;
    for (let i = 0; i < count; i++) sum += x.codes[plane * count + i] - z;
    const pot = Math.log2(count);
    codes[plane] = Number.isInteger(pot) && pot <= 31 ? roundingDivideByPOT(sum, pot) : Math.sign(sum) * Math.round(Math.abs(sum) / count);
  }
  // Zero point 0 after subtracting z: the codes may leave the 8-bit range, so they are int32 from here.
  const out: Quantized = { ...x, dims: [n, c, ...spatial.map(() => 1)], codes, zeroPoint: Int32Array.of(0), type: DType.INT32 };
  return [out];
};
