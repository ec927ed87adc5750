import fs from 'node:fs';
import path from 'node:path';
import { loadTextData, TextData, WindowSampler } from '../data/text.js';
import { TOKENIZER_NAMES, TokenizerName } from '../data/tokenizers/index.js';
import { Tensor } from '../ir/tensor.js';
import { Model, parameterCount } from '../models/model.js';
import { importForTraining } from '../models/resolve.js';
import { gpt, llama, TRANSFORMER_DEFAULTS } from '../models/transformers.js';
import { RUN_MODEL_FILE, saveRunModel } from '../export/run-model-file.js';
import { Checkpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { checkStoredTrainConfig, checkTrainConfig } from './config-schema.js';
import { RunDirectory } from './run-dir.js';
import { STEP_TIMES_KEY, stepTime, storedStepTimes } from './step-times.js';
import { CHECKPOINT_FILE, writeRunMetrics, checkResumeState, checkStartStep, RunSession, TrainingInterruptedError } from './run-lifecycle.js';
import { withStoredPrecision } from '../models/stored-precision.js';
import { InputError } from '../validate/schema.js';
import { median } from './fit.js';
import { defaultOptimizer } from './optimizer.js';
import { healthModel, languageModelPhases, phaseAt } from './lm-phases.js';
import { Trainer, TrainingDivergedError } from './trainer.js';
import { finishedMetrics, modelLabel, resumedConfig } from './run.js';
import type { RunHooks, TrainConfig, TrainPlan, TrainResult } from './run.js';
import { evaluateLanguageModel, LanguageModelEval } from './evaluate-language-model.js';
import { planQuantization } from '../quant/prepare.js';
import { modelReport, plannedReport } from '../inspect/inspect-model.js';
import { prepareLanguageModelQat } from '../quant/qat.js';
import { kvCacheJson, kvCacheQuantOf, kvDescription, runKvCache, withKvCacheQuantization } from '../quant/kv-cache.js';
import { presetConfig, QatConfig } from '../quant/presets.js';
import { DEFAULT_HEALTH_EVERY, QuantHealthPoint, QuantHealthProbe, QuantHealthTracker } from './quant-health.js';
import { GENERATED_WINDOWS_FILE, GeneratedWindows, GeneratedWindowSampler, readGeneratedWindows, writeGeneratedWindows } from '../data/generated-windows.js';
import { DATA_FREE_GREEDY_TOKENS, generateDataFreeWindows } from '../generate/data-free-samples.js';
import { languageModelDistill } from './data-free-distill.js';

export const LANGUAGE_MODELS = ['gpt', 'llama'] as const;

/**
 * Defaults of a language-model run (`qat train --model gpt --data moby-dick`): 1500 AdamW steps of 32 windows of
 * 128 tokens, peak lr 3e-3 after 100 warmup steps, cosine to 10% of the peak, betas (0.9, 0.95), weight decay
 * 0.1 on matrices only, gradient clipping at norm 1 (nanoGPT's recipe, shortened for the 2-core budget).
 */
export const LANGUAGE_MODEL_DEFAULTS = {
  steps: 1500,
  batch: 32,
  lr: 3e-3,
  warmupSteps: 100,
  weightDecay: 0.1,
  clipNorm: 1,
  beta2: 0.95,
  evalEvery: 250,
  checkpointEvery: 250,
};

/**
 * Defaults of QAT fine-tuning from an fp32 language-model run (`qat train --from LM_RUN --quant w4a16-g32`): the
 * pretraining recipe at a tenth of its peak lr (3e-4), 300 steps (a fifth of the pretraining run), 30 warmup steps
 * and no weight decay, so the quantized model starts from the fp32 weights and stays near them. QAT of LLMs
 * fine-tunes at a small fraction of the pretraining lr without weight decay (LLM-QAT, Liu et al. 2023: AdamW, lr
 * 2e-5, weight decay 0; EfficientQAT, Chen et al. 2024: lr 1e-4..2e-5); a fresh run's peak lr would first undo
 * what the fp32 run learned (see docs/decisions.md, "Language-model QAT recipe").
 */
export const LANGUAGE_MODEL_QAT_DEFAULTS = {
  ...LANGUAGE_MODEL_DEFAULTS,
  steps: 300,
  lr: 3e-4,
  warmupSteps: 30,
  weightDecay: 0,
};

/**
 * Windows the fp32 model generates for data-free QAT (`--distill-data generated`) when --generated-samples is not
 * given: 1024 windows of 129 tokens (132k tokens), about 3.5 passes over them in the 300-step default at batch 32.
 * LLM-QAT generated 100k samples for 7B-65B models; a model of 0.8M parameters is distilled with far fewer.
 */
export const DEFAULT_GENERATED_SAMPLES = 1024;
/** Checkpoint metrics key holding the SHA-256 of the run's generated windows (checked on resume). */
const GENERATED_SHA_KEY = 'generated_windows_sha256';

/** A language-model run's metrics; TrainResult's test_accuracy / test_loss are the validation token accuracy and loss. */
export interface LanguageModelResult extends TrainResult {
  model: string;
  task: 'language-model';
  data: string;
  tokenizer: string;
  parameters: number;
  steps: number;
  batch: number;
  context: number;
  accumulate: number;
  seed: number;
  threads: number;
  val_loss: number;
  val_perplexity: number;
  /** Runs of several phases (lm-phases.ts: b158's stages, LoRA then merged, EfficientQAT): their steps and step time. */
  phases?: { name: string; start: number; end: number; ms_per_step_median?: number }[];
  /** QAT from an fp32 run (--from): the source model's validation perplexity. */
  fp32_perplexity?: number;
  /** --kv-bits: the KV-cache quantization trained with. */
  kv_cache?: ReturnType<typeof kvCacheJson>;
  /** Data-free QAT (--distill-data generated): training windows generated by the --from model. */
  distill_data?: 'generated';
  generated_samples?: number;
  bits_per_byte: number;
  val_token_accuracy: number;
  val_tokens: number;
  train_loss_last: number;
  ms_per_step_median: number;
  tokens_per_second: number;
  peak_rss_mb: number;
  run_dir: string;
  /** Validation metrics every evalEvery steps: the curve a report plots. */
  history: { step: number; train_loss: number; lr: number; val_loss?: number; val_perplexity?: number }[];
  /** QAT runs: quant health every healthEvery steps (src/train/quant-health.ts). */
  quant_health?: QuantHealthPoint[];
  losses: number[];
}

/** The language model a run trains: a zoo transformer sized by the config, an .onnx decoder, or a given Model. */
export function resolveLanguageModel(config: TrainConfig, text: TextData, given?: Model): Model {
  const context = config.context ?? TRANSFORMER_DEFAULTS.context;
  if (given) {
    if (given.task !== 'language-model') throw new Error(`model '${given.name}' is not a language model (its input must be int64 token ids [B, T])`);
    return given;
  }
  const spec = modelLabel(config.model);
  if (spec === 'gpt' || spec === 'llama') {
    const build = spec === 'gpt' ? gpt : llama;
    return build({ vocabSize: text.vocabSize, layers: config.layers, heads: config.heads, dim: config.dim, context, seed: config.seed });
  }
  if (spec.endsWith('.onnx') || fs.existsSync(spec)) {
    const model = (importForTraining as (file: string, transform: object, options: { context: number }) => Model)(spec, {}, { context });
    if (model.task !== 'language-model') {
      throw new Error(`${spec}: --data ${config.data} is text, but this model takes images; a language model takes int64 token ids [B, T] and returns logits [B, T, V]`);
    }
    if (model.lm && model.lm.vocabSize < text.vocabSize) {
      throw new Error(`${spec}: the model's vocabulary (${model.lm.vocabSize}) is smaller than the ${text.tokenizer.name} tokenizer's (${text.vocabSize}); use --tokenizer ${model.lm.vocabSize >= 50257 ? 'gpt2' : 'bytes'}`);
    }
    return model;
  }
  throw new Error(`--model: '${spec}' is not a language model; choose ${LANGUAGE_MODELS.join(', ')} or an .onnx decoder exported from PyTorch`);
}

function checkLanguageModelConfig(c: TrainConfig): void {
  const fail = (flag: string, valid: string, got: unknown) => {
    throw new Error(`${flag}: invalid value '${got}'; valid: ${valid}`);
  };
  if (c.tokenizer !== undefined && !(TOKENIZER_NAMES as readonly string[]).includes(c.tokenizer)) fail('--tokenizer', TOKENIZER_NAMES.join(', '), c.tokenizer);
  for (const [flag, v] of [['--context', c.context], ['--layers', c.layers], ['--heads', c.heads], ['--dim', c.dim], ['--accumulate', c.accumulate]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) fail(flag, 'an integer >= 1', v);
  }
}

/** The quantization config of a language-model run: --quant-config, or --quant read as a language-model preset. */
export function languageModelQatConfig(c: TrainConfig): QatConfig | undefined {
  if (!c.quant && !c.quantConfig) return undefined;
  const config = c.quantConfig ?? presetConfig(c.quant!, 'language-model');
  // EfficientQAT trains the weights' step sizes (Block-AP with the weights, then E2E-QP alone): min/max weight
  // scales (w8a8) become LSQ step sizes, which start at the same min/max scale (Chen et al. 2024 quantize every
  // bit-width with learnable step sizes). Ternary (b158) has no uniform grid and stays refused.
  if (c.method === 'efficientqat' && config.weight.method === 'minmax') return { ...config, weight: { ...config.weight, method: 'lsq' } };
  return config;
}

/**
 * Trains a language model as `qat train --data moby-dick|sotu|FILE.txt` does: windows of context+1 tokens drawn
 * from (seed, step), AdamW with warmup + cosine, clipping, optional gradient accumulation; writes checkpoint.qat
 * (every checkpointEvery steps and at the end), model.onnx and metrics.json into runDir; --resume continues
 * exactly (same windows, same optimizer state, the validation history so far). The directory is handled as for
 * image runs (run-lifecycle.ts).
 */
export interface LanguageModelPlan extends TrainPlan {
  task: 'language-model';
  text: TextData;
  context: number;
  modelValue: Model;
  resumed?: { ckpt: Checkpoint; saved: TrainConfig };
  source?: Checkpoint;
  /** A resumed run's step times so far (step-times.ts). */
  stepTimes: number[];
}

/** planTrain for a language-model run: config, checkpoint, text (UTF-8, long enough), model and directory checked. */
export function planLanguageModel(
  config: TrainConfig,
  runDir: string,
  options: { maxThreads?: number; model?: Model; resumed?: { ckpt: Checkpoint; saved: TrainConfig }; source?: Checkpoint } = {},
): LanguageModelPlan {
  const resumed = options.resumed;
  if (resumed) config = resumedConfig(resumed.saved, config);
  if (options.source && !resumed) {
    // QAT fine-tuning from an fp32 language-model run: its model, text, tokenizer and context.
    const saved = options.source.config as unknown as TrainConfig;
    config = { ...config, model: saved.model, data: saved.data, tokenizer: saved.tokenizer, context: saved.context, layers: saved.layers, heads: saved.heads, dim: saved.dim, from: path.resolve(config.from!) };
  }
  checkTrainConfig({ ...config, model: modelLabel(config.model) });
  if (options.maxThreads !== undefined && config.threads > options.maxThreads) {
    throw new InputError(`the run uses --threads ${config.threads}, more than this machine's ${options.maxThreads} cores; pass --threads N (N <= ${options.maxThreads})`);
  }
  checkLanguageModelConfig(config);
  if (config.distillData === 'generated' && !(options.source || resumed)) {
    throw new InputError('--distill-data generated needs --from LM_RUN: the fp32 language-model run that generates the windows and teaches');
  }
  if (config.distillData === 'generated' && !resumed && !languageModelQatConfig(config)) throw new InputError('--distill-data generated needs --quant or --quant-config (it is a QAT method)');
  if (!resumed) checkLanguageModelMethods(config, Boolean(options.source));
  RunDirectory.check(runDir, { resume: Boolean(resumed), requiredFile: CHECKPOINT_FILE });
  const text = loadTextData(config.data, (config.tokenizer ?? 'bytes') as TokenizerName);
  const qatConfig = resumed ? undefined : languageModelQatConfig(config);
  const model: Model = resumed ? resumed.ckpt.model : (options.source?.model ?? resolveLanguageModel(config, text, options.model));
  // Group widths and overrides checked against the layers before training; the plan is also the table --dry-run prints.
  const layerTable = qatConfig ? plannedReport(model, planQuantization(model, qatConfig), qatConfig, config.quant) : undefined;
  const kv = resumed ? undefined : runKvCache(config);
  if (kv && !qatConfig && !options.source) throw new InputError('--kv-bits: a run from scratch without --quant is the fp32 baseline; quantize the KV cache when fine-tuning it (--from FP32_RUN --kv-bits N) or with --quant PRESET');
  if (kv) withKvCacheQuantization(model, kv); // the attention it quantizes is found before training
  const context = config.context ?? model.lm?.context ?? TRANSFORMER_DEFAULTS.context;
  checkTextLength(text, context, config.data);
  const totalSteps = config.steps ?? LANGUAGE_MODEL_DEFAULTS.steps;
  languageModelPhases(config, totalSteps, { model }); // --lora-merge-steps and --block-ap-steps against --steps, the blocks
  const startStep = resumed?.ckpt.step ?? 0;
  if (resumed) checkStartStep(startStep, totalSteps, path.join(runDir, CHECKPOINT_FILE), config.steps !== resumed.saved.steps);
  const stepTimes = resumed ? storedStepTimes(resumed.ckpt.metrics, startStep, path.join(runDir, CHECKPOINT_FILE)) : [];
  const complete = Boolean(resumed && startStep === totalSteps && finishedMetrics(runDir, startStep));
  return {
    config, runDir, task: 'language-model', resume: Boolean(resumed), startStep, totalSteps, complete, model: modelLabel(config.model),
    parameters: parameterCount(model), text, context, modelValue: model, resumed, source: options.source, stepTimes,
    quant: qatConfig || resumed?.ckpt.model.quant ? (config.quant ?? 'custom') : undefined, from: config.from, ...(layerTable ? { layerTable } : {}),
  };
}

export async function trainLanguageModel(
  config: TrainConfig,
  runDir: string,
  options: { resume?: boolean; hooks?: RunHooks; stopAtStep?: number; model?: Model; plan?: LanguageModelPlan; signal?: AbortSignal; maxThreads?: number } = {},
): Promise<LanguageModelResult> {
  const hooks = options.hooks ?? {};
  const plan = options.plan ?? planLanguageModel(config, runDir, { ...options, resumed: options.resume ? openResumedLanguageModel(runDir) : undefined });
  config = plan.config;
  const { text, context, resumed, startStep, totalSteps } = plan;
  if (plan.complete) {
    hooks.log?.(`run ${runDir} is already complete (step ${startStep} of ${totalSteps}); nothing was changed`);
    return finishedMetrics(runDir, startStep) as LanguageModelResult;
  }
  let model = plan.modelValue;
  const accumulate = config.accumulate ?? 1;
  const ckptPath = path.join(runDir, CHECKPOINT_FILE);
  let initial: Map<string, Tensor> | undefined;
  if (resumed) {
    initial = new Map(resumed.ckpt.optimizerState);
    for (const name of model.params) initial.set(name, model.graph.initializers.get(name)!);
  } else {
    const qatConfig = languageModelQatConfig(config);
    if (qatConfig) {
      model = prepareLanguageModelQat(model, qatConfig, config.quant);
      hooks.onLayerTable?.(modelReport(model));
    }
    const kv = runKvCache(config);
    if (kv) {
      model = withKvCacheQuantization(model, kv);
      hooks.log?.(`quant KV cache: ${kvDescription(kv)}, written by every attention layer`);
    }
    model = withStoredPrecision(model);
  }
  const storedFp32 = resumed?.ckpt.metrics?.fp32_perplexity;
  const fp32Perplexity = typeof storedFp32 === 'number' ? storedFp32 : plan.source ? (await evaluateLanguageModel(plan.source.model, text.val, context, { threads: config.threads })).val_perplexity : undefined;
  if (fp32Perplexity !== undefined && !resumed) hooks.log?.(`fp32 val_perplexity of ${config.from}: ${fp32Perplexity.toFixed(3)}`);
  const session = RunSession.open(runDir, Boolean(resumed));
  let trainer: Trainer | undefined;
  let probe: QuantHealthProbe | undefined;
  try {
    const optimizer = {
      ...defaultOptimizer(config.optimizer),
      beta2: config.optimizer === 'sgd' ? undefined : (config.beta2 ?? LANGUAGE_MODEL_DEFAULTS.beta2),
      clipNorm: config.clipNorm,
      ...(config.weightDecay !== undefined ? { weightDecay: config.weightDecay } : {}),
    };
    const dataFree = config.distillData === 'generated' ? await dataFreeWindows(plan, hooks) : undefined;
    const extraLoss = dataFree ? languageModelDistill(plan.source!.model, { weight: 1, temperature: 1 }) : undefined;
    // Phases (lm-phases.ts): each a span of steps with its own step graph, rebuilt from the run's model at its start.
    const phases = languageModelPhases(config, totalSteps, { extraLoss: extraLoss ?? (config.distill && plan.source ? languageModelDistill(plan.source.model, config.distill) : undefined), teacher: plan.source?.model, model });
    let phaseIndex = phaseAt(phases, startStep);
    let run = model;
    const startPhase = (i: number, carry?: Map<string, Tensor>) => {
      const p = phases[i];
      const phaseOptimizer = p.weightDecay !== undefined ? { ...optimizer, weightDecay: p.weightDecay } : optimizer;
      return Trainer.create(p.enter(run), { batchSize: config.batch, classes: 0, sequenceLength: context, accumulate, optimizer: phaseOptimizer, threads: config.threads, extraLoss: p.extraLoss }, carry);
    };
    // A resumed run at the first step of a phase that restarts Adam must not take the previous phase's moments.
    const resumeState = resumed && (startStep > phases[phaseIndex].start || phases[phaseIndex].continueOptimizer) ? initial : undefined;
    trainer = await startPhase(phaseIndex, resumeState);
    if (resumeState) checkResumeState(trainer.step.carried, resumed!.ckpt.optimizerState, ckptPath);
    trainer.stepCount = startStep;
    /** The run's model with the current phase's trained values (what checkpoints, evaluation and model.onnx take). */
    const currentRun = () => phases[phaseIndex].leave(run, trainer!.currentModel());
    const evaluateRun = () => (phases[phaseIndex].whole ? trainer!.evaluateText(text.val, context) : evaluateLanguageModel(currentRun(), text.val, context, { threads: config.threads }));
    const sampler = dataFree ? new GeneratedWindowSampler(dataFree.windows, config.batch, config.seed) : new WindowSampler(text.train, { batch: config.batch, context, seed: config.seed });
    const evalEvery = config.evalEvery ?? LANGUAGE_MODEL_DEFAULTS.evalEvery;
    const every = config.checkpointEvery ?? LANGUAGE_MODEL_DEFAULTS.checkpointEvery;
    const history: LanguageModelResult['history'] = resumed ? storedHistory(resumed.ckpt, ckptPath) : [];
    const losses: number[] = [];
    const msPerStep = [...plan.stepTimes];
    let savedStep = resumed ? startStep : -1;
    probe = model.quant ? await QuantHealthProbe.create(healthModel(model), config.threads) : undefined;
    const health = probe
      ? new QuantHealthTracker(probe, (n) => trainer?.carriedData(n) ?? (run.graph.initializers.get(n)?.data as Float32Array | undefined), config.healthEvery ?? DEFAULT_HEALTH_EVERY, totalSteps, resumed ? { points: resumed.ckpt.metrics?.quant_health, start: resumed.ckpt.metrics?.quant_health_start, file: ckptPath, step: startStep } : undefined)
      : undefined;
    if (!resumed) await health?.after(0);
    const checkpoint = () => {
      const t = trainer!;
      if (t.stepCount === savedStep) return;
      saveCheckpoint(ckptPath, {
        model: currentRun(),
        optimizerState: t.values('optimizer'),
        step: t.stepCount,
        rng: { seed: config.seed, step: t.stepCount },
        config: config as unknown as Record<string, unknown>,
        metrics: { history, ...(health?.stored() ?? {}), ...(fp32Perplexity !== undefined ? { fp32_perplexity: fp32Perplexity } : {}), ...(dataFree ? { [GENERATED_SHA_KEY]: dataFree.sha256 } : {}), [STEP_TIMES_KEY]: msPerStep },
      });
      savedStep = t.stepCount;
      session.checkpointed();
    };
    hooks.onStart?.({ totalSteps, startStep, model, batch: config.batch });
    const stopAt = Math.min(totalSteps, options.stopAtStep ?? totalSteps);
    let evaluation: LanguageModelEval | undefined;
    while (trainer.stepCount < stopAt) {
      if (options.signal?.aborted) {
        checkpoint();
        throw new TrainingInterruptedError(`training interrupted at step ${trainer.stepCount} of ${totalSteps}; checkpoint saved in ${ckptPath}: continue with qat train --out ${runDir} --resume`);
      }
      if (trainer.stepCount >= phases[phaseIndex].end) {
        // Phase boundary: the run's model takes the phase's values, and the next phase's step graph is built from it.
        const step = trainer.stepCount;
        run = currentRun();
        const carry = phases[phaseIndex + 1].continueOptimizer ? trainer.values('optimizer') : undefined;
        await trainer.release();
        trainer = undefined;
        phaseIndex++;
        hooks.log?.(`step ${step}: ${phases[phaseIndex].name}`);
        trainer = await startPhase(phaseIndex, carry);
        trainer.stepCount = step;
      }
      const step = trainer.stepCount;
      const lr = phases[phaseIndex].lr(step);
      await health?.before(step);
      const t0 = performance.now();
      let loss = 0;
      let correct = 0;
      let result;
      for (let micro = 0; micro < accumulate; micro++) {
        sampler.fill(step * accumulate + micro, trainer.batchTokens, trainer.batchLabels);
        try {
          result = await trainer.trainStep(lr, micro === accumulate - 1);
        } catch (e) {
          if (e instanceof TrainingDivergedError) {
            throw new TrainingDivergedError(`${e.message}; training stopped. ${savedStep >= 0 ? `Last good checkpoint: ${ckptPath}` : 'No checkpoint was written yet.'}`);
          }
          throw e;
        }
        loss += result.loss / accumulate;
        correct += result.correct;
      }
      const ms = performance.now() - t0;
      losses.push(loss);
      msPerStep.push(stepTime(ms));
      const done = trainer.stepCount;
      const point: LanguageModelResult['history'][number] = { step: done, train_loss: loss, lr };
      if ((evalEvery > 0 && done % evalEvery === 0) || done === totalSteps) {
        evaluation = await evaluateRun();
        Object.assign(point, { val_loss: evaluation.val_loss, val_perplexity: evaluation.val_perplexity });
        hooks.log?.(`step ${done}: val_loss ${evaluation.val_loss.toFixed(4)} val_perplexity ${evaluation.val_perplexity.toFixed(3)}`);
      }
      history.push(point);
      await health?.after(done);
      hooks.onStep?.({ step: done, epoch: 0, totalSteps, lr, ms, loss, correct: correct / (accumulate * context), gradNorm: result!.gradNorm, metrics: { tokens_per_second: (config.batch * context * accumulate * 1000) / ms } });
      if (every > 0 && done % every === 0 && done < stopAt) checkpoint();
    }
    checkpoint();
    evaluation ??= await evaluateRun();
    const finalModel = currentRun();
    await saveRunModel(finalModel, path.join(runDir, RUN_MODEL_FILE), config.threads);
    await trainer.release();
    trainer = undefined;
    await probe?.release();
    probe = undefined;
    const ms = median(msPerStep);
    const result: LanguageModelResult = {
      model: modelLabel(config.model),
      ...(finalModel.quant ? { quant: config.quant ?? 'custom', method: 'qat' as const } : {}),
      ...(phases.length > 1 ? { phases: phases.map((p) => ({ name: p.name, start: p.start, end: p.end, ...(msPerStep.length >= p.end ? { ms_per_step_median: median(msPerStep.slice(p.start, p.end)) } : {}) })) } : {}),
      ...(fp32Perplexity !== undefined ? { fp32_perplexity: fp32Perplexity } : {}),
      ...(kvCacheQuantOf(finalModel.graph) ? { kv_cache: kvCacheJson(kvCacheQuantOf(finalModel.graph)!) } : {}),
      ...(dataFree ? { distill_data: 'generated' as const, generated_samples: dataFree.windows.count } : {}),
      task: 'language-model',
      data: config.data,
      epochs: 0,
      test_accuracy: evaluation.val_token_accuracy,
      test_loss: evaluation.val_loss,
      tokenizer: text.tokenizer.name,
      parameters: parameterCount(finalModel),
      steps: Math.max(savedStep, startStep),
      batch: config.batch,
      context,
      accumulate,
      seed: config.seed,
      threads: config.threads,
      val_loss: evaluation.val_loss,
      val_perplexity: evaluation.val_perplexity,
      bits_per_byte: evaluation.bits_per_byte,
      val_token_accuracy: evaluation.val_token_accuracy,
      val_tokens: evaluation.val_tokens,
      train_loss_last: history.at(-1)?.train_loss ?? NaN,
      ms_per_step_median: ms,
      tokens_per_second: (config.batch * context * accumulate * 1000) / ms,
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
      run_dir: runDir,
      history,
      ...(health ? { quant_health: health.points } : {}),
      losses,
    };
    writeRunMetrics(runDir, result, config);
    session.finish();
    return result;
  } catch (e) {
    if (trainer) await trainer.release().catch(() => undefined);
    await probe?.release().catch(() => undefined);
    throw session.fail(e);
  }
}

/**
 * The windows of a data-free run: generated by the --from model into the run directory on a fresh run (after the
 * directory is opened, so a run that fails before its first checkpoint leaves nothing), read back and checked
 * against the SHA-256 in the checkpoint on resume, so a resumed run trains on exactly the same samples.
 */
async function dataFreeWindows(plan: LanguageModelPlan, hooks: RunHooks): Promise<{ windows: GeneratedWindows; sha256: string }> {
  const { config, runDir, context } = plan;
  const file = path.join(runDir, GENERATED_WINDOWS_FILE);
  const count = config.generatedSamples ?? DEFAULT_GENERATED_SAMPLES;
  if (plan.resumed) {
    const sha256 = plan.resumed.ckpt.metrics?.[GENERATED_SHA_KEY];
    const ckptFile = path.join(runDir, CHECKPOINT_FILE);
    if (typeof sha256 !== 'string') throw new InputError(`checkpoint '${ckptFile}': metrics.${GENERATED_SHA_KEY} is missing; a data-free run records its generated windows' SHA-256 there`);
    return { windows: readGeneratedWindows(file, { sha256, count, length: context + 1 }), sha256 };
  }
  const t0 = performance.now();
  hooks.log?.(`generating ${count} windows of ${context + 1} tokens from ${config.from} (LLM-QAT data-free: first token random, ${DATA_FREE_GREEDY_TOKENS} greedy, then sampled)`);
  const tokens = await generateDataFreeWindows(plan.source!.model, { count, length: context + 1, seed: config.seed, vocabLimit: plan.text.vocabSize, threads: config.threads });
  const windows: GeneratedWindows = { count, length: context + 1, seed: config.seed, vocabLimit: plan.text.vocabSize, tokens };
  const sha256 = writeGeneratedWindows(file, windows);
  hooks.log?.(`generated ${count} windows in ${((performance.now() - t0) / 1000).toFixed(1)} s into ${file}`);
  return { windows, sha256 };
}

/** --distill, QAT + LoRA and EfficientQAT start from an fp32 language-model run (--from) and quantize it (--quant). */
function checkLanguageModelMethods(c: TrainConfig, hasSource: boolean): void {
  const quantized = Boolean(c.quant || c.quantConfig);
  for (const [flag, used] of [['--distill', c.distill], ['--lora-rank', c.lora], ['--method efficientqat', c.method === 'efficientqat']] as const) {
    if (!used) continue;
    if (!hasSource) throw new InputError(`${flag} needs --from LM_RUN: the fp32 language-model run it fine-tunes${flag === '--distill' ? ' and distills from' : ''}`);
    if (!quantized && flag !== '--distill') throw new InputError(`${flag} needs --quant or --quant-config (it is a QAT method)`);
  }
}

function openResumedLanguageModel(runDir: string): { ckpt: Checkpoint; saved: TrainConfig } {
  const file = path.join(runDir, CHECKPOINT_FILE);
  if (!fs.existsSync(file)) throw new InputError(`--resume: no checkpoint at ${file}`);
  const ckpt = loadCheckpoint(file);
  return { ckpt, saved: checkStoredTrainConfig(ckpt.config, file) as TrainConfig };
}

/** Both splits hold at least one window (context + 1 tokens), checked before anything is built. */
function checkTextLength(text: TextData, context: number, data: string): void {
  for (const [split, stream] of [['training', text.train], ['validation', text.val]] as const) {
    if (stream.tokens.length < context + 1) {
      const total = text.train.tokens.length + text.val.tokens.length;
      throw new InputError(
        `--data ${data}: too short for --context ${context}: its ${split} split (${split === 'training' ? '90' : '10'}% of ${total} ${text.tokenizer.name} tokens) has ${stream.tokens.length} tokens, ` +
          `fewer than one window (context + 1 = ${context + 1}); use more text (at least ${Math.ceil(((context + 1) * 10) / (split === 'training' ? 9 : 1))} tokens) or a smaller --context`,
      );
    }
  }
}

/** The validation history a checkpoint carries, checked (a resumed run's metrics.json continues it). */
function storedHistory(ckpt: Checkpoint, file: string): LanguageModelResult['history'] {
  const h = ckpt.metrics?.history;
  if (h === undefined) return [];
  const ok =
    Array.isArray(h) &&
    h.every((p) => p && typeof p === 'object' && Number.isInteger(p.step) && typeof p.train_loss === 'number' && typeof p.lr === 'number' && (p.val_loss === undefined || typeof p.val_loss === 'number'));
  if (!ok) throw new InputError(`checkpoint '${file}': metrics.history must be a list of { step, train_loss, lr, val_loss? } points`);
  return (h as LanguageModelResult['history']).filter((p) => p.step <= ckpt.step);
}
