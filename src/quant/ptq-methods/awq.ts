/**
 * AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression
 * and Acceleration"), the numeric part: the per-input-channel scale search (Section 3.2) and the weight clipping
 * search of the reference implementation (llm-awq `auto_scale` / `auto_clip`). Both measure the layer's output
 * error ||X W^T - X Q^T||^2 / n through the Gram matrix G = X^T X / n of its calibration inputs, which is the
 * reference's mean squared output error on the same samples.
 */
import { reconstructionError } from './gptq.js';
import { gridParams, QuantizedMatrix, roundToNearest, WeightGrid, dequantizeCode, quantizeCode } from './weight-grid.js';

/** The reference's grid: alpha = i / 20 for i = 0..19 (alpha 0 is s = 1: plain round-to-nearest). */
export const AWQ_ALPHAS: readonly number[] = Array.from({ length: 20 }, (_, i) => i / 20);
/** Clipping ratios of max|w| per group: 1 - i / 20 for i = 0..9 (the reference's max_shrink 0.5, n_grid 20). */
export const AWQ_CLIP_RATIOS: readonly number[] = Array.from({ length: 10 }, (_, i) => 1 - i / 20);

/** A weight of the scaled group: [rows, cols] row-major, cols = the group's input channels. */
export interface GroupWeight {
  w: Float64Array;
  rows: number;
  cols: number;
  grid: WeightGrid;
}

/** s = mean|x|^alpha (clamped at 1e-4), normalised by sqrt(max s * min s) as the reference does. */
export function awqScales(meanAbs: ArrayLike<number>, alpha: number): Float64Array {
  const s = Float64Array.from(meanAbs, (m) => Math.max(Math.pow(m, alpha), 1e-4));
  let [lo, hi] = [Infinity, 0];
  for (const v of s) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const norm = Math.sqrt(lo * hi);
  return s.map((v) => v / norm);
}

/**
 * The effective float weight of round-to-nearest after scaling: Q(W diag(s)) diag(1/s), with the scaled weight
 * rounded to float32 as the folded model stores it.
 */
export function scaledRoundToNearest(g: GroupWeight, s: ArrayLike<number>, clip?: (row: number, group: number) => number): { scaled: QuantizedMatrix; effective: Float64Array } {
  const ws = new Float64Array(g.w.length);
  for (let r = 0; r < g.rows; r++) for (let c = 0; c < g.cols; c++) ws[r * g.cols + c] = Math.fround(g.w[r * g.cols + c] * s[c]);
  const scaled = roundToNearest(ws, g.rows, g.cols, g.grid, clip);
  const effective = Float64Array.from(scaled.values, (v, i) => v / s[i % g.cols]);
  return { scaled, effective };
}

/**
 * The scale search: the alpha of AWQ_ALPHAS whose scales give the least summed output error over the group's
 * weights (every Linear reading the activation shares one s, since s is folded into the activation's producer).
 * `errors[i]` is the error at AWQ_ALPHAS[i]; errors[0] is round-to-nearest's.
 */
export function searchAwqScale(weights: GroupWeight[], gram: Float64Array, meanAbs: ArrayLike<number>): { alpha: number; s: Float64Array; errors: number[] } {
  const errors = AWQ_ALPHAS.map((alpha) => {
    const s = awqScales(meanAbs, alpha);
    return weights.reduce((sum, g) => sum + reconstructionError(g.w, scaledRoundToNearest(g, s).effective, g.rows, g.cols, gram), 0);
  });
  let best = 0;
  errors.forEach((e, i) => {
    if (e < errors[best]) best = i;
  });
  return { alpha: AWQ_ALPHAS[best], s: awqScales(meanAbs, AWQ_ALPHAS[best]), errors };
}

/**
 * The clipping search on a (scaled) weight: per row and group, the ratio of AWQ_CLIP_RATIOS with the least output
 * error of that group's columns (d_g^T G_gg d_g, the block of G on the group's channels, as the reference
 * measures each group on its own input slice). The cross terms between groups are not in that measure, so the
 * clipped result is kept only if the whole layer's output error is not above round-to-nearest's.
 */
export function searchClipping(w: Float64Array, rows: number, cols: number, grid: WeightGrid, gram: Float64Array): { result: QuantizedMatrix; clipped: boolean; error: number; rtnError: number } {
  const gs = grid.groupSize;
  const groups = cols / gs;
  const ratios = new Float64Array(rows * groups).fill(1);
  if (!grid.perTensor) {
    const d = new Float64Array(gs);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < groups; g++) {
        const start = r * cols + g * gs;
        const values = w.subarray(start, start + gs);
        let bestErr = Infinity;
        for (const ratio of AWQ_CLIP_RATIOS) {
          const p = gridParams(values, grid, ratio);
          for (let i = 0; i < gs; i++) d[i] = values[i] - dequantizeCode(quantizeCode(values[i], p.scale, p.zero, grid), p.scale, p.zero);
          let e = 0;
          for (let i = 0; i < gs; i++) {
            if (d[i] === 0) continue;
            const row = (g * gs + i) * cols + g * gs;
            let t = 0;
            for (let j = 0; j < gs; j++) t += gram[row + j] * d[j];
            e += d[i] * t;
          }
          if (e < bestErr * (1 - 1e-12)) [bestErr, ratios[r * groups + g]] = [e, ratio];
        }
      }
    }
  }
  const rtn = roundToNearest(w, rows, cols, grid);
  const rtnError = reconstructionError(w, rtn.values, rows, cols, gram);
  const clippedResult = roundToNearest(w, rows, cols, grid, (r, g) => ratios[r * groups + g]);
  const error = reconstructionError(w, clippedResult.values, rows, cols, gram);
  return error < rtnError ? { result: clippedResult, clipped: true, error, rtnError } : { result: rtn, clipped: false, error: rtnError, rtnError };
}

/** diag(1/s) G diag(1/s): the Gram matrix of the inputs X diag(1/s) a scaled group's layers read. */
export function scaledGram(gram: Float64Array, s: ArrayLike<number>): Float64Array {
  const c = s.length;
  return Float64Array.from(gram, (v, i) => v / (s[Math.floor(i / c)] * s[i % c]));
}
