import { QuantSpec } from '../spec.js';
import { batchMinMax, checkBatch, noDataError } from './batch.js';
import { GrowingHistogram } from './histogram.js';
import { RangeObserver, TensorRange } from './types.js';

/**
 * Percentile calibration from a histogram (ORT calibrate.py 'Percentile', TensorRT's percentile calibrator):
 * the range drops the rarest (100 - p)% of values on each side so that a few outliers do not stretch the
 * scale.
 * - signed symmetric specs: T = p-th percentile of |x|, range [-T, T];
 * - unsigned symmetric specs (e.g. after ReLU): T = p-th percentile of max(x, 0), range [0, T];
 * - asymmetric specs: [(100 - p)-th, p-th] percentiles of x (np.percentile(x, [100 - p, p])).
 * Percentiles interpolate linearly inside the bin and are clamped to the observed min/max.
 */
export class PercentileObserver implements RangeObserver {
  private readonly histogram: GrowingHistogram;
  private min = Infinity;
  private max = -Infinity;

  constructor(
    private readonly spec: QuantSpec,
    private readonly percentile: number,
    bins: number,
  ) {
    const side = spec.symmetric ? (spec.signed ? 'abs' : 'positive') : 'signed';
    this.histogram = new GrowingHistogram(bins, side);
  }

  observe(values: Float32Array, shape?: number[]): void {
    checkBatch(values, shape, 'percentile observer');
    if (values.length === 0) return;
    const b = batchMinMax(values);
    this.min = Math.min(this.min, b.min);
    this.max = Math.max(this.max, b.max);
    this.histogram.add(values);
  }

  range(): TensorRange {
    if (this.min > this.max) throw noDataError('percentile');
    const q = this.percentile / 100;
    const h = this.histogram;
    if (h.side === 'abs') {
      const t = Math.min(h.quantile(q), Math.max(-this.min, this.max));
      return { min: -t, max: t };
    }
    if (h.side === 'positive') return { min: 0, max: Math.min(h.quantile(q), Math.max(this.max, 0)) };
    return { min: Math.max(h.quantile(1 - q), this.min), max: Math.min(h.quantile(q), this.max) };
  }
}
