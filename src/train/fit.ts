import { BatchLoader } from '../data/loader.js';
import { DataSplit } from '../data/dataset.js';
import { learningRate, ScheduleConfig } from './schedule.js';
import { StepResult, Trainer, TrainingDivergedError } from './trainer.js';

export interface FitOptions {
  /** Step count to stop at (counting steps already done when resuming). */
  totalSteps: number;
  /** Length of the whole run for the learning-rate schedule (default totalSteps; differs when a run is split into phases). */
  scheduleSteps?: number;
  /** Called before each step with the 0-based step index (e.g. to freeze observers); awaited when it returns a promise. */
  beforeStep?: (step: number) => Promise<void> | void;
  schedule: ScheduleConfig;
  seed: number;
  augmentShift?: number;
  /** Called after every step; awaited when it returns a promise (a mid-run evaluation, a quant-health sample). */
  onStep?: (info: StepInfo) => Promise<void> | void;
  /** Called at each epoch end and at the end (checkpointing); may be async. */
  onEpochEnd?: (epoch: number) => Promise<void> | void;
  /** Name of the last good checkpoint, for the divergence message. */
  lastCheckpoint?: () => string | undefined;
  /** Stops before the next step once aborted (SIGINT/SIGTERM): the caller then writes a checkpoint. */
  signal?: AbortSignal;
}

export interface StepInfo extends StepResult {
  step: number;
  epoch: number;
  totalSteps: number;
  lr: number;
  ms: number;
}

export interface FitResult {
  losses: number[];
  msPerStep: number[];
  /** The signal stopped the loop before totalSteps. */
  interrupted?: boolean;
}

/**
 * The training loop: the data order of epoch e is a permutation derived from (seed, e) and augmentation from
 * (seed, e, batch), so a run resumed at step s sees exactly the batches an uninterrupted run would.
 */
export async function fit(trainer: Trainer, data: DataSplit, options: FitOptions): Promise<FitResult> {
  const batchSize = trainer.batchLabels.length;
  const loader = new BatchLoader(data.train, {
    batchSize,
    shuffle: true,
    seed: options.seed,
    dropLast: true,
    augment: options.augmentShift ? { maxShift: options.augmentShift } : undefined,
  });
  const perEpoch = loader.batchesPerEpoch;
  if (perEpoch === 0) throw new Error(`batch size ${batchSize} is larger than the training set (${data.train.count} samples)`);
  const losses: number[] = [];
  const msPerStep: number[] = [];
  while (trainer.stepCount < options.totalSteps) {
    const epoch = Math.floor(trainer.stepCount / perEpoch);
    loader.setEpoch(epoch);
    for (const batch of loader.batches(trainer.stepCount % perEpoch)) {
      if (trainer.stepCount >= options.totalSteps) break;
      if (options.signal?.aborted) return { losses, msPerStep, interrupted: true };
      trainer.batchImages.set(batch.images);
      trainer.batchLabels.set(batch.labels);
      await options.beforeStep?.(trainer.stepCount);
      const lr = learningRate(options.schedule, trainer.stepCount, options.scheduleSteps ?? options.totalSteps);
      const t0 = performance.now();
      let r: StepResult;
      try {
        r = await trainer.trainStep(lr);
      } catch (e) {
        if (e instanceof TrainingDivergedError) {
          const last = options.lastCheckpoint?.();
          throw new TrainingDivergedError(`${e.message}; training stopped. ${last ? `Last good checkpoint: ${last}` : 'No checkpoint was written yet.'}`);
        }
        throw e;
      }
      const ms = performance.now() - t0;
      losses.push(r.loss);
      msPerStep.push(ms);
      await options.onStep?.({ ...r, step: trainer.stepCount, epoch, totalSteps: options.scheduleSteps ?? options.totalSteps, lr, ms });
    }
    if (trainer.stepCount % perEpoch === 0 || trainer.stepCount >= options.totalSteps) await options.onEpochEnd?.(epoch);
  }
  return { losses, msPerStep };
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
