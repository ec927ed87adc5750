/**
 * Dense symmetric positive-definite algebra in float64 for the PTQ methods (matrices row-major, n x n): the
 * Cholesky factor, the inverse through it, and the upper factor of the inverse that GPTQ's column updates read.
 */

/** Lower-triangular L with A = L L^T; throws naming `what` if A is not positive definite. */
export function cholesky(a: Float64Array, n: number, what = 'matrix'): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= l[j * n + k] * l[j * n + k];
    if (!(d > 0)) throw new Error(`${what} is not positive definite (pivot ${j}: ${d}); more calibration data or a larger dampening is needed`);
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** A^-1 from A's Cholesky factor L: (L L^T)^-1 = L^-T L^-1. */
export function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  // M = L^-1 (lower), by forward substitution column by column.
  const m = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = c; k < i; k++) s -= l[i * n + k] * m[k * n + c];
      m[i * n + c] = s / l[i * n + i];
    }
  }
  // A^-1 = M^T M.
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = j; k < n; k++) s += m[k * n + i] * m[k * n + j];
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  return inv;
}

/** Upper-triangular U with A = U^T U (the transpose of A's lower Cholesky factor). */
export function upperCholesky(a: Float64Array, n: number, what = 'matrix'): Float64Array {
  const l = cholesky(a, n, what);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) u[j * n + i] = l[i * n + j];
  return u;
}
