import fs from 'node:fs';
import path from 'node:path';
import { loadDataset, DatasetName, DATASET_NAMES } from '../data';
import { Model } from '../models/model';
import { resolveModel, InputTransform } from '../models/resolve';
import { saveModel } from '../onnx/model-io';
import { writeFileAtomic } from '../onnx/atomic-write';
import { Tensor } from '../ir/tensor';
import { Checkpoint, loadCheckpoint, saveCheckpoint } from './checkpoint';
import { fit, median, StepInfo } from './fit';
import { defaultOptimizer, OptimizerKind, OPTIMIZERS } from './optimizer';
import { ScheduleKind, SCHEDULES } from './schedule';
import { Trainer } from './trainer';
import { evaluateModel } from './evaluate';
import { distillFrom, DistillOptions } from './distill';
import { prepareQat } from '../quant/qat';
import { presetConfig, QatConfig } from '../quant/presets';
import { DEFAULT_OSCILLATION, oscillationControl, OscillationOptions } from '../quant/oscillation';
import { isTextData } from '../data/text';
import { trainLanguageModel } from './run-language-model';

/** The task of the run saved in runDir, from its metrics or checkpoint config (undefined when there is none). */
function runTask(runDir: string): 'classification' | 'language-model' | undefined {
  const file = path.join(runDir, CHECKPOINT_FILE);
  if (!fs.existsSync(file)) return undefined;
  const saved = loadCheckpoint(file).config as unknown as TrainConfig;
  return typeof saved.data === 'string' && isTextData(saved.data) ? 'language-model' : 'classification';
}

export interface TrainConfig {
  /** A zoo name (lenet, mlp, resnet8, mobilenet, gpt, llama), an .onnx file, or a Model built in TypeScript. */
  model: string | Model;
  /** An image dataset (mnist, fashion-mnist) or text (moby-dick, sotu, FILE.txt): text trains a language model. */
  data: DatasetName | string;
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
  /** Quantization-aware training: a preset name (w8a8, w4a4, ...) and/or a full config. */
  quant?: string;
  quantConfig?: QatConfig;
  /** fp32 run directory to start from (QAT fine-tuning) and to distill from. */
  from?: string;
  distill?: DistillOptions;
  /** Step at which BN switches to running statistics (QAT); default half the run. */
  bnFreezeStep?: number;
  /** Step after which activation observers stop updating (QAT); default three quarters of the run. */
  observerFreezeStep?: number;
  /** Calibration batches (of --batch samples) that initialise activation ranges before QAT. */
  calibBatches?: number;
  /** Oscillation control (QAT below 8 bits): dampening weight and freezing threshold; tracking is automatic. */
  oscillation?: Partial<OscillationOptions>;
  // ---- language models (text data) ----
  /** Tokenizer: bytes (default, vocabulary 256) or gpt2 (BPE, 50257). */
  tokenizer?: string;
  /** Tokens per training window (default 128; the zoo model's position table). */
  context?: number;
  /** Zoo transformer size (defaults 4 layers, 4 heads, width 128). */
  layers?: number;
  heads?: number;
  dim?: number;
  /** Micro-batches per optimizer step (gradient accumulation). */
  accumulate?: number;
  /** Adam's second-moment decay (language models default 0.95). */
  beta2?: number;
  /** Validation every N steps (language models; 0: only at the end). */
  evalEvery?: number;
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
  quant?: string;
  method?: 'qat';
  fp32_accuracy?: number;
  /** Fraction of weights per layer whose oscillation frequency exceeds the report threshold, at the last step. */
  oscillating_fraction?: Record<string, number>;
  frozen_fraction?: Record<string, number>;
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
  /** Language models: 'language-model' (test_accuracy is then the validation token accuracy, test_loss val_loss). */
  task?: 'classification' | 'language-model';
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
  const base = path.basename(modelLabel(c.model)).replace(/\.onnx$/, '');
  return path.join('runs', `${base}-${path.basename(c.data).replace(/\.txt$/, '')}-${stamp}`);
}

/** The config's model as a string: a Model object is named by its name (configs are stored as JSON). */
export function modelLabel(model: string | Model): string {
  return typeof model === 'string' ? model : model.name;
}

export interface TrainOptions {
  resume?: boolean;
  hooks?: RunHooks;
  /** Stop (with a checkpoint) after this step, as an interrupted run would; the schedule still spans the whole run. */
  stopAtStep?: number;
}

/**
 * Trains a model as `qat train` does: writes checkpoint.qat (each epoch and at the end), model.onnx (the fp32
 * inference model) and metrics.json into runDir. With resume, continues from runDir's checkpoint exactly.
 */
function pickMetrics(metrics: Record<string, number>, prefix: string): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}

/** A finished run's checkpoint (model, config, optimizer state), e.g. to fine-tune with QAT, distill, quantize or export. */
export function loadRun(runDir: string): Checkpoint {
  const file = path.join(runDir, CHECKPOINT_FILE);
  if (!fs.existsSync(file)) throw new Error(`--from: no checkpoint at ${file} (train an fp32 run first with qat train --out ${runDir})`);
  return loadCheckpoint(file);
}

function resolveQatConfig(c: TrainConfig): QatConfig | undefined {
  if (!c.quant && !c.quantConfig) return undefined;
  return c.quantConfig ?? presetConfig(c.quant!);
}

/**
 * Trains a model as `qat train` does: writes checkpoint.qat (each epoch, at QAT phase changes and at the end),
 * model.onnx (the inference model) and metrics.json into runDir. With resume, continues from runDir's
 * checkpoint exactly. With a quantization config, the model (fresh, or the fp32 model of config.from) is
 * prepared for QAT first: BN folded, activation ranges calibrated, fake-quant nodes inserted.
 */
export async function train(config: TrainConfig, runDir: string, options: TrainOptions = {}): Promise<TrainResult> {
  const given = typeof config.model === 'string' ? undefined : config.model;
  config = { ...config, model: modelLabel(config.model) };
  if (isTextData(config.data) || given?.task === 'language-model' || (options.resume && runTask(runDir) === 'language-model')) {
    return trainLanguageModel(config, runDir, { ...options, model: given });
  }
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
    for (const name of [...model.params, ...model.runningStats, ...(model.observerStats ?? [])]) initial.set(name, model.graph.initializers.get(name)!);
    startStep = ckpt.step;
  }
  const source = config.from ? loadRun(config.from) : undefined;
  if (source && !options.resume) {
    // A run started from another takes that run's model and dataset (QAT fine-tuning, distillation).
    const saved = source.config as unknown as TrainConfig;
    config = { ...config, model: saved.model, data: saved.data, input: saved.input };
  }
  validateTrainConfig(config);
  const data = loadDataset(config.data as DatasetName);
  const qatConfig = resolveQatConfig(config);
  if (config.distill && !config.from) throw new Error('--distill needs --from RUN_DIR (the fp32 teacher)');
  const base = source?.model;
  if (!options.resume) {
    model = base ?? given ?? resolveModel(config.model as string, config.data, config.seed, config.input);
    if (qatConfig) {
      const calibCount = Math.min(data.train.count, (config.calibBatches ?? 8) * config.batch);
      model = await prepareQat(model, qatConfig, { images: data.train.images, count: calibCount, sampleShape: data.train.shape }, config.quant, config.threads);
    }
  }
  const fp32Accuracy = qatConfig && base ? (await evaluateModel(base, data.test, { threads: config.threads })).accuracy : undefined;
  const optimizer = { ...defaultOptimizer(config.optimizer), clipNorm: config.clipNorm };
  if (config.weightDecay !== undefined) optimizer.weightDecay = config.weightDecay;
  const perEpoch = Math.floor(data.train.count / config.batch);
  const totalSteps = config.steps ?? config.epochs * perEpoch;
  const quantized = Boolean(model!.quant);
  const bnFreeze = quantized && model!.runningStats.length ? (config.bnFreezeStep ?? Math.floor(totalSteps / 2)) : Infinity;
  const observerFreeze = quantized ? (config.observerFreezeStep ?? Math.floor((3 * totalSteps) / 4)) : Infinity;
  const extraLoss = config.distill && base ? distillFrom(base, config.distill) : undefined;
  const lowBit = model!.quant?.quantizers.some((z) => z.role === 'weight' && z.spec.bits < 8 && (z.spec.method === 'lsq' || z.spec.method === 'minmax' || z.spec.method === 'lsq+'));
  const plugins = quantized && (lowBit || config.oscillation) ? [oscillationControl({ ...DEFAULT_OSCILLATION, ...config.oscillation })] : [];
  const makeTrainer = (m: Model, init: Map<string, Tensor> | undefined, step: number) =>
    Trainer.create(m, { batchSize: config.batch, classes: data.train.classes, optimizer, labelSmoothing: config.labelSmoothing, threads: config.threads, extraLoss, plugins, freezeBatchNorm: step >= bnFreeze }, init);
  let lastMetrics: Record<string, number> = {};
  let trainer = await makeTrainer(model!, initial, startStep);
  trainer.stepCount = startStep;
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
  hooks.onStart?.({ totalSteps, startStep, model: model! });
  const losses: number[] = [];
  const msPerStep: number[] = [];
  // QAT phases: batch-statistics BN until bnFreeze, then a step graph with frozen (folded) BN.
  const stopAt = Math.min(totalSteps, options.stopAtStep ?? totalSteps);
  for (const end of [Math.min(bnFreeze, stopAt), stopAt]) {
    if (trainer.stepCount >= end) continue;
    if (trainer.stepCount >= bnFreeze && trainer.step.graph.nodes.some((n) => n.opType === 'BatchNormTrain')) {
      const values = trainer.values();
      const step = trainer.stepCount;
      const current = trainer.currentModel();
      await trainer.release();
      trainer = await makeTrainer(current, values, step);
      trainer.stepCount = step;
    }
    const result = await fit(trainer, data, {
      totalSteps: end,
      scheduleSteps: totalSteps,
      schedule: { kind: config.schedule, lr: config.lr, warmupSteps: config.warmupSteps },
      seed: config.seed,
      augmentShift: config.augmentShift,
      beforeStep: (s) => {
        trainer.observe = s < observerFreeze;
      },
      onStep: (info) => {
        lastMetrics = info.metrics;
        hooks.onStep?.(info);
      },
      onEpochEnd: () => checkpoint(),
      lastCheckpoint: () => lastCheckpoint,
    });
    losses.push(...result.losses);
    msPerStep.push(...result.msPerStep);
  }
  const [c, h, w] = data.test.shape;
  const evalResult = await trainer.evaluate(data.test.images, data.test.labels, data.test.count, [c, h, w]);
  const finalModel = trainer.currentModel();
  if (!finalModel.quant) saveModel(finalModel.graph, path.join(runDir, 'model.onnx'));
  await trainer.release();
  const metrics: TrainResult = {
    model: config.model as string,
    ...(quantized ? { quant: config.quant ?? 'custom', method: 'qat' as const, fp32_accuracy: fp32Accuracy } : {}),
    ...(plugins.length ? { oscillating_fraction: pickMetrics(lastMetrics, 'oscillating/'), frozen_fraction: pickMetrics(lastMetrics, 'frozen/') } : {}),
    data: config.data,
    epochs: config.epochs,
    steps: trainer.stepCount,
    batch: config.batch,
    seed: config.seed,
    threads: config.threads,
    test_accuracy: evalResult.accuracy,
    test_loss: evalResult.loss,
    train_loss_last: losses.at(-1) ?? NaN,
    ms_per_step_median: median(msPerStep),
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    run_dir: runDir,
    losses,
  };
  const { losses: _losses, ...summary } = metrics;
  writeFileAtomic(path.join(runDir, 'metrics.json'), JSON.stringify({ ...summary, config }, null, 2) + '\n');
  return metrics;
}
