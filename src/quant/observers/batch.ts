import { ObserverError } from './types.js';

/**
 * Checks one batch before it reaches an observer: a NaN or infinity would silently poison min/max or a
 * histogram, so calibration stops at the first one and says where it is.
 */
export function checkBatch(values: Float32Array, shape: number[] | undefined, where: string): void {
  if (!(values instanceof Float32Array)) throw new ObserverError(`${where}: values must be a Float32Array`);
  if (shape !== undefined) {
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new ObserverError(`${where}: shape ${JSON.stringify(shape)} is invalid; valid: an array of integers >= 0`);
    }
    const size = shape.reduce((a, d) => a * d, 1);
    if (size !== values.length) {
      throw new ObserverError(`${where}: shape ${JSON.stringify(shape)} holds ${size} values but the batch has ${values.length}`);
    }
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new ObserverError(`${where}: value ${values[i]} at flat index ${i} is not finite`);
  }
}

/** Smallest and largest value of a non-empty batch. */
export function batchMinMax(values: Float32Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

export function noDataError(kind: string): ObserverError {
  return new ObserverError(`${kind} observer: range() called before any value was observed; call observe() first`);
}
