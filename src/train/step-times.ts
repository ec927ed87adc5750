/**
 * Step times of a run, carried in its checkpoints (metrics.ms_per_step, one sample per completed step) so that a
 * resumed run's ms_per_step_median covers every step of the run, as an uninterrupted run's does, rather than only
 * the steps of the last command. Steps redone after a kill between checkpoints are timed once, by the command that
 * completes them.
 */
import { InputError } from '../validate/schema.js';

/** The checkpoint metrics key holding the samples. */
export const STEP_TIMES_KEY = 'ms_per_step';

/** A sample as stored: milliseconds to 1 microsecond, so a checkpoint header grows by about 8 bytes per step. */
export function stepTime(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * The samples a checkpoint at `step` carries, checked: absent in checkpoints written before they were kept (the
 * median then covers the steps timed since), else exactly `step` finite non-negative numbers.
 */
export function storedStepTimes(metrics: Record<string, unknown> | undefined, step: number, file: string): number[] {
  const v = metrics?.[STEP_TIMES_KEY];
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length !== step || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0)) {
    throw new InputError(`checkpoint '${file}': metrics.${STEP_TIMES_KEY} must be a list of ${step} step times in ms (finite, >= 0), one per completed step`);
  }
  return [...v];
}
