import fs from 'node:fs';
import path from 'node:path';
import { loadTextData, TextData, WindowSampler } from '../data/text';
import { TOKENIZER_NAMES, TokenizerName } from '../data/tokenizers/index';
import { Tensor } from '../ir/tensor';
import { Model, parameterCount } from '../models/model';
import { importForTraining } from '../models/resolve';
import { gpt, llama, TRANSFORMER_DEFAULTS } from '../models/transformers';
import { saveModel } from '../onnx/model-io';
import { writeFileAtomic } from '../onnx/atomic-write';
import { loadCheckpoint, saveCheckpoint } from './checkpoint';
import { median } from './fit';
import { defaultOptimizer } from './optimizer';
import { learningRate } from './schedule';
import { Trainer, TrainingDivergedError } from './trainer';
import { modelLabel } from './run';
import type { RunHooks, TrainConfig, TrainResult } from './run';
import { LanguageModelEval } from './evaluate-language-model';

export const LANGUAGE_MODELS = ['gpt', 'llama'] as const;

/**
 * Defaults of a language-model run (`qat train --model gpt --data moby-dick`): 2000 AdamW steps of 32 windows of
 * 128 tokens, peak lr 2e-3 after 100 warmup steps, cosine to 10% of the peak, betas (0.9, 0.95), weight decay
 * 0.1 on matrices only, gradient clipping at norm 1 (nanoGPT's recipe, shortened for the 2-core budget).
 */
export const LANGUAGE_MODEL_DEFAULTS = {
  steps: 2000,
  batch: 32,
  lr: 2e-3,
  warmupSteps: 100,
  weightDecay: 0.1,
  clipNorm: 1,
  beta2: 0.95,
  evalEvery: 250,
  checkpointEvery: 250,
};

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
  if (c.quant || c.quantConfig) throw new Error('--quant: quantization-aware training of language models is not available yet; train the fp32 model without --quant');
}

/**
 * Trains a language model as `qat train --data moby-dick|sotu|FILE.txt` does: windows of context+1 tokens drawn
 * from (seed, step), AdamW with warmup + cosine, clipping, optional gradient accumulation; writes checkpoint.qat
 * (every checkpointEvery steps and at the end), model.onnx and metrics.json into runDir; --resume continues
 * exactly (same windows, same optimizer state).
 */
export async function trainLanguageModel(
  config: TrainConfig,
  runDir: string,
  options: { resume?: boolean; hooks?: RunHooks; stopAtStep?: number; model?: Model } = {},
): Promise<LanguageModelResult> {
  const hooks = options.hooks ?? {};
  const ckptPath = path.join(runDir, 'checkpoint.qat');
  let model: Model;
  let initial: Map<string, Tensor> | undefined;
  let startStep = 0;
  if (options.resume) {
    if (!fs.existsSync(ckptPath)) throw new Error(`--resume: no checkpoint at ${ckptPath}`);
    const ckpt = loadCheckpoint(ckptPath);
    const saved = ckpt.config as unknown as TrainConfig;
    config = { ...saved, steps: config.steps ?? saved.steps, threads: config.threads ?? saved.threads };
    model = ckpt.model;
    initial = new Map(ckpt.optimizerState);
    for (const name of model.params) initial.set(name, model.graph.initializers.get(name)!);
    startStep = ckpt.step;
  }
  checkLanguageModelConfig(config);
  const text = loadTextData(config.data, (config.tokenizer ?? 'bytes') as TokenizerName);
  if (!options.resume) model = resolveLanguageModel(config, text, options.model);
  const context = config.context ?? model!.lm?.context ?? TRANSFORMER_DEFAULTS.context;
  const accumulate = config.accumulate ?? 1;
  const totalSteps = config.steps ?? LANGUAGE_MODEL_DEFAULTS.steps;
  const optimizer = {
    ...defaultOptimizer(config.optimizer),
    beta2: config.optimizer === 'sgd' ? undefined : (config.beta2 ?? LANGUAGE_MODEL_DEFAULTS.beta2),
    clipNorm: config.clipNorm,
    ...(config.weightDecay !== undefined ? { weightDecay: config.weightDecay } : {}),
  };
  const trainer = await Trainer.create(model!, { batchSize: config.batch, classes: 0, sequenceLength: context, accumulate, optimizer, threads: config.threads }, initial);
  trainer.stepCount = startStep;
  fs.mkdirSync(runDir, { recursive: true });
  const sampler = new WindowSampler(text.train, { batch: config.batch, context, seed: config.seed });
  // Cosine to 10% of the peak, as nanoGPT and most LM recipes decay.
  const schedule = { kind: config.schedule, lr: config.lr, warmupSteps: config.warmupSteps, minFactor: 0.1 };
  const evalEvery = config.evalEvery ?? LANGUAGE_MODEL_DEFAULTS.evalEvery;
  const history: LanguageModelResult['history'] = [];
  const losses: number[] = [];
  const msPerStep: number[] = [];
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
  const stopAt = Math.min(totalSteps, options.stopAtStep ?? totalSteps);
  let evaluation: LanguageModelEval | undefined;
  try {
    while (trainer.stepCount < stopAt) {
      const step = trainer.stepCount;
      const lr = learningRate(schedule, step, totalSteps);
      const t0 = performance.now();
      let loss = 0;
      let correct = 0;
      let result;
      for (let micro = 0; micro < accumulate; micro++) {
        sampler.fill(step * accumulate + micro, trainer.batchTokens, trainer.batchLabels);
        result = await trainer.trainStep(lr, micro === accumulate - 1);
        loss += result.loss / accumulate;
        correct += result.correct;
      }
      const ms = performance.now() - t0;
      losses.push(loss);
      msPerStep.push(ms);
      const done = trainer.stepCount;
      const point: LanguageModelResult['history'][number] = { step: done, train_loss: loss, lr };
      if ((evalEvery > 0 && done % evalEvery === 0) || done === totalSteps) {
        evaluation = await trainer.evaluateText(text.val, context);
        Object.assign(point, { val_loss: evaluation.val_loss, val_perplexity: evaluation.val_perplexity });
        hooks.log?.(`step ${done}: val_loss ${evaluation.val_loss.toFixed(4)} val_perplexity ${evaluation.val_perplexity.toFixed(3)}`);
      }
      history.push(point);
      hooks.onStep?.({ step: done, epoch: 0, totalSteps, lr, ms, loss, correct: correct / (accumulate * context), gradNorm: result!.gradNorm, metrics: { tokens_per_second: (config.batch * context * accumulate * 1000) / ms } });
      if (done % LANGUAGE_MODEL_DEFAULTS.checkpointEvery === 0 && done < stopAt) checkpoint();
    }
  } catch (e) {
    await trainer.release();
    if (e instanceof TrainingDivergedError) {
      throw new TrainingDivergedError(`${e.message}; training stopped. ${lastCheckpoint ? `Last good checkpoint: ${lastCheckpoint}` : 'No checkpoint was written yet.'}`);
    }
    throw e;
  }
  checkpoint();
  evaluation ??= await trainer.evaluateText(text.val, context);
  const finalModel = trainer.currentModel();
  saveModel(finalModel.graph, path.join(runDir, 'model.onnx'));
  await trainer.release();
  const ms = median(msPerStep);
  const result: LanguageModelResult = {
    model: modelLabel(config.model),
    task: 'language-model',
    data: config.data,
    epochs: 0,
    test_accuracy: evaluation.val_token_accuracy,
    test_loss: evaluation.val_loss,
    tokenizer: text.tokenizer.name,
    parameters: parameterCount(finalModel),
    steps: trainer.stepCount,
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
    train_loss_last: losses.at(-1) ?? NaN,
    ms_per_step_median: ms,
    tokens_per_second: (config.batch * context * accumulate * 1000) / ms,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    run_dir: runDir,
    history,
    losses,
  };
  const { losses: _losses, ...summary } = result;
  writeFileAtomic(path.join(runDir, 'metrics.json'), JSON.stringify({ ...summary, config }, null, 2) + '\n');
  return result;
}
