/**
 * GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for Generative
 * Pre-trained Transformers", Algorithm 1): quantize a weight W [rows, cols] column by column, each column's
 * rounding error spread over the columns not yet quantized along the inverse Hessian of the layer's
 * reconstruction loss ||X W^T - X Q^T||^2, whose Hessian is H = 2 X^T X (X: the layer's calibration inputs).
 * - Dampening: H + lambda I with lambda = percdamp x mean(diag H) (Section 4, "numerical stability").
 * - The updates read rows of the upper Cholesky factor U of H^-1 (H^-1 = U^T U), which holds exactly the
 *   sequence of inverse Hessians of OBQ's greedy elimination (Section 4, "Cholesky reformulation").
 * - Lazy batches: within a block of `blockSize` columns the updates touch only the block; the rest of W is
 *   updated once per block with one matrix product (Section 4, "lazy batch-updates").
 * - Groups: each group's scale is computed from the current (error-updated) weights when its first column is
 *   reached (Section 5, grouping). With act-order (columns in decreasing diag(H)) the scales of every contiguous
 *   group are computed up front from W ("static groups"), so the result stays a plain per-group grid that
 *   MatMulNBits and our FakeQuantize read, with no column permutation to ship.
 * Columns whose inputs were always zero (diag H = 0) are zeroed, as the reference implementation does.
 */
import { inverseFromCholesky, cholesky, upperCholesky } from './linalg.js';
import { dequantizeCode, gridParams, QuantizedMatrix, quantizeCode, WeightGrid } from './weight-grid.js';

export interface GptqOptions {
  /** Dampening as a fraction of the mean diagonal of H (default 0.01). */
  percdamp?: number;
  /** Columns per lazy batch (default 128). */
  blockSize?: number;
  /** Quantize columns in decreasing order of diag(H) (default false). */
  actOrder?: boolean;
  /** Names the layer in errors. */
  where?: string;
}

/**
 * GPTQ of `weight` [rows, cols] (row-major) with Hessian `hessian` [cols, cols] (row-major, symmetric; its scale
 * does not matter: 2 X^T X, X^T X or a mean all give the same result). Returns codes on `grid`, the
 * dequantized values (float32 numbers) and the scales and zero points per row and group.
 */
export function gptqQuantize(weight: ArrayLike<number>, rows: number, cols: number, hessian: ArrayLike<number>, grid: WeightGrid, options: GptqOptions = {}): QuantizedMatrix {
  const where = options.where ?? 'weight';
  const percdamp = options.percdamp ?? 0.01;
  const block = Math.max(1, options.blockSize ?? 128);
  if (weight.length !== rows * cols) throw new Error(`${where}: GPTQ weight has ${weight.length} values, not ${rows} x ${cols}`);
  if (hessian.length !== cols * cols) throw new Error(`${where}: GPTQ Hessian has ${hessian.length} values, not ${cols} x ${cols}`);
  const groupSize = grid.groupSize;
  const groups = cols / groupSize;

  const w = Float64Array.from(weight);
  const h = Float64Array.from(hessian);
  for (let c = 0; c < cols; c++) {
    if (h[c * cols + c] === 0) {
      h[c * cols + c] = 1;
      for (let r = 0; r < rows; r++) w[r * cols + c] = 0;
    }
  }
  // Scales that do not depend on the order of quantization: per tensor, per row, or (act-order) per static group.
  const scales = new Float32Array(rows * groups);
  const zeros = new Int32Array(rows * groups);
  const setGroup = (r: number, g: number, values: ArrayLike<number>) => {
    const p = gridParams(values, grid);
    scales[r * groups + g] = p.scale;
    zeros[r * groups + g] = p.zero;
  };
  const upFront = grid.perTensor || groups === 1 || options.actOrder;
  if (grid.perTensor) {
    const p = gridParams(w, grid);
    scales.fill(p.scale);
    zeros.fill(p.zero);
  } else if (upFront) {
    for (let r = 0; r < rows; r++) for (let g = 0; g < groups; g++) setGroup(r, g, w.subarray(r * cols + g * groupSize, r * cols + (g + 1) * groupSize));
  }

  // perm[i] = the original column quantized i-th.
  const perm = Array.from({ length: cols }, (_, i) => i);
  if (options.actOrder) perm.sort((a, b) => h[b * cols + b] - h[a * cols + a] || a - b);
  const wp = new Float64Array(rows * cols);
  const hp = new Float64Array(cols * cols);
  for (let r = 0; r < rows; r++) for (let i = 0; i < cols; i++) wp[r * cols + i] = w[r * cols + perm[i]];
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) hp[i * cols + j] = h[perm[i] * cols + perm[j]];
  let diagMean = 0;
  for (let i = 0; i < cols; i++) diagMean += hp[i * cols + i];
  const damp = (percdamp * diagMean) / cols;
  for (let i = 0; i < cols; i++) hp[i * cols + i] += damp;
  const hinv = inverseFromCholesky(cholesky(hp, cols, `${where}: the dampened Hessian`), cols);
  const u = upperCholesky(hinv, cols, `${where}: the inverse Hessian`);

  const codes = new Int32Array(rows * cols);
  const values = new Float64Array(rows * cols);
  const err = new Float64Array(rows * block);
  for (let i1 = 0; i1 < cols; i1 += block) {
    const i2 = Math.min(i1 + block, cols);
    const count = i2 - i1;
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      const orig = perm[col];
      const g = Math.floor(orig / groupSize);
      if (!upFront && orig % groupSize === 0) {
        // Without act-order columns come in order: the group is columns col..col+groupSize-1 as they are now.
        // Columns of the group past this block have not had this block's lazy update yet: apply it here.
        const end = col + groupSize;
        const current = new Float64Array(groupSize);
        for (let r = 0; r < rows; r++) {
          for (let j = col; j < end; j++) {
            let v = wp[r * cols + j];
            if (j >= i2) for (let k = 0; k < i; k++) v -= err[r * block + k] * u[(i1 + k) * cols + j];
            current[j - col] = v;
          }
          setGroup(r, g, current);
        }
      }
      const d = u[col * cols + col];
      for (let r = 0; r < rows; r++) {
        const x = wp[r * cols + col];
        const s = scales[r * groups + g];
        const z = zeros[r * groups + g];
        const q = quantizeCode(x, s, z, grid);
        const v = dequantizeCode(q, s, z);
        codes[r * cols + orig] = q;
        values[r * cols + orig] = v;
        const e = (x - v) / d;
        err[r * block + i] = e;
        // Spread the error over the rest of the block now (Algorithm 1, inner loop).
        const row = r * cols;
        const urow = col * cols;
        for (let j = col + 1; j < i2; j++) wp[row + j] -= e * u[urow + j];
      }
    }
    // The rest of W once per block: W[:, i2:] -= E U[i1:i2, i2:].
    if (i2 < cols) {
      for (let r = 0; r < rows; r++) {
        const row = r * cols;
        for (let i = 0; i < count; i++) {
          const e = err[r * block + i];
          if (e === 0) continue;
          const urow = (i1 + i) * cols;
          for (let j = i2; j < cols; j++) wp[row + j] -= e * u[urow + j];
        }
      }
    }
  }
  return { rows, cols, grid, codes, values, scales, zeros };
}

/** ||X (W - Q)^T||^2 / n through the Gram matrix G = X^T X / n: sum over rows of d^T G d (d = w_row - q_row). */
export function reconstructionError(weight: ArrayLike<number>, quantized: ArrayLike<number>, rows: number, cols: number, gram: ArrayLike<number>): number {
  let total = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = weight[r * cols + c] - quantized[r * cols + c];
    for (let i = 0; i < cols; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      const gi = i * cols;
      for (let j = 0; j < cols; j++) s += gram[gi + j] * d[j];
      total += d[i] * s;
    }
  }
  return total;
}
