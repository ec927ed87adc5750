/**
 * com.microsoft.MatMulNBits (ONNX Runtime contrib op, docs/ContribOperators.md): Y = A x dequant(B) with B
 * quantized in blocks along K. Contract: B is uint8 [N, K / block_size, block_size * bits / 8], each block's
 * codes bit-packed low bits first (4 bits: element 2j in the low nibble, 2j+1 in the high one); scales
 * [N, K / block_size] in A's type; zero points optional (uint8, packed the same way, [N, ceil(blocks * bits / 8)]),
 * default 2^(bits - 1); attributes K, N, bits (2, 4, 8 on ORT's CPU kernels), block_size (a power of two,
 * 16..256) and accuracy_level (0: A stays float, fp32 compute; 4: A quantized to int8 symmetrically per row per
 * block, int32 accumulation).
 */
import { DType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { MS_DOMAIN } from '../runtime/lower.js';
import { Emitter } from './emitter.js';
import { BlockedWeightCodes } from './lm-weight-codes.js';

/** The container bits a weight ships in: ORT's CPU kernels take 2, 4 and 8 (3-bit codes go in 4-bit blocks). */
export function storageBits(w: Pick<BlockedWeightCodes, 'bits' | 'tensor'>): 2 | 4 | 8 {
  if (w.bits <= 2) return 2;
  if (w.bits <= 4) return 4;
  if (w.bits <= 8) return 8;
  throw new Error(`export: weight '${w.tensor}' has ${w.bits}-bit codes; MatMulNBits stores at most 8 bits`);
}

/**
 * B of MatMulNBits: unsigned codes u = q + 2^(bits - 1) (the default zero point, so no zero-point tensor is
 * needed for symmetric weights; ternary {-1, 0, 1} becomes {1, 2, 3} around 2), packed low bits first.
 */
export function packMatMulNBits(w: BlockedWeightCodes, bits: 2 | 4 | 8): Uint8Array {
  const zero = 2 ** (bits - 1);
  const perByte = 8 / bits;
  const out = new Uint8Array((w.n * w.k) / perByte);
  for (let i = 0; i < w.codes.length; i++) {
    const u = w.codes[i] + zero;
    if (u < 0 || u >= 2 ** bits) throw new Error(`MatMulNBits: weight '${w.tensor}' code ${w.codes[i]} does not fit ${bits} bits around zero point ${zero}`);
    out[Math.floor(i / perByte)] |= u << (bits * (i % perByte));
  }
  return out;
}

/** The initializers of one MatMulNBits weight: B (uint8 [N, blocks, blob]) and scales (float [N, blocks]). */
export interface MatMulNBitsInitializers {
  b: string;
  scales: string;
  bits: 2 | 4 | 8;
}

/** Adds `w`'s B and scales initializers (named after `tag`) to the graph. */
export function matMulNBitsInitializers(em: Emitter, w: BlockedWeightCodes, tag: string): MatMulNBitsInitializers {
  const bits = storageBits(w);
  const blocks = w.k / w.blockSize;
  const b = em.initializer(`${tag}/nbits_${bits}`, new Tensor(DType.UINT8, [w.n, blocks, (w.blockSize * bits) / 8], packMatMulNBits(w, bits)));
  const scales = blockScales(em, `${tag}/nbits_scales`, w.n, blocks, w.scales);
  return { b, scales, bits };
}

/**
 * The [N, blocks] scales input, stored no larger than the quantizer's own parameters. A weight with one scale for
 * the whole tensor (BitNet b1.58's absmean) stores that float once, as ConstantOfShape([N, blocks], value); one
 * scale per output row (per-channel weights cut into blocks) stores [N, 1] and an Expand. ORT's constant folding
 * (level 1, before kernels prepack their constant inputs) turns either into the same [N, blocks] initializer, so
 * MatMulNBits and GatherBlockQuantized run exactly as with stored scales; the file is smaller by one float per
 * block (23 KB of the default gpt's ternary file at block 128).
 */
function blockScales(em: Emitter, name: string, n: number, blocks: number, scales: Float32Array): string {
  const first = scales[0];
  const shape = () => em.initializer(`${name}_shape`, Tensor.int64([2], [n, blocks]));
  if (scales.length > 1 && scales.every((v) => Object.is(v, first))) {
    return em.node('ConstantOfShape', [shape()], { value: new Tensor(DType.FLOAT, [1], Float32Array.of(first)) }, undefined, name);
  }
  const perRow = Float32Array.from({ length: n }, (_, row) => scales[row * blocks]);
  if (blocks > 1 && scales.every((v, i) => Object.is(v, perRow[Math.floor(i / blocks)]))) {
    const rows = em.initializer(`${name}_rows`, new Tensor(DType.FLOAT, [n, 1], perRow));
    return em.node('Expand', [rows, shape()], {}, undefined, name);
  }
  return em.initializer(name, new Tensor(DType.FLOAT, [n, blocks], scales));
}

/**
 * Emits MatMulNBits(x, B, scales) for `w` and returns its output (named `output` when given); `initializers`
 * reuses B and scales already in the graph (a tied table's, shared with its Gather: lm-embeddings.ts).
 */
export function emitMatMulNBits(
  em: Emitter,
  x: string,
  w: BlockedWeightCodes,
  options: { accuracyLevel: 0 | 1 | 4; name: string; output?: string; suffix?: string; initializers?: MatMulNBitsInitializers },
): string {
  const init = options.initializers ?? matMulNBitsInitializers(em, w, `${w.tensor}${options.suffix ?? ''}`);
  const out = em.node('MatMulNBits', [x, init.b, init.scales], { K: w.k, N: w.n, bits: init.bits, block_size: w.blockSize, accuracy_level: options.accuracyLevel }, options.output, options.name);
  em.graph.nodes.at(-1)!.domain = MS_DOMAIN;
  em.graph.opsets[MS_DOMAIN] = 1;
  return out;
}
