import { Tensor } from '../ir/tensor.js';
import { Quantizer } from '../quant/prepare.js';
import { levelOffset, quantRange, roundHalfEven } from '../quant/spec.js';
import { InputError } from '../validate/schema.js';
import { toOddCodes } from './weight-codes.js';

/**
 * A language-model weight as a blocked integer matrix in MatMulNBits orientation: `n` output features (rows),
 * `k` input features, blocks of `blockSize` consecutive input features with one scale each, and signed codes on
 * the trained grid (w_q = q * s: LM weight quantizers are symmetric). Per-channel and per-tensor weights are the
 * same matrix with their scale repeated over the blocks (exact: every block holds the one trained scale).
 */
export interface BlockedWeightCodes {
  /** The quantized parameter (a MatMul weight [K, N] or a token table [V, C]). */
  tensor: string;
  /** Layout of the parameter: 'kn' for a MatMul weight [K, N], 'nk' for a token table [V, C] (V = N rows). */
  layout: 'kn' | 'nk';
  n: number;
  k: number;
  blockSize: number;
  /** codes[row * k + col]: row = output feature, col = input feature. */
  codes: Int32Array;
  /** scales[row * blocks + block]. */
  scales: Float32Array;
  qmin: number;
  qmax: number;
  /** Bits of the stored grid (ternary: 2, three levels; SEQ: one more than trained, see trainedBits). */
  bits: number;
  /**
   * Set where the stored grid is not the trained one: ParetoQ's SEQ levels (q + 1/2) s are stored as the odd codes
   * 2q + 1 at scale s / 2, the same float32 values on a plain symmetric grid of one more bit, so every integer
   * kernel runs them with its default zero point. (MatMulNBits' float zero points would keep 2 bits, but ORT 1.30's
   * CPU kernels run those on a float fallback 18-50x slower than fp32 MatMul: docs/export-formats.md.)
   */
  trainedBits?: number;
  method: Quantizer['spec']['method'];
  /** What the trained quantizer's scales were: the group of the spec, or 'channel' / 'tensor' repeated. */
  granularity: 'group' | 'channel' | 'tensor';
}

/** MatMulNBits block sizes (ORT's contract: a power of two from 16 to 256). */
export const NBITS_BLOCK_SIZES = [16, 32, 64, 128, 256];

/**
 * The widest MatMulNBits block dividing k, at most `maxBlock` (a per-channel or per-tensor scale is repeated in
 * each: narrower blocks store more copies of the same scale, which only the size/speed trade-off of a kernel
 * that reads scales per block can justify).
 */
function widestBlock(k: number, tensor: string, maxBlock = 256): number {
  const b = [...NBITS_BLOCK_SIZES].reverse().find((s) => s <= maxBlock && k % s === 0);
  if (!b) throw new InputError(`export: weight '${tensor}' has ${k} input features, not a multiple of 16; MatMulNBits takes blocks of ${NBITS_BLOCK_SIZES.join(', ')}`);
  return b;
}

/**
 * The MatMulNBits block a weight quantizer's codes are stored in, for a weight of `k` input features: its group,
 * or (per-channel / per-tensor) the widest block dividing k, at most `maxBlock`; undefined where none fits.
 */
export function nbitsBlockSize(q: Quantizer, k: number, maxBlock?: number): number | undefined {
  const g = q.spec.granularity;
  if (g.kind === 'per-group') return NBITS_BLOCK_SIZES.includes(g.size) ? g.size : undefined;
  if (g.kind !== 'per-channel' && g.kind !== 'per-tensor') return undefined;
  return [...NBITS_BLOCK_SIZES].reverse().find((s) => s <= (maxBlock ?? 256) && k % s === 0);
}

/**
 * Integer codes of one language-model weight quantizer from the trained values fetched from ONNX Runtime
 * (`values`: the float weight, the fake-quantized weight, and the scale the quantizer used). FakeQuantize weights
 * are quantized offline exactly as its lowering computes in float32 (q = clip(round_half_even(fround(w / s)),
 * qmin, qmax)); ternary (BitNet absmean) codes and their scale gamma are read back from the quantized values.
 * Either way (q * s) in float32 must reproduce the fake-quantized weight bit for bit, or the export fails naming
 * the element: the deployed weights are the simulated ones.
 */
export function blockedWeightCodes(q: Quantizer, values: Map<string, Tensor>, layout: 'kn' | 'nk', maxBlock?: number): BlockedWeightCodes {
  const w = values.get(q.tensor);
  const wq = values.get(q.output);
  if (!w || !wq) throw new Error(`export: no values for weight '${q.tensor}' (quantizer '${q.node}')`);
  if (w.dims.length !== 2) throw new Error(`export: weight '${q.tensor}' has dims [${w.dims}]; language-model weights are matrices`);
  const spec = q.spec;
  const g = spec.granularity;
  // A token table [V, C] ('nk') is quantized per row (per-channel axis 0) or in groups along C (axis 1); a
  // MatMul weight [K, N] ('kn') per output column (axis 1) or in groups along K (axis 0).
  const [n, k] = layout === 'kn' ? [w.dims[1], w.dims[0]] : [w.dims[0], w.dims[1]];
  const at = layout === 'kn' ? (row: number, col: number) => col * n + row : (row: number, col: number) => row * k + col;
  let blockSize: number;
  let granularity: BlockedWeightCodes['granularity'];
  if (g.kind === 'per-group') {
    const groupAxis = layout === 'kn' ? 0 : 1;
    if (g.axis !== groupAxis) throw new Error(`export: weight '${q.tensor}' is grouped along axis ${g.axis}; MatMulNBits blocks run along the input features (axis ${groupAxis})`);
    if (!NBITS_BLOCK_SIZES.includes(g.size)) {
      throw new InputError(`export: weight '${q.tensor}' has groups of ${g.size}; MatMulNBits blocks are ${NBITS_BLOCK_SIZES.join(', ')} (train with --quant-config groupSize one of those)`);
    }
    if (maxBlock !== undefined && maxBlock !== g.size) {
      throw new InputError(`--block-size ${maxBlock}: weight '${q.tensor}' was trained in groups of ${g.size}, which are its blocks; --block-size sets the blocks of per-channel and per-tensor weights (w8a8, b158); drop it, or train with groupSize ${maxBlock}`);
    }
    blockSize = g.size;
    granularity = 'group';
  } else if (g.kind === 'per-channel' || g.kind === 'per-tensor') {
    if (g.kind === 'per-channel' && g.axis !== (layout === 'kn' ? 1 : 0)) throw new Error(`export: weight '${q.tensor}' has channels along axis ${g.axis}, not its output features`);
    blockSize = widestBlock(k, q.tensor, maxBlock);
    granularity = g.kind === 'per-channel' ? 'channel' : 'tensor';
  } else {
    throw new Error(`export: weight '${q.tensor}' uses ${g.kind} quantization, which is for activations`);
  }
  const blocks = k / blockSize;
  const { qmin, qmax } = quantRange(spec);
  const x = w.data as Float32Array;
  const fq = wq.data as Float32Array;
  const codes = new Int32Array(n * k);
  const scales = new Float32Array(n * blocks);
  if (spec.method === 'ternary' || spec.method === 'binary') {
    if (g.kind !== 'per-tensor' && g.kind !== 'per-channel') throw new Error(`export: ${spec.method} weight '${q.tensor}' must be per-tensor or per-channel`);
    // Every nonzero quantized value is +-gamma of its row (per channel) or of the tensor.
    const gammaOf = new Float32Array(g.kind === 'per-tensor' ? 1 : n);
    for (let row = 0; row < n; row++) for (let col = 0; col < k; col++) {
      const c = g.kind === 'per-tensor' ? 0 : row;
      gammaOf[c] = Math.max(gammaOf[c], Math.abs(fq[at(row, col)]));
    }
    for (let c = 0; c < gammaOf.length; c++) if (gammaOf[c] === 0) gammaOf[c] = 1; // an all-zero weight
    for (let row = 0; row < n; row++) {
      const s = gammaOf[g.kind === 'per-tensor' ? 0 : row];
      scales.fill(s, row * blocks, (row + 1) * blocks);
      for (let col = 0; col < k; col++) codes[row * k + col] = Math.round(fq[at(row, col)] / s);
    }
  } else {
    if (!q.scale) throw new Error(`export: weight quantizer '${q.node}' has no scale value`);
    const s = values.get(q.scale)!.data as Float32Array;
    const z = q.zeroPoint ? (values.get(q.zeroPoint)?.data as Float32Array | undefined) : undefined;
    if (z && z.some((v) => v !== 0)) throw new Error(`export: weight '${q.tensor}' has nonzero zero points; language-model weights are symmetric`);
    const offset = levelOffset(spec);
    const scaleAt = (row: number, block: number): number => {
      if (g.kind === 'per-tensor') return s[0];
      if (g.kind === 'per-channel') return s[row];
      // Scale dims: [K / g, N] for a MatMul weight, [V, C / g] for a table.
      return layout === 'kn' ? s[block * n + row] : s[row * blocks + block];
    };
    for (let row = 0; row < n; row++) {
      for (let block = 0; block < blocks; block++) scales[row * blocks + block] = scaleAt(row, block);
      for (let col = 0; col < k; col++) {
        const sc = scales[row * blocks + Math.floor(col / blockSize)];
        const scaled = Math.fround(x[at(row, col)] / sc);
        codes[row * k + col] = Math.min(qmax, Math.max(qmin, roundHalfEven(offset ? Math.fround(scaled - offset) : scaled)));
      }
    }
    if (offset) toOddCodes(codes, scales);
  }
  const [gridMin, gridMax] = levelOffset(spec) ? [2 * qmin + 1, 2 * qmax + 1] : [qmin, qmax];
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < k; col++) {
      const i = row * k + col;
      const back = Math.fround(codes[i] * scales[row * blocks + Math.floor(col / blockSize)]);
      const want = fq[at(row, col)];
      if (back !== want || codes[i] < gridMin || codes[i] > gridMax) {
        throw new Error(`export: weight '${q.tensor}' element [${layout === 'kn' ? `${col}, ${row}` : `${row}, ${col}`}]: code ${codes[i]} dequantizes to ${back}, but the trained model uses ${want} (quantizer '${q.node}')`);
      }
    }
  }
  const bits = spec.method === 'ternary' ? 2 : spec.method === 'binary' ? 1 : spec.bits;
  if (levelOffset(spec)) return { tensor: q.tensor, layout, n, k, blockSize, codes, scales, qmin: gridMin, qmax: gridMax, bits: bits + 1, trainedBits: bits, method: spec.method, granularity };
  return { tensor: q.tensor, layout, n, k, blockSize, codes, scales, qmin, qmax, bits, method: spec.method, granularity };
}

/** The float32 values the codes stand for, in the parameter's own layout ([K, N] or [V, C]). */
export function dequantizeBlocked(w: BlockedWeightCodes): Float32Array {
  const out = new Float32Array(w.n * w.k);
  const blocks = w.k / w.blockSize;
  for (let row = 0; row < w.n; row++) {
    for (let col = 0; col < w.k; col++) {
      const v = Math.fround(w.codes[row * w.k + col] * w.scales[row * blocks + Math.floor(col / w.blockSize)]);
      out[w.layout === 'kn' ? col * w.n + row : row * w.k + col] = v;
    }
  }
  return out;
}
