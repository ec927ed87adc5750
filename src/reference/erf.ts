/**
 * erf(x) to float64 accuracy. For |x| < 6 the series erf(x) = 2/sqrt(pi) · exp(-x²) · Σ (2x²)^n x / (1·3···(2n+1))
 * (Abramowitz & Stegun 7.1.6) has only positive terms, so it loses no precision to cancellation; beyond 6,
 * erf(x) rounds to ±1 in float64.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  const twoX2 = 2 * a * a;
  let term = a;
  let sum = a;
  for (let n = 1; n < 500 && term > sum * 1e-17; n++) {
    term *= twoX2 / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * Math.min(1, (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum);
}
