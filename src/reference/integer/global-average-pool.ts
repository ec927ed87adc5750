import { DType } from '../../ir/dtype.js';
import { IntegerKernel } from './kernel.js';
import { perTensorInput, Quantized, zeroAt } from './values.js';

/**
 * GlobalAveragePool on codes: per plane the int32 sum of (q - z), whose scale is s / count, so the next
 * QuantizeLinear requantizes the exact mean with one rounding (M = s / (count s_out)), as ORT's
 * QLinearGlobalAveragePool does in float. Rounding the mean to a code at the input's scale first (TFLite's
 * quantized AveragePool, where input and output share a scale) loses it whenever the output grid is finer: a
 * 4-bit input at s = 0.33 averaging 0.4 codes is code 0 there, but 13 on MobileNet's 8-bit grid of 0.012 after it.
 */
export const integerGlobalAveragePool: IntegerKernel = (node, inputs) => {
  const x = perTensorInput(node, inputs, 0);
  const [n, c, ...spatial] = x.dims;
  const count = spatial.reduce((p, q) => p * q, 1);
  const z = zeroAt(x, 0);
  const codes = new Int32Array(n * c);
  for (let plane = 0; plane < n * c; plane++) {
    let sum = 0;
    for (let i = 0; i < count; i++) sum += x.codes[plane * count + i] - z;
    codes[plane] = sum;
  }
  // Zero point 0 after subtracting z; int32 sums (at most 255 x count in magnitude).
  const { floatScale: _, ...rest } = x;
  const out: Quantized = { ...rest, dims: [n, c, ...spatial.map(() => 1)], codes, scale: Float64Array.of(x.scale[0] / count), zeroPoint: Int32Array.of(0), type: DType.INT32 };
  return [out];
};
