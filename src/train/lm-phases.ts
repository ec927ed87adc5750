import { Model } from '../models/model.js';
import { addLoraAdapters, mergeLoraAdapters } from '../quant/lora.js';
import { InputError } from '../validate/schema.js';
import { efficientQatPhases } from './efficient-qat.js';
import { learningRate } from './schedule.js';
import type { ExtraLoss } from './step-graph.js';
import type { TrainConfig } from './run.js';

/**
 * One phase of a language-model run: a span of steps trained by one step graph. A run with several phases
 * (BitNet b1.58's two stages, QAT + LoRA then the merged model, EfficientQAT's blocks then its step sizes) builds a
 * new trainer at each phase boundary. Every phase is a pure function of the run's model at its start, so a resumed
 * run rebuilds exactly the step graph an uninterrupted one trains.
 */
export interface TrainingPhase {
  name: string;
  /** Steps [start, end) of the run. */
  start: number;
  end: number;
  /** The model the phase's step graph trains, from the run's model (its current values) at any step of the phase. */
  enter(run: Model): Model;
  /** The run's model holding the values the phase's trainer has now (what a checkpoint stores). */
  leave(run: Model, trained: Model): Model;
  /** true: Adam's moments continue from the previous phase (same parameters); false: they start from zero. */
  continueOptimizer: boolean;
  /** Weight decay of the phase (undefined: the run's). */
  weightDecay?: number;
  extraLoss?: ExtraLoss;
  /** Whether the phase's step model is the whole language model (its eval session then measures the run). */
  whole: boolean;
  /** Learning rate at a step of the run (0-based). */
  lr(step: number): number;
}

/** The phase that holds `step` (a finished run: the last one). */
export function phaseAt(phases: TrainingPhase[], step: number): number {
  const i = phases.findIndex((p) => step >= p.start && step < p.end);
  return i < 0 ? phases.length - 1 : i;
}

/** The run's own schedule (warmup, then cosine to 10% of the peak, nanoGPT's decay) over all of its steps. */
export function runSchedule(config: TrainConfig, totalSteps: number): (step: number) => number {
  const schedule = { kind: config.schedule, lr: config.lr, warmupSteps: config.warmupSteps, minFactor: 0.1 };
  return (step) => learningRate(schedule, step, totalSteps);
}

/** The whole run in one phase: the model trains as it is, on the run's schedule. */
export function singlePhase(config: TrainConfig, totalSteps: number, extraLoss?: ExtraLoss): TrainingPhase[] {
  return [{ name: 'train', start: 0, end: totalSteps, enter: (m) => m, leave: (_r, t) => t, continueOptimizer: true, extraLoss, whole: true, lr: runSchedule(config, totalSteps) }];
}

/**
 * BitNet b1.58's two-stage schedule (Ma et al. 2025, "BitNet b1.58 2B4T Technical Report", section 3.1): stage 1
 * (the first half) warms up and decays by cosine from the peak lr to 8/15 of it (their 1.5e-3 -> 8e-4) with the
 * run's weight decay; at the midpoint the lr drops abruptly to 1/3 of the peak (their 5e-4) and decays by cosine to
 * 0 over stage 2, with weight decay 0. Adam's moments continue across the boundary.
 */
export const B158_SCHEDULE = { stage1End: 8 / 15, stage2Peak: 1 / 3 };

/**
 * Peak lr of b158 from scratch when --lr is not given: twice the fp32 default (3e-3). Ternary latent weights move
 * their codes only by crossing a rounding threshold, and BitNet trains 1.58-bit models at a higher lr than their
 * float baselines ("The Era of 1-bit LLMs: Training Tips, Code and FAQ", Microsoft 2024). Measured on the default
 * gpt, 1500 steps, Moby Dick (docs/decisions.md): perplexity 5.44 at 6e-3 against 5.56 at 3e-3 (fp32 4.56).
 */
export const B158_SCRATCH_LR = 6e-3;

export function b158LearningRate(lr: number, warmupSteps: number, step: number, totalSteps: number): number {
  const mid = Math.floor(totalSteps / 2);
  if (step < mid) {
    if (warmupSteps > 0 && step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
    const t = Math.min(1, (step - warmupSteps) / Math.max(1, mid - warmupSteps));
    const floor = B158_SCHEDULE.stage1End;
    return lr * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * t)));
  }
  const t = (step - mid) / Math.max(1, totalSteps - mid);
  return lr * B158_SCHEDULE.stage2Peak * 0.5 * (1 + Math.cos(Math.PI * t));
}

export function b158Phases(config: TrainConfig, totalSteps: number, extraLoss?: ExtraLoss): TrainingPhase[] {
  const mid = Math.floor(totalSteps / 2);
  const lr = (step: number) => b158LearningRate(config.lr, config.warmupSteps, step, totalSteps);
  const stage = (name: string, start: number, end: number, weightDecay?: number): TrainingPhase => ({
    name, start, end, enter: (m) => m, leave: (_r, t) => t, continueOptimizer: true, weightDecay, extraLoss, whole: true, lr,
  });
  if (mid === 0) return [stage('b158 stage 2', 0, totalSteps, 0)];
  return [stage('b158 stage 1', 0, mid), stage('b158 stage 2', mid, totalSteps, 0)];
}

/** What a run's phases are built from besides its config: the loss term every phase adds (distillation), the teacher. */
export interface PhaseContext {
  extraLoss?: ExtraLoss;
  /** The fp32 --from model (EfficientQAT's block targets). */
  teacher?: Model;
  /** The run's model (EfficientQAT finds its blocks in it). */
  model?: Model;
}

/**
 * The phases of a language-model run, from its config: BitNet b1.58 from scratch (`--quant b158` without --from)
 * takes its two-stage schedule; every other run is one phase on the run's schedule.
 */
export function languageModelPhases(config: TrainConfig, totalSteps: number, context: PhaseContext = {}): TrainingPhase[] {
  if (config.method === 'efficientqat') return efficientQatPhases(config, totalSteps, context.model, context.teacher, context.extraLoss);
  if (config.lora) return loraPhases(config, totalSteps, context.extraLoss);
  if (config.quant === 'b158' && !config.from) return b158Phases(config, totalSteps, context.extraLoss);
  return singlePhase(config, totalSteps, context.extraLoss);
}

/** The model whose quantizers quant health reads: every weight and scale a parameter (phases may freeze some). */
export function healthModel(run: Model): Model {
  const lora = run.quant?.lora;
  return lora ? { ...run, params: [...lora.frozen] } : run;
}

/** QAT + LoRA's merged phase: 10% of the run (at least one step) unless --lora-merge-steps says otherwise. */
export function loraMergeSteps(config: TrainConfig, totalSteps: number): number {
  return config.lora?.mergeSteps ?? Math.max(1, Math.round(totalSteps / 10));
}

/**
 * QAT + LoRA (src/quant/lora.ts): adapters on the frozen quantized base until the last mergeSteps steps, which
 * train the merged model with full QAT (weights and step sizes), so the exported model is the one trained last.
 * Adam restarts at the merge (other parameters); the lr follows the run's one schedule throughout.
 */
export function loraPhases(config: TrainConfig, totalSteps: number, extraLoss?: ExtraLoss): TrainingPhase[] {
  const lora = config.lora!;
  const merge = loraMergeSteps(config, totalSteps);
  if (merge >= totalSteps) throw new InputError(`--lora-merge-steps ${merge} must be smaller than --steps ${totalSteps} (the adapters train in the steps before the merge)`);
  const lr = runSchedule(config, totalSteps);
  const split = totalSteps - merge;
  return [
    {
      name: 'lora', start: 0, end: split, continueOptimizer: false, extraLoss, whole: true, lr, leave: (_r, t) => t,
      enter: (run) => (run.quant?.lora ? run : addLoraAdapters(run, { rank: lora.rank, alpha: lora.alpha, seed: config.seed })),
    },
    {
      name: 'lora merged', start: split, end: totalSteps, continueOptimizer: false, extraLoss, whole: true, lr, leave: (_r, t) => t,
      enter: (run) => (run.quant?.lora ? mergeLoraAdapters(run) : run),
    },
  ];
}
