import fs from 'node:fs';
import path from 'node:path';
import { loadDataset, DatasetName, DATASET_NAMES } from '../data';
import { Model } from '../models/model';
import { resolveModel, InputTransform } from '../models/resolve';
import { saveModel } from '../onnx/model-io';
import { writeFileAtomic } from '../onnx/atomic-write';
import { Tensor } from '../ir/tensor';
import { loadCheckpoint, saveCheckpoint } from './checkpoint';
import { fit, median, StepInfo } from './fit';
import { defaultOptimizer, OptimizerKind, OPTIMIZERS } from './optimizer';
import { ScheduleKind, SCHEDULES } from './schedule';
import { Trainer } from './trainer';

export interface TrainConfig {
  model: string;
  data: DatasetName;
  epochs: number;
  /** Stop after this many steps in all (overrides epochs). */
  steps?: number;
  batch: number;
  optimizer: OptimizerKind;
  lr: number;
  weightDecay?: number;
  schedule: ScheduleKind;
  warmupSteps: number;
  labelSmoothing: number;
  clipNorm: number;
  augmentShift: number;
  seed: number;
  threads: number;
  input?: InputTransform;
}

export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  model: 'lenet',
  data: 'mnist',
  epochs: 1,
  batch: 128,
  optimizer: 'adamw',
  lr: 1e-3,
  schedule: 'cosine',
  warmupSteps: 0,
  labelSmoothing: 0,
  clipNorm: 0,
  augmentShift: 0,
  seed: 0,
  threads: 2,
};

export interface TrainResult {
  model: string;
  data: string;
  epochs: number;
  steps: number;
  batch: number;
  seed: number;
  threads: number;
  test_accuracy: number;
  test_loss: number;
  train_loss_last: number;
  ms_per_step_median: number;
  peak_rss_mb: number;
  run_dir: string;
  losses: number[];
}

export interface RunHooks {
  onStart?: (info: { totalSteps: number; startStep: number; model: Model }) => void;
  onStep?: (info: StepInfo) => void;
  log?: (line: string) => void;
}

export const CHECKPOINT_FILE = 'checkpoint.qat';

export function validateTrainConfig(c: TrainConfig): void {
  const fail = (flag: string, valid: string, got: unknown) => {
    throw new Error(`${flag}: invalid value '${got}'; valid: ${valid}`);
  };
  if (!(DATASET_NAMES as readonly string[]).includes(c.data)) fail('--data', DATASET_NAMES.join(', '), c.data);
  if (!(OPTIMIZERS as readonly string[]).includes(c.optimizer)) fail('--optimizer', OPTIMIZERS.join(', '), c.optimizer);
  if (!(SCHEDULES as readonly string[]).includes(c.schedule)) fail('--schedule', SCHEDULES.join(', '), c.schedule);
  if (!Number.isInteger(c.epochs) || c.epochs < 1) fail('--epochs', 'an integer >= 1', c.epochs);
  if (c.steps !== undefined && (!Number.isInteger(c.steps) || c.steps < 1)) fail('--steps', 'an integer >= 1', c.steps);
  if (!Number.isInteger(c.batch) || c.batch < 1) fail('--batch', 'an integer >= 1', c.batch);
  if (!(c.lr > 0)) fail('--lr', 'a number > 0', c.lr);
  if (!Number.isInteger(c.seed) || c.seed < 0) fail('--seed', 'an integer >= 0', c.seed);
  if (!Number.isInteger(c.threads) || c.threads < 1) fail('--threads', 'an integer >= 1', c.threads);
  if (!(c.labelSmoothing >= 0 && c.labelSmoothing < 1)) fail('--label-smoothing', 'a number in [0, 1)', c.labelSmoothing);
}

export function defaultRunDir(c: TrainConfig): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const base = path.basename(c.model).replace(/\.onnx$/, '');
  return path.join('runs', `${base}-${c.data}-${stamp}`);
}

/**
 * Trains a model as `qat train` does: writes checkpoint.qat (each epoch and at the end), model.onnx (the fp32
 * inference model) and metrics.json into runDir. With resume, continues from runDir's checkpoint exactly.
 */
export async function train(config: TrainConfig, runDir: string, options: { resume?: boolean; hooks?: RunHooks } = {}): Promise<TrainResult> {
  const hooks = options.hooks ?? {};
  const ckptPath = path.join(runDir, CHECKPOINT_FILE);
  let model: Model;
  let initial: Map<string, Tensor> | undefined;
  let startStep = 0;
  if (options.resume) {
    if (!fs.existsSync(ckptPath)) throw new Error(`--resume: no checkpoint at ${ckptPath}`);
    const ckpt = loadCheckpoint(ckptPath);
    const saved = ckpt.config as unknown as TrainConfig;
    // The run's identity comes from the checkpoint; only the length of training may change.
    config = { ...saved, epochs: config.epochs ?? saved.epochs, steps: config.steps ?? saved.steps, threads: config.threads ?? saved.threads };
    model = ckpt.model;
    initial = new Map(ckpt.optimizerState);
    for (const name of [...model.params, ...model.runningStats]) initial.set(name, model.graph.initializers.get(name)!);
    startStep = ckpt.step;
  } else {
    model = resolveModel(config.model, config.data, config.seed, config.input);
  }
  validateTrainConfig(config);
  const data = loadDataset(config.data);
  const optimizer = { ...defaultOptimizer(config.optimizer), clipNorm: config.clipNorm };
  if (config.weightDecay !== undefined) optimizer.weightDecay = config.weightDecay;
  const trainer = await Trainer.create(model, { batchSize: config.batch, classes: data.train.classes, optimizer, labelSmoothing: config.labelSmoothing, threads: config.threads }, initial);
  trainer.stepCount = startStep;
  const perEpoch = Math.floor(data.train.count / config.batch);
  const totalSteps = config.steps ?? config.epochs * perEpoch;
  fs.mkdirSync(runDir, { recursive: true });
  let lastCheckpoint: string | undefined = options.resume ? ckptPath : undefined;
  const checkpoint = () => {
    saveCheckpoint(ckptPath, {
      model: trainer.currentModel(),
      optimizerState: trainer.values('optimizer'),
      step: trainer.stepCount,
      rng: { seed: config.seed, step: trainer.stepCount },
      config: config as unknown as Record<string, unknown>,
    });
    lastCheckpoint = ckptPath;
  };
  hooks.onStart?.({ totalSteps, startStep, model });
  const result = await fit(trainer, data, {
    totalSteps,
    schedule: { kind: config.schedule, lr: config.lr, warmupSteps: config.warmupSteps },
    seed: config.seed,
    augmentShift: config.augmentShift,
    onStep: hooks.onStep,
    onEpochEnd: () => checkpoint(),
    lastCheckpoint: () => lastCheckpoint,
  });
  const [c, h, w] = data.test.shape;
  const evalResult = await trainer.evaluate(data.test.images, data.test.labels, data.test.count, [c, h, w]);
  saveModel(trainer.currentModel().graph, path.join(runDir, 'model.onnx'));
  await trainer.release();
  const metrics: TrainResult = {
    model: config.model,
    data: config.data,
    epochs: config.epochs,
    steps: trainer.stepCount,
    batch: config.batch,
    seed: config.seed,
    threads: config.threads,
    test_accuracy: evalResult.accuracy,
    test_loss: evalResult.loss,
    train_loss_last: result.losses.at(-1) ?? NaN,
    ms_per_step_median: median(result.msPerStep),
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    run_dir: runDir,
    losses: result.losses,
  };
  const { losses: _losses, ...summary } = metrics;
  writeFileAtomic(path.join(runDir, 'metrics.json'), JSON.stringify({ ...summary, config }, null, 2) + '\n');
  return metrics;
}
