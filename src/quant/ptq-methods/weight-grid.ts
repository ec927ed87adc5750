import { QuantSpec, quantRange, roundHalfEven } from '../spec.js';

/**
 * The integer grid of one weight quantizer, seen as a matrix of `rows` output features by `cols` input features
 * (GPTQ's orientation): one scale (and zero point) per row and per group of `groupSize` consecutive columns
 * (per-channel: one group of all columns), or one for the whole matrix (per-tensor).
 */
export interface WeightGrid {
  qmin: number;
  qmax: number;
  symmetric: boolean;
  groupSize: number;
  perTensor: boolean;
}

/** The grid of a FakeQuantize weight spec for a weight with `cols` input features. */
export function weightGrid(spec: QuantSpec, cols: number, where: string): WeightGrid {
  if (spec.method === 'binary' || spec.method === 'ternary') {
    throw new Error(`${where}: ${spec.method} weights have no uniform grid with per-group scales; GPTQ/AWQ need FakeQuantize weights (bits 2..8)`);
  }
  const { qmin, qmax } = quantRange(spec);
  const g = spec.granularity;
  const groupSize = g.kind === 'per-group' ? g.size : cols;
  if (cols % groupSize !== 0) throw new Error(`${where}: ${cols} input features are not divisible by the group size ${groupSize}`);
  return { qmin, qmax, symmetric: spec.symmetric, groupSize, perTensor: g.kind === 'per-tensor' };
}

const TINY = Math.fround(1e-8);

/**
 * Scale and zero point of values on `grid`, computed as the in-graph RTN quantizer does in float32
 * (prepare.ts: symmetric s = max(max|w| / qmax, 1e-8), zero 0), so a scale from here on unchanged weights is
 * bit for bit the RTN scale. `clip` < 1 shrinks the range (AWQ's clipping search). Asymmetric: the DESIGN
 * numerics contract (range widened to include 0, Z = round(qmin - min / S)).
 */
export function gridParams(values: ArrayLike<number>, grid: WeightGrid, clip = 1): { scale: number; zero: number } {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  lo *= clip;
  hi *= clip;
  if (grid.symmetric) {
    const absMax = Math.fround(Math.max(-lo, hi));
    return { scale: Math.max(Math.fround(absMax / grid.qmax), TINY), zero: 0 };
  }
  const span = Math.fround(hi - lo);
  if (span <= 1e-12) return { scale: 1, zero: Math.min(grid.qmax, Math.max(grid.qmin, 0)) };
  const scale = Math.fround(span / (grid.qmax - grid.qmin));
  return { scale, zero: Math.min(grid.qmax, Math.max(grid.qmin, roundHalfEven(grid.qmin - Math.fround(lo / scale)))) };
}

/** The integer code of w: clip(round_half_even(fround(w / s)) + z, qmin, qmax), FakeQuantize's float32 arithmetic. */
export function quantizeCode(w: number, scale: number, zero: number, grid: WeightGrid): number {
  return Math.min(grid.qmax, Math.max(grid.qmin, roundHalfEven(Math.fround(w / scale)) + zero));
}

/** The float32 value a code stands for: fround((q - z) * s). */
export function dequantizeCode(q: number, scale: number, zero: number): number {
  return Math.fround((q - zero) * scale);
}

/** A quantized matrix: codes and dequantized values [rows, cols], scales and zero points [rows, cols / groupSize]. */
export interface QuantizedMatrix {
  rows: number;
  cols: number;
  grid: WeightGrid;
  codes: Int32Array;
  values: Float64Array;
  scales: Float32Array;
  zeros: Int32Array;
}

/** Round-to-nearest of a [rows, cols] matrix on `grid` with min/max scales (clip 1), or the given clip per scale. */
export function roundToNearest(w: ArrayLike<number>, rows: number, cols: number, grid: WeightGrid, clip?: (row: number, group: number) => number): QuantizedMatrix {
  const groups = cols / grid.groupSize;
  const out: QuantizedMatrix = {
    rows, cols, grid,
    codes: new Int32Array(rows * cols),
    values: new Float64Array(rows * cols),
    scales: new Float32Array(rows * groups),
    zeros: new Int32Array(rows * groups),
  };
  const whole = grid.perTensor ? gridParams(w, grid, clip?.(0, 0) ?? 1) : undefined;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * grid.groupSize;
      const p = whole ?? gridParams(sliceOf(w, start, start + grid.groupSize), grid, clip?.(r, g) ?? 1);
      out.scales[r * groups + g] = p.scale;
      out.zeros[r * groups + g] = p.zero;
      for (let c = start; c < start + grid.groupSize; c++) {
        const q = quantizeCode(w[c], p.scale, p.zero, grid);
        out.codes[c] = q;
        out.values[c] = dequantizeCode(q, p.scale, p.zero);
      }
    }
  }
  return out;
}

function sliceOf(w: ArrayLike<number>, start: number, end: number): ArrayLike<number> {
  return ArrayBuffer.isView(w) ? (w as unknown as Float64Array).subarray(start, end) : Array.prototype.slice.call(w, start, end);
}

/** Codes of a [rows, cols] matrix on `grid` at given scales and zero points per row and group (a QAT model's scales). */
export function quantizeAtScales(w: ArrayLike<number>, rows: number, cols: number, grid: WeightGrid, scales: ArrayLike<number>, zeros: ArrayLike<number>): QuantizedMatrix {
  const groups = cols / grid.groupSize;
  const out: QuantizedMatrix = { rows, cols, grid, codes: new Int32Array(rows * cols), values: new Float64Array(rows * cols), scales: Float32Array.from(scales), zeros: Int32Array.from(zeros) };
  if (out.scales.length !== rows * groups || out.zeros.length !== rows * groups) throw new Error(`quantizeAtScales: ${rows} x ${groups} scales and zero points needed, got ${out.scales.length} and ${out.zeros.length}`);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = r * groups + Math.floor(c / grid.groupSize);
      const q = quantizeCode(w[r * cols + c], out.scales[g], out.zeros[g], grid);
      out.codes[r * cols + c] = q;
      out.values[r * cols + c] = dequantizeCode(q, out.scales[g], out.zeros[g]);
    }
  }
  return out;
}
