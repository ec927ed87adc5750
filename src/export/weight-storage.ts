import { DType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { Emitter } from './emitter.js';
import { WeightCodes } from './weight-codes.js';

/**
 * How an exported weight's integer codes are stored, and the subgraph that turns them into the int8 / int4
 * tensor DequantizeLinear reads. Formats (docs/export-formats.md):
 * - int8: one code per byte (ONNX INT8).
 * - int4: two codes per byte (ONNX INT4, opset 21: element 2i in the low nibble, 2i+1 in the high nibble),
 *   cast to int8 in the graph (folded at load time).
 * - packed: k base-L digits per byte, d = (q - qmin) / step, byte = sum d_j * L^j (ternary: L = 3, k = 5,
 *   since 3^5 = 243 <= 256; binary: L = 2, step 2, k = 8), unpacked at load time with integer Div and Mod.
 */
export type WeightStorage = 'int8' | 'uint8' | 'int4' | 'packed';

export interface PackedLayout {
  /** Levels per code (base of the digits). */
  levels: number;
  /** Codes per byte. */
  perByte: number;
  /** Distance between neighbouring codes (2 for binary {-1, +1} and SEQ's odd codes). */
  step: number;
  qmin: number;
}

/** The packing of a weight's codes, or undefined where they do not fit 16 levels. */
export function packedLayout(w: WeightCodes): PackedLayout | undefined {
  // Binary {-1, +1} and SEQ's odd codes (2q + 1) are every other integer: 2^bits levels, step 2.
  const step = w.method === 'binary' || w.method === 'seq' ? 2 : 1;
  const levels = (w.qmax - w.qmin) / step + 1;
  if (levels > 16) return undefined;
  let perByte = 1;
  while (levels ** (perByte + 1) <= 256) perByte++;
  return { levels, perByte, step, qmin: w.qmin };
}

export function packCodes(codes: Int32Array, layout: PackedLayout): Uint8Array {
  const out = new Uint8Array(Math.ceil(codes.length / layout.perByte));
  for (let i = 0; i < codes.length; i++) {
    const d = (codes[i] - layout.qmin) / layout.step;
    if (!Number.isInteger(d) || d < 0 || d >= layout.levels) throw new Error(`packCodes: code ${codes[i]} at ${i} is not one of the ${layout.levels} levels from ${layout.qmin} by ${layout.step}`);
    out[Math.floor(i / layout.perByte)] += d * layout.levels ** (i % layout.perByte);
  }
  return out;
}

/** The inverse of packCodes, in TypeScript (the graph does the same with Div / Mod). */
export function unpackCodes(bytes: Uint8Array, count: number, layout: PackedLayout): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const d = Math.floor(bytes[Math.floor(i / layout.perByte)] / layout.levels ** (i % layout.perByte)) % layout.levels;
    out[i] = d * layout.step + layout.qmin;
  }
  return out;
}

/** ONNX INT4 packing: two's complement nibbles, low nibble first. */
export function packInt4(codes: Int32Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) {
    if (codes[i] < -8 || codes[i] > 7) throw new Error(`packInt4: code ${codes[i]} at ${i} is outside int4 [-8, 7]`);
    out[i >> 1] |= (codes[i] & 0xf) << (4 * (i & 1));
  }
  return out;
}

/** Dims of a weight's scale and zero point: [] per tensor, [C] per channel, blocked per group (WeightCodes.scaleDims). */
export const scaleDimsOf = (w: WeightCodes): number[] => w.scaleDims ?? (w.axis === undefined ? [] : [w.scale.length]);

export function fitsInt4(w: WeightCodes): boolean {
  return w.qmin >= -8 && w.qmax <= 7 && w.zeroPoint.every((z) => z >= -8 && z <= 7);
}

/**
 * Emits the weight's codes in `storage` and returns [quantized value, zero point] names for DequantizeLinear
 * (int8 or int4 tensors of the weight's dims).
 */
export function emitWeightCodes(em: Emitter, w: WeightCodes, storage: WeightStorage): { codes: string; zeroPoint: string } {
  const zdims = scaleDimsOf(w);
  if (storage === 'int4') {
    // Stored as INT4, widened to int8 by a Cast of the initializer that ORT constant-folds when the session is
    // created: ORT 1.30 fuses QLinearConv / QGemm only for 8-bit weights, and ran a DequantizeLinear of INT4 weights
    // as a float layer (the LeNet w4a4 int4 file took 2.6x the qdq file's time). Codes in [-8, 7] cannot saturate
    // the u8s8 kernels' int16 pair sums (2 x 255 x 8), so int8 is exact on every CPU.
    const packed = em.initializer(`${w.tensor}/int4`, new Tensor(DType.INT4, w.dims, packInt4(w.codes)));
    const codes = em.node('Cast', [packed], { to: DType.INT8 }, undefined, `${w.tensor}/widen_int4`);
    const zeroPoint = em.initializer(`${w.tensor}/zero_point`, new Tensor(DType.INT8, zdims, Int8Array.from(w.zeroPoint)));
    return { codes, zeroPoint };
  }
  if (storage === 'uint8') {
    // Codes shifted by 128 (zero point too): the same values, for kernels that want unsigned weights.
    const codes = em.initializer(`${w.tensor}/uint8`, new Tensor(DType.UINT8, w.dims, Uint8Array.from(w.codes, (q) => q + 128)));
    const zeroPoint = em.initializer(`${w.tensor}/zero_point`, new Tensor(DType.UINT8, zdims, Uint8Array.from(w.zeroPoint, (z) => z + 128)));
    return { codes, zeroPoint };
  }
  const zeroPoint = em.initializer(`${w.tensor}/zero_point`, new Tensor(DType.INT8, zdims, Int8Array.from(w.zeroPoint)));
  const layout = storage === 'packed' ? packedLayout(w) : undefined;
  if (!layout || layout.perByte < 2) {
    return { codes: em.initializer(`${w.tensor}/int8`, new Tensor(DType.INT8, w.dims, Int8Array.from(w.codes))), zeroPoint };
  }
  const bytes = packCodes(w.codes, layout);
  const n = w.codes.length;
  const int32 = (base: string, dims: number[], v: number[]) => em.initializer(`${w.tensor}/${base}`, new Tensor(DType.INT32, dims, Int32Array.from(v)));
  const int64 = (base: string, v: number[]) => em.initializer(`${w.tensor}/${base}`, Tensor.int64([v.length], v));
  const packed = em.initializer(`${w.tensor}/packed`, new Tensor(DType.UINT8, [bytes.length], bytes));
  const p = `${w.tensor}/unpack`;
  const wide = em.node('Cast', [packed], { to: DType.INT32 }, undefined, `${p}/cast`);
  const column = em.node('Unsqueeze', [wide, int64('unpack_axes', [1])], {}, undefined, `${p}/unsqueeze`);
  const powers = Array.from({ length: layout.perByte }, (_, j) => layout.levels ** j);
  const shifted = em.node('Div', [column, int32('unpack_powers', [1, layout.perByte], powers)], {}, undefined, `${p}/div`);
  const digits = em.node('Mod', [shifted, int32('unpack_levels', [], [layout.levels])], {}, undefined, `${p}/mod`);
  const flat = em.node('Reshape', [digits, int64('unpack_flat', [-1])], {}, undefined, `${p}/flatten`);
  let q = em.node('Slice', [flat, int64('unpack_start', [0]), int64('unpack_end', [n]), int64('unpack_axis', [0])], {}, undefined, `${p}/slice`);
  if (layout.step !== 1) q = em.node('Mul', [q, int32('unpack_step', [], [layout.step])], {}, undefined, `${p}/step`);
  if (layout.qmin !== 0) q = em.node('Add', [q, int32('unpack_qmin', [], [layout.qmin])], {}, undefined, `${p}/offset`);
  const narrow = em.node('Cast', [q], { to: DType.INT8 }, undefined, `${p}/to_int8`);
  const codes = em.node('Reshape', [narrow, int64('unpack_dims', w.dims)], {}, undefined, `${p}/reshape`);
  return { codes, zeroPoint };
}
