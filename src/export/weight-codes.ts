import { Tensor } from '../ir/tensor.js';
import { Quantizer } from '../quant/prepare.js';
import { scaleLayout } from '../quant/prepare.js';
import { levelOffset, quantRange, roundHalfEven } from '../quant/spec.js';

/**
 * SEQ codes (symmetric, z = 0) rewritten in place as their odd doubles: (q + 1/2) s = (2q + 1) (s / 2) exactly
 * (halving a float32 is exact, and both products round once), so the levels sit on a plain grid of one more bit.
 */
export function toOddCodes(codes: Int32Array, scales: Float32Array): void {
  for (let i = 0; i < codes.length; i++) codes[i] = 2 * codes[i] + 1;
  for (let i = 0; i < scales.length; i++) scales[i] = scales[i] / 2;
}

/** A weight as an integer model stores it: codes q with w_q = (q - z) * s, per channel along `axis` or per tensor. */
export interface WeightCodes {
  tensor: string;
  dims: number[];
  codes: Int32Array;
  qmin: number;
  qmax: number;
  /** One scale / zero point per channel or per block (length 1 per tensor). */
  scale: Float32Array;
  zeroPoint: Int32Array;
  /** Dims of the scale and zero-point tensors: [] per tensor, [C] per channel, the weight's dims with `axis` divided by blockSize per group. */
  scaleDims?: number[];
  /** Channel axis (per channel) or the blocked axis (per group); undefined for per-tensor. */
  axis?: number;
  /** Per group: elements per block along `axis` (ONNX DequantizeLinear-21 block_size). */
  blockSize?: number;
  method: Quantizer['spec']['method'];
}

/**
 * Integer codes of one weight quantizer, from the trained values fetched from ONNX Runtime: for FakeQuantize
 * weights, QuantizeLinear done offline exactly as the lowering computes it in float32 (x / s correctly rounded
 * to float32 by Math.fround, round half to even, + round(z), clip); for binary / ternary weights, the codes and
 * per-channel scale read back from the quantized values (alpha * {-1, 1} or gamma * {-1, 0, 1}). Either way it
 * then checks that (q - z) * s in float32 reproduces the fake-quantized weight bit for bit, so the deployed
 * weights are the simulated ones. SEQ weights (ParetoQ's half-step levels) come back as their odd doubled codes.
 */
export function weightCodes(q: Quantizer, values: Map<string, Tensor>): WeightCodes {
  const w = values.get(q.tensor)!;
  const wq = values.get(q.output)!;
  const spec = q.spec;
  const g = spec.granularity;
  if (g.kind === 'per-token') throw new Error(`export: weight '${q.tensor}' uses per-token quantization; export supports per-tensor, per-channel and per-group weights`);
  if (g.kind === 'per-group' && (spec.method === 'binary' || spec.method === 'ternary')) {
    throw new Error(`export: weight '${q.tensor}' is ${spec.method} per group; export takes ${spec.method} weights per tensor or per channel`);
  }
  const axis = g.kind === 'per-channel' || g.kind === 'per-group' ? g.axis : undefined;
  const dims = w.dims;
  // Per group the scale has the weight's rank with the grouped axis divided by the group size, which is exactly
  // the scale layout of ONNX's blocked DequantizeLinear (opset 21: y_scale dims = x dims, ceil(D_axis / block_size)).
  const layout = scaleLayout(dims, spec);
  const scaleDims = g.kind === 'per-tensor' ? [] : layout.dims;
  const channels = scaleDims.reduce((a, b) => a * b, 1);
  const ch = g.kind === 'per-tensor' ? () => 0 : layout.index;
  const x = w.data as Float32Array;
  const fq = wq.data as Float32Array;
  const codes = new Int32Array(w.size);
  const scale = new Float32Array(channels);
  const zeroPoint = new Int32Array(channels);
  const { qmin, qmax } = quantRange(spec);
  if (spec.method === 'binary' || spec.method === 'ternary') {
    for (let i = 0; i < fq.length; i++) scale[ch(i)] = Math.max(scale[ch(i)], Math.abs(fq[i]));
    for (let c = 0; c < channels; c++) if (scale[c] === 0) scale[c] = 1; // an all-zero ternary channel
    for (let i = 0; i < fq.length; i++) codes[i] = Math.round(fq[i] / scale[ch(i)]);
  } else {
    if (!q.scale || !q.zeroPoint) throw new Error(`export: weight quantizer '${q.node}' has no scale / zero point values`);
    const s = values.get(q.scale)!.data as Float32Array;
    const z = values.get(q.zeroPoint)!.data as Float32Array;
    if (s.length !== channels) throw new Error(`export: weight '${q.tensor}' has ${s.length} scales for ${channels} ${g.kind === 'per-group' ? 'groups' : 'channels'}`);
    for (let c = 0; c < channels; c++) {
      scale[c] = s[c];
      zeroPoint[c] = roundHalfEven(z.length === 1 ? z[0] : z[c]);
    }
    const offset = levelOffset(spec);
    for (let i = 0; i < x.length; i++) {
      const c = ch(i);
      const scaled = Math.fround(x[i] / scale[c]);
      codes[i] = Math.min(qmax, Math.max(qmin, roundHalfEven(offset ? Math.fround(scaled - offset) : scaled) + zeroPoint[c]));
    }
    if (offset) toOddCodes(codes, scale);
  }
  const [gridMin, gridMax] = levelOffset(spec) ? [2 * qmin + 1, 2 * qmax + 1] : [qmin, qmax];
  for (let i = 0; i < fq.length; i++) {
    const c = ch(i);
    const back = Math.fround((codes[i] - zeroPoint[c]) * scale[c]);
    if (back !== fq[i] || codes[i] < gridMin || codes[i] > gridMax) {
      throw new Error(`export: weight '${q.tensor}' element ${i}: code ${codes[i]} dequantizes to ${back}, but the trained model uses ${fq[i]} (quantizer '${q.node}')`);
    }
  }
  return { tensor: q.tensor, dims: [...dims], codes, qmin: gridMin, qmax: gridMax, scale, zeroPoint, scaleDims, axis, ...(g.kind === 'per-group' ? { blockSize: g.size } : {}), method: spec.method };
}
