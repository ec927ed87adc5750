import { checkBatch, noDataError } from './batch.js';
import { ChannelRange, ObserverError, RangeObserver, TensorRange } from './types.js';

/**
 * One per-tensor observer per channel along `axis` (torch PerChannelMinMaxObserver for 'minmax'; the same
 * split works for every kind). Each batch is cut into channel slices: for shape [...outer, C, ...inner],
 * channel c gathers values[(o*C + c)*inner ... + inner) for every outer index o.
 */
export class PerChannelObserver implements RangeObserver {
  private channels: RangeObserver[] | undefined;

  constructor(
    private readonly axis: number,
    private readonly makeChannelObserver: () => RangeObserver,
    private readonly where: string,
  ) {}

  observe(values: Float32Array, shape?: number[]): void {
    if (shape === undefined) throw new ObserverError(`${this.where}: per-channel (axis ${this.axis}) observe() needs the batch shape`);
    checkBatch(values, shape, this.where);
    const axis = this.axis < 0 ? this.axis + shape.length : this.axis;
    if (axis < 0 || axis >= shape.length) {
      throw new ObserverError(`${this.where}: perChannelAxis = ${this.axis} is invalid for shape ${JSON.stringify(shape)}; valid: ${-shape.length}..${shape.length - 1}`);
    }
    const count = shape[axis];
    const outer = shape.slice(0, axis).reduce((a, d) => a * d, 1);
    const inner = shape.slice(axis + 1).reduce((a, d) => a * d, 1);
    if (!this.channels) this.channels = Array.from({ length: count }, () => this.makeChannelObserver());
    if (this.channels.length !== count) {
      throw new ObserverError(`${this.where}: batch shape ${JSON.stringify(shape)} has ${count} channels along axis ${axis}; earlier batches had ${this.channels.length}`);
    }
    for (let c = 0; c < count; c++) {
      const slice = new Float32Array(outer * inner);
      for (let o = 0; o < outer; o++) {
        const start = (o * count + c) * inner;
        slice.set(values.subarray(start, start + inner), o * inner);
      }
      this.channels[c].observe(slice);
    }
  }

  range(): ChannelRange {
    if (!this.channels) throw noDataError(this.where.replace(/ observer$/, ''));
    const min = new Float32Array(this.channels.length);
    const max = new Float32Array(this.channels.length);
    this.channels.forEach((channel, c) => {
      const r = channel.range() as TensorRange;
      min[c] = r.min;
      max[c] = r.max;
    });
    return { min, max };
  }
}
