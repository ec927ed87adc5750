import { batchMinMax, checkBatch, noDataError } from './batch.js';
import { RangeObserver, TensorRange } from './types.js';

/** Running min and max over every batch (torch MinMaxObserver; per channel through PerChannelObserver). */
export class MinMaxObserver implements RangeObserver {
  private min = Infinity;
  private max = -Infinity;

  observe(values: Float32Array, shape?: number[]): void {
    checkBatch(values, shape, 'minmax observer');
    if (values.length === 0) return;
    const b = batchMinMax(values);
    this.min = Math.min(this.min, b.min);
    this.max = Math.max(this.max, b.max);
  }

  range(): TensorRange {
    if (this.min > this.max) throw noDataError('minmax');
    return { min: this.min, max: this.max };
  }
}
