/**
 * SmoothQuant (Xiao, Lin, Seznec, Wu, Demouth, Han 2022, "SmoothQuant: Accurate and Efficient Post-Training
 * Quantization for Large Language Models", Section 4, Eq. 4): per input channel j,
 * s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) with the migration strength alpha = 0.5, then X diag(1/s) and
 * diag(s) W: the activation outliers a per-token int8 grid would spend its range on move into the weights, which
 * per-channel int8 absorbs. max|W_j| is over every Linear reading X (they share one s). Channels that never fire
 * (max|X_j| = 0) or whose weights are all zero keep s_j = 1; the reference's clamp at 1e-5 guards the rest.
 */
export const SMOOTHQUANT_ALPHA = 0.5;

export function smoothQuantScales(maxAbsX: ArrayLike<number>, maxAbsW: ArrayLike<number>, alpha = SMOOTHQUANT_ALPHA): Float64Array {
  return Float64Array.from(maxAbsX, (x, j) => {
    const w = maxAbsW[j];
    if (!(x > 0) || !(w > 0)) return 1;
    return Math.max(Math.pow(Math.max(x, 1e-5), alpha) / Math.pow(Math.max(w, 1e-5), 1 - alpha), 1e-5);
  });
}

/** max over rows of |W[r, j]| for [rows, cols] weights, taken over all of them. */
export function weightColumnMaxima(weights: { w: ArrayLike<number>; rows: number; cols: number }[], cols: number): Float64Array {
  const m = new Float64Array(cols);
  for (const { w, rows } of weights) for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m[c] = Math.max(m[c], Math.abs(w[r * cols + c]));
  return m;
}
