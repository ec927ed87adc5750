import fs from 'node:fs';
import path from 'node:path';
import { loadDataset, DatasetName } from '../data/index.js';
import { Model, parameterCount } from '../models/model.js';
import { DATASET_STATS, resolveModel, InputTransform } from '../models/resolve.js';
import { checkClassifierFitsData } from '../models/check-io.js';
import { withStoredPrecision } from '../models/stored-precision.js';
import { RUN_MODEL_FILE, saveRunModel } from '../export/run-model-file.js';
import { Tensor } from '../ir/tensor.js';
import { InputError } from '../validate/schema.js';
import { Checkpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { checkStoredTrainConfig, checkTrainConfig } from './config-schema.js';
import { fit, median, StepInfo } from './fit.js';
import { defaultOptimizer, OptimizerKind } from './optimizer.js';
import { ScheduleKind } from './schedule.js';
import { Trainer } from './trainer.js';
import { evaluateModel } from './evaluate.js';
import { distillFrom, DistillOptions } from './distill.js';
import { prepareQat } from '../quant/qat.js';
import { planQuantization } from '../quant/prepare.js';
import { modelReport, plannedReport } from '../inspect/inspect-model.js';
import { InspectReport } from '../inspect/report.js';
import { presetConfig, QatConfig } from '../quant/presets.js';
import { DEFAULT_OSCILLATION, oscillationControl, OscillationOptions } from '../quant/oscillation.js';
import { isTextData } from '../data/text.js';
import { LanguageModelPlan, planLanguageModel, trainLanguageModel } from './run-language-model.js';
import { RunDirectory } from './run-dir.js';
import { STEP_TIMES_KEY, stepTime, storedStepTimes } from './step-times.js';
import { HistoryPoint, storedRunHistory } from './run-history.js';
import { DEFAULT_HEALTH_EVERY, QuantHealthPoint, QuantHealthProbe, QuantHealthTracker } from './quant-health.js';
import { CHECKPOINT_FILE, writeRunMetrics, METRICS_FILE, checkResumeState, checkStartStep, openFp32SourceRun, openSourceRun, RunSession, TrainingInterruptedError } from './run-lifecycle.js';

export { CHECKPOINT_FILE, TrainingInterruptedError } from './run-lifecycle.js';

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
  /** Validation (language models) or test evaluation (image runs) every N steps; 0: only at the end. */
  evalEvery?: number;
  /** QAT runs: a quant-health record (clipped, flipped, scale drift, oscillating) every N steps; 0: first and last step only. */
  healthEvery?: number;
  /** A checkpoint every N steps as well as at epoch ends (0: epoch ends only); default 250. */
  checkpointEvery?: number;
  /**
   * Language-model QAT from --from: 'generated' trains on windows the fp32 model generates itself, with KL to it
   * as the only loss (LLM-QAT's data-free distillation; src/generate/data-free-samples.ts); 'real' (default): the text.
   */
  distillData?: 'real' | 'generated';
  /** Windows generated for distillData 'generated' (default DEFAULT_GENERATED_SAMPLES). */
  generatedSamples?: number;
  /** Language models: KV cache fake-quantized as written (--kv-bits, --kv-layout; quant/kv-cache.ts). */
  kvCache?: import('../quant/kv-cache.js').KvCacheQuant;
  /** Language-model QAT + LoRA (src/quant/lora.ts): adapter rank, alpha (default 2 x rank), merged-phase steps at the end. */
  lora?: { rank: number; alpha?: number; mergeSteps?: number };
  /** Language-model QAT method: 'qat' (default) or 'efficientqat' (Block-AP then E2E-QP; src/train/efficient-qat.ts). */
  method?: 'qat' | 'efficientqat';
  /** EfficientQAT: Block-AP steps per transformer block. */
  blockApSteps?: number;
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
  /** Training loss and lr after every step; test (validation) metrics at each evaluation. */
  history?: HistoryPoint[];
  /** QAT runs: quant health every healthEvery steps (src/train/quant-health.ts). */
  quant_health?: QuantHealthPoint[];
  /** Language models: 'language-model' (test_accuracy is then the validation token accuracy, test_loss val_loss). */
  task?: 'classification' | 'language-model';
}

export interface RunHooks {
  /** `batch` is the run's own (a resumed run's saved batch, not the command line's default). */
  onStart?: (info: { totalSteps: number; startStep: number; model: Model; batch: number }) => void;
  onStep?: (info: StepInfo) => void;
  log?: (line: string) => void;
  /** A QAT run's layer table (src/inspect), once its quantizers are in place and before the first step. */
  onLayerTable?: (report: InspectReport) => void;
}

/** Default checkpoint cadence in steps (besides epoch ends and the end of the run). */
export const DEFAULT_CHECKPOINT_EVERY = 250;

/** Checks a config given by the user (TypeScript or CLI): every field typed and in range, errors naming the flag. */
export function validateTrainConfig(c: TrainConfig): void {
  checkTrainConfig({ ...c, model: modelLabel(c.model) });
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
  /** Aborting it stops training before the next step with a checkpoint, then throws TrainingInterruptedError. */
  signal?: AbortSignal;
  /** Refuse a config (or a resumed run's saved one) with more ONNX Runtime threads than this (the CLI: the cores). */
  maxThreads?: number;
}

function pickMetrics(metrics: Record<string, number>, prefix: string): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}

/** A finished run's checkpoint (model, config, optimizer state), e.g. to fine-tune with QAT, distill, quantize or export. */
export function loadRun(runDir: string): Checkpoint {
  return openSourceRun(runDir, undefined);
}

function resolveQatConfig(c: TrainConfig): QatConfig | undefined {
  if (!c.quant && !c.quantConfig) return undefined;
  return c.quantConfig ?? presetConfig(c.quant!);
}

/** A resumed run's config: the saved one, with what may change (length, threads, checkpoint cadence, --from's location). */
export function resumedConfig(saved: TrainConfig, given: Partial<TrainConfig>): TrainConfig {
  return {
    ...saved,
    epochs: given.epochs ?? saved.epochs,
    steps: given.steps ?? saved.steps,
    threads: given.threads ?? saved.threads,
    checkpointEvery: given.checkpointEvery ?? saved.checkpointEvery,
    from: given.from ?? saved.from,
  };
}

/** Reads a resumed run's checkpoint and checks its stored config (typed fields, a run qatkit can continue). */
function openResumed(runDir: string): { ckpt: Checkpoint; saved: TrainConfig } {
  const file = path.join(runDir, CHECKPOINT_FILE);
  if (!fs.existsSync(file)) throw new InputError(`--resume: no checkpoint at ${file}`);
  const ckpt = loadCheckpoint(file);
  if (ckpt.model.quant?.method === 'ptq') throw new InputError(`--resume: ${runDir} is a post-training quantization run (qat quantize): there is nothing to resume`);
  const saved = checkStoredTrainConfig(ckpt.config, file) as TrainConfig;
  if (ckpt.rng.seed !== saved.seed) throw new InputError(`checkpoint '${file}': rng.seed ${ckpt.rng.seed} differs from config.seed ${saved.seed}`);
  return { ckpt, saved };
}

/** The metrics.json of a run that is complete at `step`, if it is there and says so. */
export function finishedMetrics(runDir: string, step: number): TrainResult | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8'));
    if (m && typeof m === 'object' && m.steps === step && typeof m.test_accuracy === 'number') {
      const { config: _config, ...rest } = m;
      return { ...rest, losses: [] } as TrainResult;
    }
  } catch {
    // missing or unreadable: the run is finished again below
  }
  return undefined;
}

/** What a classification run will do, checked before anything is written (`qat train --dry-run` prints it). */
export interface TrainPlan {
  config: TrainConfig;
  runDir: string;
  task: 'classification' | 'language-model';
  resume: boolean;
  startStep: number;
  totalSteps: number;
  /** The run is complete already (a resume at its last step with its metrics.json). */
  complete: boolean;
  model: string;
  parameters: number;
  quant?: string;
  from?: string;
  /** A new QAT run: the layer table its quant config gives (which layers stay at 8 bits and why). */
  layerTable?: InspectReport;
}

interface ClassificationPlan extends TrainPlan {
  data: ReturnType<typeof loadDataset>;
  modelValue: Model;
  resumed?: { ckpt: Checkpoint; saved: TrainConfig };
  source?: Checkpoint;
  qatConfig?: QatConfig;
  /** A resumed run's step times so far (step-times.ts). */
  stepTimes: number[];
}

/**
 * Every check a run makes before it writes anything: the config (typed, in range), the checkpoint to resume
 * (checksum, schema, step within the run), the source run (exists, a qatkit fp32 run, not the run itself), the
 * run directory (absent or empty for a new run, not locked), the data, the model against the data, and a quant
 * config against the model's layers. Returns what train() then runs; writes nothing.
 */
export async function planTrain(config: TrainConfig, runDir: string, options: TrainOptions = {}): Promise<TrainPlan> {
  const plan = await planRun(config, runDir, options);
  if (plan.task === 'language-model') return plan;
  const { data: _d, modelValue: _m, resumed: _r, source: _s, qatConfig: _q, stepTimes: _t, ...summary } = plan as ClassificationPlan;
  return summary;
}

async function planRun(config: TrainConfig, runDir: string, options: TrainOptions): Promise<TrainPlan | ClassificationPlan> {
  const given = typeof config.model === 'object' ? config.model : undefined;
  // (A resumed run's config may hold only what changes: its model comes from the checkpoint.)
  if (config.model !== undefined) config = { ...config, model: modelLabel(config.model) };
  const resumed = options.resume ? openResumed(runDir) : undefined;
  const savedTask = resumed && isTextData(resumed.saved.data) ? 'language-model' : undefined;
  // --from an fp32 language-model run: QAT fine-tuning of that language model.
  const lmSource = !resumed && config.from ? openFp32SourceRun(config.from, runDir) : undefined;
  const fromText = lmSource && isTextData((lmSource.config as unknown as TrainConfig).data) ? lmSource : undefined;
  if (isTextData(config.data) || given?.task === 'language-model' || savedTask || fromText) {
    return planLanguageModel(config, runDir, { ...options, model: given, resumed, source: fromText ?? resumedTeacher(config, resumed, runDir) });
  }
  if (resumed) config = resumedConfig(resumed.saved, config);
  validateTrainConfig(config);
  if (config.kvCache || config.quantConfig?.kvCache) throw new InputError(`--kv-bits: --data ${config.data} trains an image model, which has no KV cache; KV-cache quantization applies to language models (text --data)`);
  checkThreads(config, options, resumed ? path.join(runDir, CHECKPOINT_FILE) : undefined);
  const qatConfig = resolveQatConfig(config);
  if (config.distill && !config.from) throw new InputError('--distill needs --from RUN_DIR (the fp32 teacher)');
  // The source run: a fresh run takes its model and dataset; a resumed one needs it only as a distillation teacher.
  const source = config.from && (!resumed || config.distill) ? openSource(config.from, runDir, Boolean(resumed) && config.from === resumed!.saved.from) : undefined;
  if (source && !resumed) {
    const saved = source.config as unknown as TrainConfig;
    if (isTextData(saved.data)) throw new InputError(`--from ${config.from} is a language-model run; an image-model run cannot start from it (pass an image run, or train the language model with --from alone)`);
    config = { ...config, model: saved.model, data: saved.data, input: saved.input, from: path.resolve(config.from!) };
  }
  RunDirectory.check(runDir, { resume: Boolean(resumed), requiredFile: CHECKPOINT_FILE });
  const model = resumed ? resumed.ckpt.model : (source?.model ?? given ?? resolveModel(config.model as string, config.data, config.seed, config.input));
  const stats = DATASET_STATS[config.data];
  checkClassifierFitsData(model.graph, model.input, model.output, stats.shape, stats.classes, `model '${config.model}'`, config.data);
  const data = loadDataset(config.data as DatasetName);
  const perEpoch = Math.floor(data.train.count / config.batch);
  if (perEpoch === 0) throw new InputError(`--batch ${config.batch} is larger than the training set (${data.train.count} samples)`);
  const totalSteps = config.steps ?? config.epochs * perEpoch;
  const startStep = resumed?.ckpt.step ?? 0;
  const ckptFile = path.join(runDir, CHECKPOINT_FILE);
  if (resumed) checkStartStep(startStep, totalSteps, ckptFile, config.steps !== resumed.saved.steps || config.epochs !== resumed.saved.epochs);
  const stepTimes = resumed ? storedStepTimes(resumed.ckpt.metrics, startStep, ckptFile) : [];
  // Overrides and group sizes checked against the layers; the plan is also the table --dry-run prints.
  const layerTable = qatConfig && !resumed ? plannedReport(model, planQuantization(model, qatConfig), qatConfig, config.quant) : undefined;
  const complete = Boolean(resumed && startStep === totalSteps && finishedMetrics(runDir, startStep));
  return {
    config, runDir, task: 'classification', resume: Boolean(resumed), startStep, totalSteps, complete, model: config.model as string,
    parameters: parameterCount(model), quant: qatConfig ? (config.quant ?? 'custom') : undefined, from: config.from, ...(layerTable ? { layerTable } : {}),
    data, modelValue: model, resumed, source, qatConfig, stepTimes,
  };
}

/** The source run; one named by a resumed checkpoint (not on the command line) is reported as the checkpoint's. */
/** A resumed language-model run that distills (on real or generated text) needs its --from run again: the teacher. */
function resumedTeacher(config: TrainConfig, resumed: { saved: TrainConfig } | undefined, runDir: string): Checkpoint | undefined {
  const saved = resumed?.saved;
  if (!saved || !isTextData(saved.data) || !saved.from || !(saved.distill || saved.distillData === 'generated' || saved.method === 'efficientqat')) return undefined;
  const from = config.from ?? saved.from;
  return openSource(from, runDir, from === saved.from);
}

function openSource(from: string, runDir: string, namedByCheckpoint: boolean): Checkpoint {
  if (!namedByCheckpoint) return openFp32SourceRun(from, runDir, '--from');
  try {
    return openFp32SourceRun(from, runDir, 'config.from');
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`checkpoint '${path.join(runDir, CHECKPOINT_FILE)}': ${e.message}`);
    throw e;
  }
}

/** More threads than the caller allows (the CLI: the machine's cores) is refused, also for a resumed run's saved count. */
function checkThreads(config: TrainConfig, options: TrainOptions, checkpoint?: string): void {
  if (options.maxThreads !== undefined && config.threads > options.maxThreads) {
    throw new InputError(
      `${checkpoint ? `checkpoint '${checkpoint}': ` : ''}the run uses --threads ${config.threads}, more than this machine's ${options.maxThreads} cores; pass --threads N (N <= ${options.maxThreads}; ` +
        'a resumed run then matches an uninterrupted one only up to float summation order)',
    );
  }
}

/**
 * Trains a model as `qat train` does: writes checkpoint.qat (every checkpointEvery steps, each epoch, at QAT
 * phase changes and at the end), model.onnx (the inference model) and metrics.json into runDir. With resume,
 * continues from runDir's checkpoint exactly (same threads assumed). With a quantization config, the model
 * (fresh, or the fp32 model of config.from) is prepared for QAT first: BN folded, activation ranges calibrated,
 * fake-quant nodes inserted. Every input is checked first (planTrain); a run that fails before its first
 * checkpoint leaves nothing behind, one that fails later keeps its last checkpoint (see run-lifecycle.ts).
 */
export async function train(config: TrainConfig, runDir: string, options: TrainOptions = {}): Promise<TrainResult> {
  const plan = await planRun(config, runDir, options);
  if (plan.task === 'language-model') return trainLanguageModel(plan.config, runDir, { ...options, model: typeof config.model === 'object' ? config.model : undefined, plan: plan as LanguageModelPlan });
  const { data, resumed, source, qatConfig, totalSteps, startStep, stepTimes } = plan as ClassificationPlan;
  config = plan.config;
  const hooks = options.hooks ?? {};
  if (plan.complete) {
    hooks.log?.(`run ${runDir} is already complete (step ${startStep} of ${totalSteps}); nothing was changed`);
    return finishedMetrics(runDir, startStep)!;
  }
  let model = (plan as ClassificationPlan).modelValue;
  let initial: Map<string, Tensor> | undefined;
  if (resumed) {
    initial = new Map(resumed.ckpt.optimizerState);
    for (const name of [...model.params, ...model.runningStats, ...(model.observerStats ?? [])]) initial.set(name, model.graph.initializers.get(name)!);
  } else {
    if (qatConfig) {
      const calibCount = Math.min(data.train.count, (config.calibBatches ?? 8) * config.batch);
      model = await prepareQat(model, qatConfig, { images: data.train.images, count: calibCount, sampleShape: data.train.shape }, config.quant, config.threads);
      hooks.onLayerTable?.(modelReport(model));
    }
    model = withStoredPrecision(model);
  }
  const session = RunSession.open(runDir, Boolean(resumed));
  let trainer: Trainer | undefined;
  let probe: QuantHealthProbe | undefined;
  try {
    const base = source?.model;
    const storedFp32 = resumed?.ckpt.metrics?.fp32_accuracy;
    const fp32Accuracy = qatConfig
      ? typeof storedFp32 === 'number' ? storedFp32 : base ? (await evaluateModel(base, data.test, { threads: config.threads })).accuracy : undefined
      : undefined;
    const optimizer = { ...defaultOptimizer(config.optimizer), clipNorm: config.clipNorm };
    if (config.weightDecay !== undefined) optimizer.weightDecay = config.weightDecay;
    const quantized = Boolean(model.quant);
    const bnFreeze = quantized && model.runningStats.length ? (config.bnFreezeStep ?? Math.floor(totalSteps / 2)) : Infinity;
    const observerFreeze = quantized ? (config.observerFreezeStep ?? Math.floor((3 * totalSteps) / 4)) : Infinity;
    const extraLoss = config.distill && base ? distillFrom(base, config.distill) : undefined;
    const lowBit = model.quant?.quantizers.some((z) => z.role === 'weight' && z.spec.bits < 8 && (z.spec.method === 'lsq' || z.spec.method === 'minmax' || z.spec.method === 'lsq+'));
    const plugins = quantized && (lowBit || config.oscillation) ? [oscillationControl({ ...DEFAULT_OSCILLATION, ...config.oscillation })] : [];
    const makeTrainer = (m: Model, init: Map<string, Tensor> | undefined, step: number) =>
      Trainer.create(m, { batchSize: config.batch, classes: data.train.classes, optimizer, labelSmoothing: config.labelSmoothing, threads: config.threads, extraLoss, plugins, freezeBatchNorm: step >= bnFreeze }, init);
    let lastMetrics: Record<string, number> = {};
    trainer = await makeTrainer(model, initial, startStep);
    if (resumed) checkResumeState(trainer.step.carried, resumed.ckpt.optimizerState, session.checkpointFile);
    trainer.stepCount = startStep;
    const losses: number[] = [];
    let trainLossLast = typeof resumed?.ckpt.metrics?.train_loss_last === 'number' ? (resumed.ckpt.metrics.train_loss_last as number) : NaN;
    let savedStep = resumed ? startStep : -1;
    const history: HistoryPoint[] = resumed ? storedRunHistory(resumed.ckpt.metrics?.history, startStep, session.checkpointFile) : [];
    probe = quantized ? await QuantHealthProbe.create(model, config.threads) : undefined;
    const health = probe
      ? new QuantHealthTracker(probe, (n) => trainer?.carriedData(n), config.healthEvery ?? DEFAULT_HEALTH_EVERY, totalSteps, resumed ? { points: resumed.ckpt.metrics?.quant_health, start: resumed.ckpt.metrics?.quant_health_start, file: session.checkpointFile, step: startStep } : undefined)
      : undefined;
    if (!resumed) await health?.after(0);
    const evalEvery = config.evalEvery ?? 0;
    const [c, h, w] = data.test.shape;
    const checkpoint = () => {
      const t = trainer!;
      if (t.stepCount === savedStep) return;
      saveCheckpoint(session.checkpointFile, {
        model: t.currentModel(),
        optimizerState: t.values('optimizer'),
        step: t.stepCount,
        rng: { seed: config.seed, step: t.stepCount },
        config: config as unknown as Record<string, unknown>,
        metrics: { train_loss_last: trainLossLast, history, ...(health?.stored() ?? {}), ...(fp32Accuracy !== undefined ? { fp32_accuracy: fp32Accuracy } : {}), [STEP_TIMES_KEY]: stepTimes },
      });
      savedStep = t.stepCount;
      session.checkpointed();
    };
    const every = config.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    hooks.onStart?.({ totalSteps, startStep, model, batch: config.batch });
    // QAT phases: batch-statistics BN until bnFreeze, then a step graph with frozen (folded) BN.
    const stopAt = Math.min(totalSteps, options.stopAtStep ?? totalSteps);
    for (const end of [Math.min(bnFreeze, stopAt), stopAt]) {
      if (trainer.stepCount >= end) continue;
      if (trainer.stepCount >= bnFreeze && trainer.step.graph.nodes.some((n) => n.opType === 'BatchNormTrain')) {
        const values = trainer.values();
        const step = trainer.stepCount;
        const current = trainer.currentModel();
        await trainer.release();
        trainer = undefined;
        trainer = await makeTrainer(current, values, step);
        trainer.stepCount = step;
      }
      const t = trainer;
      const result = await fit(t, data, {
        totalSteps: end,
        scheduleSteps: totalSteps,
        schedule: { kind: config.schedule, lr: config.lr, warmupSteps: config.warmupSteps },
        seed: config.seed,
        augmentShift: config.augmentShift,
        signal: options.signal,
        beforeStep: async (s) => {
          t.observe = s < observerFreeze;
          await health?.before(s);
        },
        onStep: async (info) => {
          lastMetrics = info.metrics;
          trainLossLast = info.loss;
          stepTimes.push(stepTime(info.ms));
          const point: HistoryPoint = { step: info.step, train_loss: info.loss, lr: info.lr };
          if (evalEvery > 0 && info.step % evalEvery === 0 && info.step < totalSteps) {
            const e = await t.evaluate(data.test.images, data.test.labels, data.test.count, [c, h, w]);
            Object.assign(point, { test_loss: e.loss, test_accuracy: e.accuracy });
          }
          history.push(point);
          await health?.after(info.step, info.metrics);
          hooks.onStep?.(info);
          if (every > 0 && info.step % every === 0) checkpoint();
        },
        onEpochEnd: () => checkpoint(),
        lastCheckpoint: () => (savedStep >= 0 ? session.checkpointFile : undefined),
      });
      losses.push(...result.losses);
      if (result.interrupted) {
        checkpoint();
        throw new TrainingInterruptedError(`training interrupted at step ${t.stepCount} of ${totalSteps}; checkpoint saved in ${session.checkpointFile}: continue with qat train --out ${runDir} --resume`);
      }
    }
    checkpoint();
    const evalResult = await trainer.evaluate(data.test.images, data.test.labels, data.test.count, [c, h, w]);
    const last = history.at(-1);
    if (last && last.step === trainer.stepCount) Object.assign(last, { test_loss: evalResult.loss, test_accuracy: evalResult.accuracy });
    const finalModel = trainer.currentModel();
    await saveRunModel(finalModel, path.join(runDir, RUN_MODEL_FILE), config.threads);
    await trainer.release();
    trainer = undefined;
    await probe?.release();
    probe = undefined;
    const metrics: TrainResult = {
      model: config.model as string,
      ...(quantized ? { quant: config.quant ?? 'custom', method: 'qat' as const, fp32_accuracy: fp32Accuracy } : {}),
      ...(plugins.length ? { oscillating_fraction: pickMetrics(lastMetrics, 'oscillating/'), frozen_fraction: pickMetrics(lastMetrics, 'frozen/') } : {}),
      data: config.data,
      epochs: config.epochs,
      steps: finalStep(savedStep, startStep),
      batch: config.batch,
      seed: config.seed,
      threads: config.threads,
      test_accuracy: evalResult.accuracy,
      test_loss: evalResult.loss,
      train_loss_last: trainLossLast,
      ms_per_step_median: median(stepTimes),
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
      run_dir: runDir,
      losses,
      history,
      ...(health ? { quant_health: health.points } : {}),
    };
    writeRunMetrics(runDir, metrics, config);
    session.finish();
    return metrics;
  } catch (e) {
    if (trainer) await trainer.release().catch(() => undefined);
    await probe?.release().catch(() => undefined);
    throw session.fail(e);
  }
}

function finalStep(savedStep: number, startStep: number): number {
  return Math.max(savedStep, startStep);
}
