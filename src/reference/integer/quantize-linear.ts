import { attrInt } from '../../ir/graph.js';
import { roundHalfEven } from '../../quant/spec.js';
import { multiplyByQuantizedMultiplier, QuantizedMultiplier, quantizeMultiplier } from './fixed-point.js';
import { IntegerKernel } from './kernel.js';
import { channelIndexer, Quantized, scaleAt, tensorInput, typeRange, zeroAt } from './values.js';
import { quantParams } from './quant-params.js';

/**
 * QuantizeLinear. A float input (the normalised image) is quantized as ONNX defines it:
 * q = saturate(round_half_even(x / s) + z), with x / s in float32 as ORT computes it.
 * A quantized input (an int32 accumulator of Conv / Gemm / Add, or codes moved by MaxPool) is requantized in
 * integers: q = saturate(z_out + (q_in - z_in) * M) with M = s_in / s_out applied as a Q31 fixed-point
 * multiplier and a rounding right shift (Jacob et al. 2018, section 2.2) — for an accumulator s_in = s_x * s_w[c],
 * so this is the M = s_x * s_w / s_out of the paper.
 */
export const quantizeLinear: IntegerKernel = (node, inputs) => {
  const out = quantParams(node, inputs, 1, 2, attrInt(node, 'axis', 1));
  if (out.scale.length !== 1) throw new Error(`node '${node.name}' (QuantizeLinear): per-axis output quantization is not supported by the integer evaluator (activations are per-tensor)`);
  const [lo, hi] = typeRange(out.type, node);
  const [sOut, zOut] = [out.scale[0], out.zeroPoint[0]];
  const x = inputs[0];
  if (x?.kind === 'quantized') {
    const channel = channelIndexer(x.dims, x.axis);
    // A Clip on the accumulator (see clip.ts): clip then round = round then clamp to the bounds' codes.
    // (An infinite bound stays infinite through roundHalfEven and leaves the type's bound in place.)
    const code = (bound: number) => zOut + roundHalfEven(bound / sOut);
    const [qlo, qhi] = x.clampReal ? [Math.max(lo, code(x.clampReal[0])), Math.min(hi, code(x.clampReal[1]))] : [lo, hi];
    const multipliers = new Map<number, QuantizedMultiplier>();
    const codes = new Int32Array(x.codes.length);
    for (let i = 0; i < codes.length; i++) {
      const c = channel(i);
      let m = multipliers.get(c);
      if (!m) multipliers.set(c, (m = quantizeMultiplier(scaleAt(x, c) / sOut)));
      const q = zOut + multiplyByQuantizedMultiplier(x.codes[i] - zeroAt(x, c), m);
      codes[i] = Math.min(qhi, Math.max(qlo, q));
    }
    return [{ kind: 'quantized', dims: [...x.dims], codes, scale: Float64Array.of(sOut), zeroPoint: Int32Array.of(zOut), type: out.type } satisfies Quantized];
  }
  const t = tensorInput(node, inputs, 0);
  const xs = floatData(node, t);
  const s32 = Math.fround(sOut);
  const codes = Int32Array.from(xs, (v) => Math.min(hi, Math.max(lo, roundHalfEven(Math.fround(v / s32)) + zOut)));
  return [{ kind: 'quantized', dims: [...t.dims], codes, scale: Float64Array.of(sOut), zeroPoint: Int32Array.of(zOut), type: out.type }];
};

function floatData(node: Parameters<IntegerKernel>[0], t: { dtype: number; data: unknown }): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new Error(`node '${node.name}' (QuantizeLinear): input 0 must be float32 or quantized codes, got type ${t.dtype}`);
  return t.data;
}
