/**
 * Range observers for post-training calibration and QAT initialisation: feed batches of one tensor, read
 * the [min, max] to quantize with (turn it into scale / zero point with qparamsFromRange in ../spec).
 */
import type { QuantSpec } from '../spec.js';
import { KlObserver } from './kl.js';
import { MinMaxObserver } from './minmax.js';
import { MovingAverageObserver } from './moving-average.js';
import { MseObserver } from './mse.js';
import { type ObserverOptions, type ResolvedObserverOptions, validateObserverOptions } from './options.js';
import { PercentileObserver } from './percentile.js';
import { PerChannelObserver } from './per-channel.js';
import type { ObservedRange, ObserverKind, RangeObserver } from './types.js';

export * from './types.js';
export type { ObserverOptions } from './options.js';
export { validateObserverOptions, DEFAULT_BINS, DEFAULT_MOMENTUM, DEFAULT_PERCENTILE } from './options.js';
export { MinMaxObserver } from './minmax.js';
export { MovingAverageObserver } from './moving-average.js';
export { PercentileObserver } from './percentile.js';
export { MseObserver, MSE_CLIP_RATIOS, MSE_SAMPLE_SIZE, clippedRange, quantizationMse } from './mse.js';
export { KlObserver, klDivergences, klLevels, klThresholdBins } from './kl.js';
export { PerChannelObserver } from './per-channel.js';
export { GrowingHistogram } from './histogram.js';

function createTensorObserver(kind: ObserverKind, o: ResolvedObserverOptions): RangeObserver {
  switch (kind) {
    case 'minmax':
      return new MinMaxObserver();
    case 'moving-average':
      return new MovingAverageObserver(o.momentum);
    case 'percentile':
      return new PercentileObserver(o.spec, o.percentile, o.bins);
    case 'mse':
      return new MseObserver(o.spec);
    case 'kl':
      return new KlObserver(o.spec, o.bins);
  }
}

/**
 * An observer of the given kind. Options are checked up front (the error names the option and its valid
 * values); per-channel when `perChannelAxis` is set or the spec is per-channel.
 */
export function createObserver(kind: ObserverKind, options: ObserverOptions): RangeObserver {
  const resolved = validateObserverOptions(kind, options);
  const axis = resolved.perChannelAxis;
  if (axis === undefined) return createTensorObserver(kind, resolved);
  return new PerChannelObserver(axis, () => createTensorObserver(kind, resolved), `${kind} observer`);
}

/** A batch with its shape, needed for per-channel calibration. */
export interface ShapedBatch {
  values: Float32Array;
  shape: number[];
}

/** Feeds every batch to a fresh observer and returns its range. */
export function calibrateRange(
  kind: ObserverKind,
  batches: Array<Float32Array | ShapedBatch>,
  spec: QuantSpec,
  options: Omit<ObserverOptions, 'spec'> = {},
): ObservedRange {
  const observer = createObserver(kind, { ...options, spec });
  for (const batch of batches) {
    if (batch instanceof Float32Array) observer.observe(batch);
    else observer.observe(batch.values, batch.shape);
  }
  return observer.range();
}
