import { DType } from '../../ir/dtype.js';
import { multiplyByQuantizedMultiplier, quantizeMultiplier } from './fixed-point.js';
import { floatBinary } from './float-elementwise.js';
import { IntegerKernel } from './kernel.js';
import { isPerTensor, Quantized, scaleAt, zeroAt } from './values.js';

/** TFLite's left shift for quantized Add: inputs are rescaled to 2^20 steps of twice the larger input scale. */
const ADD_LEFT_SHIFT = 20;

/**
 * Add of two quantized tensors (a residual connection), as TFLite's integer Add does it: both inputs are
 * rescaled by fixed-point multipliers s_a / (2 max(s_a, s_b)) and s_b / (2 max(s_a, s_b)) after a left shift
 * of 20 bits, and summed in int32. The sum is an accumulator of scale 2 max(s_a, s_b) / 2^20 and zero point 0,
 * so the following QuantizeLinear applies TFLite's output multiplier 2 max(s_a, s_b) / (2^20 s_out).
 * Float inputs are added in float32.
 */
export const integerAdd: IntegerKernel = (node, inputs) => {
  const [a, b] = inputs;
  if (a?.kind !== 'quantized' || b?.kind !== 'quantized') return floatBinary(node, inputs, (x, y) => x + y);
  if (!isPerTensor(a) || !isPerTensor(b)) throw new Error(`node '${node.name}' (Add): quantized inputs must be per tensor`);
  if (a.dims.join() !== b.dims.join()) throw new Error(`node '${node.name}' (Add): quantized inputs [${a.dims}] and [${b.dims}] must have the same shape (no broadcasting)`);
  const twiceMax = 2 * Math.max(scaleAt(a, 0), scaleAt(b, 0));
  const [ma, mb] = [quantizeMultiplier(scaleAt(a, 0) / twiceMax), quantizeMultiplier(scaleAt(b, 0) / twiceMax)];
  const [za, zb] = [zeroAt(a, 0), zeroAt(b, 0)];
  const shift = 2 ** ADD_LEFT_SHIFT;
  const codes = a.codes.map((qa, i) => multiplyByQuantizedMultiplier((qa - za) * shift, ma) + multiplyByQuantizedMultiplier((b.codes[i] - zb) * shift, mb));
  const scale = twiceMax / shift;
  const out: Quantized = { kind: 'quantized', dims: [...a.dims], codes, scale: Float64Array.of(scale), floatScale: Float32Array.of(scale), zeroPoint: Int32Array.of(0), type: DType.INT32 };
  return [out];
};
