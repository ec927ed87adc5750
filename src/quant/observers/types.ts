/** Shared types of the range observers (post-training calibration and QAT initialisation). */

export const OBSERVER_KINDS = ['minmax', 'moving-average', 'percentile', 'mse', 'kl'] as const;
export type ObserverKind = (typeof OBSERVER_KINDS)[number];

export interface TensorRange {
  min: number;
  max: number;
}

/** One [min, max] per channel along the observer's axis. */
export interface ChannelRange {
  min: Float32Array;
  max: Float32Array;
}

export type ObservedRange = TensorRange | ChannelRange;

export interface RangeObserver {
  /**
   * Feeds one batch of values of one tensor. Per-tensor observers ignore the layout (`shape`, when given, must
   * match the length); per-channel observers need `shape` and split it along their axis, e.g. [N, C, ...inner]
   * with axis 1: channel c of sample n is values[(n*C + c)*inner ... (n*C + c + 1)*inner).
   */
  observe(values: Float32Array, shape?: number[]): void;
  /** The range to quantize with: numbers per tensor, arrays per channel. Throws before any value was observed. */
  range(): ObservedRange;
}

/** Bad observer options or input: the message names the option (or batch) and the valid values. */
export class ObserverError extends Error {}

export function isChannelRange(r: ObservedRange): r is ChannelRange {
  return r.min instanceof Float32Array;
}
