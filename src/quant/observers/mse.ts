import { Rng } from '../../train/rng.js';
import { QuantSpec, fakeQuantizeValue, qparamsFromRange, quantRange } from '../spec.js';
import { batchMinMax, checkBatch, noDataError } from './batch.js';
import { RangeObserver, TensorRange } from './types.js';

/**
 * Candidate clipping ratios of the observed range: 1.00 down to 0.01 in steps of 0.01 (as k / 100, so 0.5 is
 * exact). Below 0.3 matters: one outlier at 15 sigma puts the 4-bit optimum for a Gaussian (~2.5 sigma,
 * Banner et al. 2019) near 0.17 of max.
 */
export const MSE_CLIP_RATIOS: readonly number[] = Array.from({ length: 100 }, (_, k) => (100 - k) / 100);

/** Values kept for the error search: bounds memory and makes the search cost 100 * 65536 fake-quantizations at most. */
export const MSE_SAMPLE_SIZE = 65536;

/** The range a clipping ratio r gives: [-r M, r M] (signed symmetric), [0, r max] (unsigned symmetric), r [min, max] (asymmetric, 0 included). */
export function clippedRange(ratio: number, observed: TensorRange, spec: Pick<QuantSpec, 'signed' | 'symmetric'>): TensorRange {
  const lo = Math.min(observed.min, 0);
  const hi = Math.max(observed.max, 0);
  if (spec.symmetric && spec.signed) {
    const m = Math.max(-lo, hi);
    return { min: -ratio * m, max: ratio * m };
  }
  if (spec.symmetric) return { min: 0, max: ratio * hi };
  return { min: ratio * lo, max: ratio * hi };
}

/** Mean squared error of fake-quantizing `values` with the scale and zero point the range gives. */
export function quantizationMse(values: Float32Array, range: TensorRange, spec: QuantSpec): number {
  const { scale, zeroPoint } = qparamsFromRange(range.min, range.max, spec);
  const { qmin, qmax } = quantRange(spec);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const d = values[i] - fakeQuantizeValue(values[i], scale, zeroPoint, qmin, qmax);
    sum += d * d;
  }
  return values.length === 0 ? 0 : sum / values.length;
}

/**
 * Picks the clipping range with the smallest mean squared quantization error (the MSE calibration of
 * NVIDIA's pytorch-quantization and of Banner et al. 2019, searched on a grid of ratios of the observed
 * range; min and max scale together for asymmetric specs).
 *
 * The error is evaluated on a uniform reservoir sample (Vitter's algorithm R, seeded, so results are
 * deterministic) of up to MSE_SAMPLE_SIZE values rather than on a histogram: with exact values,
 * fakeQuantizeValue's rounding is computed exactly, while histogram bin centres sit at fixed offsets from
 * the quantization grid whenever a step spans only a few bins (8 bits over 2048 bins: 8 bins per step), which
 * biases the rounding error. The sample mean is an unbiased estimate of the error over all values; the
 * candidate ratios apply to the exact running min/max, so a rare outlier still sets the ratio scale.
 */
export class MseObserver implements RangeObserver {
  private readonly sample = new Float32Array(MSE_SAMPLE_SIZE);
  private seen = 0;
  private readonly rng = new Rng(0);
  private min = Infinity;
  private max = -Infinity;

  constructor(private readonly spec: QuantSpec) {}

  observe(values: Float32Array, shape?: number[]): void {
    checkBatch(values, shape, 'mse observer');
    if (values.length === 0) return;
    const b = batchMinMax(values);
    this.min = Math.min(this.min, b.min);
    this.max = Math.max(this.max, b.max);
    for (let i = 0; i < values.length; i++, this.seen++) {
      if (this.seen < MSE_SAMPLE_SIZE) {
        this.sample[this.seen] = values[i];
      } else {
        const j = this.rng.int(this.seen + 1);
        if (j < MSE_SAMPLE_SIZE) this.sample[j] = values[i];
      }
    }
  }

  range(): TensorRange {
    if (this.seen === 0) throw noDataError('mse');
    const sample = this.sample.subarray(0, Math.min(this.seen, MSE_SAMPLE_SIZE));
    const observed = { min: this.min, max: this.max };
    // Ratios run from 1.0 down and only a strictly smaller error wins, so ties keep the wider range.
    let best = clippedRange(1, observed, this.spec);
    let bestError = quantizationMse(sample, best, this.spec);
    for (const ratio of MSE_CLIP_RATIOS.slice(1)) {
      const candidate = clippedRange(ratio, observed, this.spec);
      const error = quantizationMse(sample, candidate, this.spec);
      if (error < bestError) {
        best = candidate;
        bestError = error;
      }
    }
    return best;
  }
}
