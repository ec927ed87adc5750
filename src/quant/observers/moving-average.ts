import { batchMinMax, checkBatch, noDataError } from './batch.js';
import { RangeObserver, TensorRange } from './types.js';

/**
 * Exponential moving average of each batch's min and max (torch MovingAverageMinMaxObserver): the first
 * batch sets the range, later ones move it by min += c * (batch_min - min), max likewise, with c the
 * averaging constant. Used for activations during QAT, where one outlier batch should not widen the range
 * for good.
 */
export class MovingAverageObserver implements RangeObserver {
  private min = NaN;
  private max = NaN;

  constructor(private readonly momentum: number) {}

  observe(values: Float32Array, shape?: number[]): void {
    checkBatch(values, shape, 'moving-average observer');
    if (values.length === 0) return;
    const b = batchMinMax(values);
    if (Number.isNaN(this.min)) {
      this.min = b.min;
      this.max = b.max;
      return;
    }
    this.min += this.momentum * (b.min - this.min);
    this.max += this.momentum * (b.max - this.max);
  }

  range(): TensorRange {
    if (Number.isNaN(this.min)) throw noDataError('moving-average');
    return { min: this.min, max: this.max };
  }
}
