/**
 * QuantSpec: how one tensor is quantized. Validation refuses bad combinations with the field, the value and
 * the valid choices named (the torchao QAT config style).
 */
export type Granularity =
  | { kind: 'per-tensor' }
  | { kind: 'per-channel'; axis: number }
  | { kind: 'per-group'; axis: number; size: number }
  /**
   * Dynamic, per row of the last axis (per token of a [B, T, C] activation); with blockSize, per row and per block
   * of blockSize consecutive channels (ORT MatMulNBits accuracy_level 4 quantizes its input so).
   */
  | { kind: 'per-token'; blockSize?: number };

/**
 * How the scale is obtained and how gradients flow:
 * - 'minmax': scale from the tensor's range (weights: current min/max each step; activations: a moving-average
 *   observer frozen after a set step); straight-through estimator (STE) for x.
 * - 'lsq': learned step size (Esser et al. 2020); 'lsq+': LSQ plus a learned zero point (Bhalgat et al. 2020).
 * - 'pact': learned clipping level alpha for unsigned activations (Choi et al. 2018).
 * - 'binary': sign(x) * mean|x| per output channel (XNOR-Net / BinaryConnect), clipped STE (BNN).
 * - 'ternary': BitNet b1.58 absmean: round(x / mean|x|) clamped to {-1, 0, 1}, times mean|x|.
 * - 'absmax': dynamic symmetric absmax per token (BitLinear activations).
 * - 'seq': ParetoQ's stretched elastic quantizer (Liu et al. 2025, "ParetoQ: Scaling Laws in Extremely Low-bit
 *   LLM Quantization", section 3.2), for weights at 2 to 4 bits: LSQ on a grid of 2^bits levels shifted by half a
 *   step, so that none sits at zero and the grid is symmetric ({-1.5, -0.5, 0.5, 1.5} s at 2 bits):
 *   q = clip(round(w / s - 1/2), -2^(b-1), 2^(b-1) - 1), w_q = (q + 1/2) s (see levelOffset).
 * With per-token granularity 'minmax' is dynamic too: each row's own min/max, asymmetric (simulation only: ORT
 * has no integer kernel taking a zero point per row).
 */
export const SCALE_METHODS = ['minmax', 'lsq', 'lsq+', 'pact', 'binary', 'ternary', 'absmax', 'seq'] as const;
export type ScaleMethod = (typeof SCALE_METHODS)[number];

export const VALID_BITS = [2, 3, 4, 5, 6, 7, 8, 16] as const;

export interface QuantSpec {
  bits: number;
  signed: boolean;
  symmetric: boolean;
  /** Signed symmetric range without the most negative code (-127..127 for 8 bits), as TensorRT/ORT weights. */
  narrowRange: boolean;
  granularity: Granularity;
  method: ScaleMethod;
}

export class QuantSpecError extends Error {}

export function quantRange(spec: Pick<QuantSpec, 'bits' | 'signed' | 'narrowRange' | 'method'>): { qmin: number; qmax: number } {
  if (spec.method === 'binary') return { qmin: -1, qmax: 1 };
  if (spec.method === 'ternary') return { qmin: -1, qmax: 1 };
  const b = spec.bits;
  if (spec.signed) return { qmin: spec.narrowRange ? -(2 ** (b - 1)) + 1 : -(2 ** (b - 1)), qmax: 2 ** (b - 1) - 1 };
  return { qmin: 0, qmax: 2 ** b - 1 - (spec.narrowRange ? 1 : 0) };
}

/**
 * The offset o of a grid's levels in steps: w_q = (q + o) s with integer codes q, rounded as q = round(w / s - o).
 * 1/2 for ParetoQ's SEQ (its levels are the odd multiples of s / 2), 0 for every other uniform grid.
 */
export function levelOffset(spec: Pick<QuantSpec, 'method'>): number {
  return spec.method === 'seq' ? 0.5 : 0;
}

/** Checks a spec; `where` names the layer or config path for the error message. */
export function validateSpec(spec: QuantSpec, where = 'quant spec'): QuantSpec {
  const fail = (field: string, value: unknown, valid: string): never => {
    throw new QuantSpecError(`${where}: ${field} = ${JSON.stringify(value)} is invalid; valid: ${valid}`);
  };
  if (!(SCALE_METHODS as readonly string[]).includes(spec.method)) fail('method', spec.method, SCALE_METHODS.join(', '));
  if (spec.method !== 'binary' && spec.method !== 'ternary' && !(VALID_BITS as readonly number[]).includes(spec.bits)) {
    fail('bits', spec.bits, VALID_BITS.join(', '));
  }
  const g = spec.granularity;
  const kinds = ['per-tensor', 'per-channel', 'per-group', 'per-token'];
  if (!g || !kinds.includes(g.kind)) fail('granularity', g, kinds.join(', '));
  if ((g.kind === 'per-channel' || g.kind === 'per-group') && !Number.isInteger(g.axis)) fail('granularity.axis', (g as { axis: unknown }).axis, 'an integer axis');
  if (g.kind === 'per-group' && (!Number.isInteger(g.size) || g.size < 1)) fail('granularity.size', g.size, 'an integer >= 1');
  if (spec.method === 'pact' && spec.signed) fail('signed', spec.signed, 'false (PACT clips to [0, alpha]: unsigned activations only)');
  if (spec.method === 'pact' && g.kind !== 'per-tensor') fail('granularity', g.kind, "'per-tensor' for PACT");
  if (spec.method === 'lsq+' && spec.symmetric) fail('symmetric', spec.symmetric, 'false (LSQ+ learns a zero point: use lsq for symmetric)');
  if (spec.method === 'seq' && (spec.bits < 2 || spec.bits > 4)) fail('bits', spec.bits, "2, 3 or 4 for 'seq' (ParetoQ uses it at 2 bits and below; at 3 bits and more LSQ)");
  if (spec.method === 'seq' && (!spec.signed || !spec.symmetric || spec.narrowRange)) fail('symmetric', spec.symmetric, "true, signed, full range for 'seq' (its grid is symmetric by construction)");
  if (spec.method === 'seq' && g.kind === 'per-token') fail('granularity', g.kind, "'per-channel', 'per-group' or 'per-tensor' for 'seq' (a weight quantizer)");
  if (spec.method === 'absmax' && !spec.symmetric) fail('symmetric', spec.symmetric, 'true (absmax is symmetric)');
  if (spec.method === 'absmax' && g.kind !== 'per-token' && g.kind !== 'per-tensor') fail('granularity', g.kind, "'per-token' or 'per-tensor' for absmax");
  if (g.kind === 'per-token' && spec.method !== 'absmax' && spec.method !== 'minmax') {
    fail('method', spec.method, "'absmax' (symmetric) or 'minmax' (asymmetric) for per-token (dynamic) quantization");
  }
  if (g.kind === 'per-token' && spec.method === 'minmax' && spec.symmetric) fail('symmetric', true, "false for per-token minmax (symmetric per-token is 'absmax')");
  if (g.kind === 'per-token' && g.blockSize !== undefined && (!Number.isInteger(g.blockSize) || g.blockSize < 1)) fail('granularity.blockSize', g.blockSize, 'an integer >= 1');
  if (g.kind === 'per-token' && g.blockSize !== undefined && spec.method !== 'absmax') fail('method', spec.method, "'absmax' for per-token-per-block (MatMulNBits accuracy_level 4 is symmetric)");
  if (spec.narrowRange && !spec.signed) fail('narrowRange', true, 'false for unsigned ranges');
  if (spec.symmetric && !spec.signed && spec.method !== 'pact' && spec.method !== 'lsq' && spec.method !== 'minmax') {
    fail('signed', false, 'true for symmetric ' + spec.method);
  }
  return spec;
}

/** Round half to even, as ONNX Round / QuantizeLinear and torch.round do (Math.round rounds half up). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round sends ties up; where it did and landed on an odd number, step back to the even neighbour.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Scale and zero point from a range (DESIGN numerics contract): symmetric S = max|r| / qmax with Z = 0 (for
 * unsigned symmetric: S = max / qmax); asymmetric S = (max - min) / (qmax - qmin), Z = round(qmin - min / S),
 * with the range widened to include 0 so that 0 is exactly representable. A zero range gives S = 1e-8-safe 1.
 */
export function qparamsFromRange(min: number, max: number, spec: Pick<QuantSpec, 'bits' | 'signed' | 'symmetric' | 'narrowRange' | 'method'>): { scale: number; zeroPoint: number } {
  const { qmin, qmax } = quantRange(spec);
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const tiny = 1e-12;
  if (spec.symmetric) {
    const m = spec.signed ? Math.max(-lo, hi) : hi;
    return { scale: m > tiny ? m / qmax : 1, zeroPoint: 0 };
  }
  const span = hi - lo;
  if (span <= tiny) return { scale: 1, zeroPoint: Math.min(qmax, Math.max(qmin, 0)) };
  const scale = span / (qmax - qmin);
  const zeroPoint = Math.min(qmax, Math.max(qmin, roundHalfEven(qmin - lo / scale)));
  return { scale, zeroPoint };
}

/** Reference fake quantization of one value (the closed form every lowering is tested against); `offset`: levelOffset. */
export function fakeQuantizeValue(x: number, scale: number, zeroPoint: number, qmin: number, qmax: number, offset = 0): number {
  const q = Math.min(qmax, Math.max(qmin, roundHalfEven(x / scale - offset) + zeroPoint));
  return (q - zeroPoint + offset) * scale;
}
