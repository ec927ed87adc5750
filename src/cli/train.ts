import { Command } from 'commander';
import path from 'node:path';
import { DATASET_NAMES } from '../data/index.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { OPTIMIZERS } from '../train/optimizer.js';
import { defaultRunDir, DEFAULT_TRAIN_CONFIG, train, TrainConfig, TrainResult } from '../train/run.js';
import { SCHEDULES } from '../train/schedule.js';
import { choiceOption, dataOption, defaultThreads, floatListOption, floatOption, intOption, maxThreads, threadsOption, outputFileOption } from './options.js';
import { checkApplicableFlags } from './train-flags.js';
import { CHECKPOINT_FILE, TrainingInterruptedError } from '../train/run-lifecycle.js';
import { planTrain } from '../train/run.js';
import { EXIT } from './run-cli.js';
import { isTextData, TEXT_DATASETS } from '../data/text.js';
import { TOKENIZER_NAMES } from '../data/tokenizers/index.js';
import { B158_SCRATCH_LR } from '../train/lm-phases.js';
import { DEFAULT_GENERATED_SAMPLES, LANGUAGE_MODEL_DEFAULTS, LANGUAGE_MODEL_QAT_DEFAULTS, LanguageModelResult } from '../train/run-language-model.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { TRANSFORMER_DEFAULTS } from '../models/transformers.js';
import { PRESETS, PresetTask } from '../quant/presets.js';
import { loadQuantConfigFile, nameQuantConfig } from '../quant/config-file.js';
import { Progress, progressHooks } from './progress.js';
import { KIVI_GROUP_SIZE, KV_LAYOUTS } from '../quant/kv-cache.js';
import { LANGUAGE_MODEL_DISTILL_DEFAULTS } from '../train/lm-distill.js';
import { formatInspectReport } from '../inspect/format-table.js';

export function addTrainOptions(cmd: Command): Command {
  const d = DEFAULT_TRAIN_CONFIG;
  return cmd
    .option('--model <name|file.onnx>', 'lenet, mlp, resnet8, mobilenet, gpt, llama, or an .onnx file', d.model as string)
    .option('--data <name>', `dataset: ${DATASET_NAMES.join(', ')} (images), ${TEXT_DATASETS.join(', ')} or FILE.txt (text: a language model)`, dataOption(DATASET_NAMES, TEXT_DATASETS), d.data)
    .option('--epochs <n>', 'epochs', intOption('--epochs', 1), d.epochs)
    .option('--steps <n>', 'stop after N steps in all, then evaluate', intOption('--steps', 1))
    .option('--batch <n>', 'batch size', intOption('--batch', 1), d.batch)
    .option('--optimizer <name>', `${OPTIMIZERS.join(', ')}`, choiceOption('--optimizer', OPTIMIZERS), d.optimizer)
    .option('--lr <x>', `peak learning rate (language models: 3e-3; --from QAT 3e-4; b158 from scratch ${B158_SCRATCH_LR})`, floatOption('--lr', { min: 0, exclusiveMin: true }), d.lr)
    .option('--weight-decay <x>', 'weight decay (default: 0.01 for adamw, 5e-4 for sgd)', floatOption('--weight-decay', { min: 0 }))
    .option('--schedule <name>', `${SCHEDULES.join(', ')}`, choiceOption('--schedule', SCHEDULES), d.schedule)
    .option('--warmup-steps <n>', 'linear warmup steps', intOption('--warmup-steps', 0), d.warmupSteps)
    .option('--label-smoothing <x>', 'label smoothing in [0, 1)', floatOption('--label-smoothing', { min: 0, max: 0.999999 }), d.labelSmoothing)
    .option('--clip-norm <x>', 'clip gradients by global norm (0: off)', floatOption('--clip-norm', { min: 0 }), d.clipNorm)
    .option('--augment-shift <n>', 'random shift augmentation in pixels (0: off)', intOption('--augment-shift', 0), d.augmentShift)
    .option('--seed <n>', 'seed for initialisation, shuffling and augmentation', intOption('--seed', 0), d.seed)
    .option('--threads <n>', `ONNX Runtime intra-op threads, 1..this machine's cores (${maxThreads()}); a resumed run keeps its own`, threadsOption(), defaultThreads())
    .option('--input-scale <x>', 'imported models: multiply [0,1] pixels by this first', floatOption('--input-scale'))
    .option('--input-mean <list>', 'imported models: subtract per-channel mean (after scaling)', floatListOption('--input-mean'))
    .option('--input-std <list>', 'imported models: divide by per-channel std', floatListOption('--input-std'))
    .option('--quant <preset>', `quantization-aware training: ${PRESETS.join(', ')}`, choiceOption('--quant', PRESETS))
    .option('--quant-config <file.json>', 'full quantization config (per-layer bits, granularity, scale method)')
    .option('--from <run_dir>', 'start from this fp32 run: its model and dataset (QAT fine-tuning; the distillation teacher)')
    .option('--distill', 'distill from the --from model (KL on logits)')
    .option('--distill-weight <x>', 'weight of the distillation term in [0, 1]', floatOption('--distill-weight', { min: 0, max: 1 }), 0.5)
    .option('--distill-temperature <x>', 'distillation temperature', floatOption('--distill-temperature', { min: 0, exclusiveMin: true }), 2)
    .option('--distill-data <kind>', 'language-model QAT from --from: real (the text) or generated (LLM-QAT data-free: windows sampled from the --from model, KL to it as the only loss)', choiceOption('--distill-data', ['real', 'generated'] as const))
    .option('--generated-samples <n>', `with --distill-data generated: windows to generate (default ${DEFAULT_GENERATED_SAMPLES})`, intOption('--generated-samples', 1))
    .option('--lora-rank <r>', 'language-model QAT + LoRA: base weights frozen and fake-quantized, float adapters of rank r on every Linear, merged for the last --lora-merge-steps', intOption('--lora-rank', 1))
    .option('--lora-alpha <a>', 'LoRA scaling alpha (the adapter output is scaled by alpha / rank; default 2 x rank)', floatOption('--lora-alpha', { min: 0, exclusiveMin: true }))
    .option('--lora-merge-steps <n>', 'QAT steps after merging the adapters into the base weights, within --steps (default 10% of the steps)', intOption('--lora-merge-steps', 1))
    .option('--method <name>', 'language-model QAT method: qat (default) or efficientqat (Block-AP, then E2E-QP on the step sizes)', choiceOption('--method', ['qat', 'efficientqat'] as const))
    .option('--block-ap-steps <n>', 'efficientqat: Block-AP steps per transformer block (default: half of --steps over the blocks)', intOption('--block-ap-steps', 1))
    .option('--bn-freeze-step <n>', 'QAT: step at which BN uses running statistics (default: half the run)', intOption('--bn-freeze-step', 0))
    .option('--observer-freeze-step <n>', 'QAT: step after which activation ranges are frozen (default: 3/4 of the run)', intOption('--observer-freeze-step', 0))
    .option('--calib-batches <n>', 'QAT: batches that calibrate activation ranges first', intOption('--calib-batches', 1), 8)
    .option('--oscillation-dampen <x>', 'QAT: weight of the oscillation dampening loss (Nagel et al. 2022; 0: off)', floatOption('--oscillation-dampen', { min: 0 }))
    .option('--oscillation-freeze <f>', 'QAT: freeze weights oscillating more often than this frequency in [0, 1] (0: off)', floatOption('--oscillation-freeze', { min: 0, max: 1 }))
    .option('--tokenizer <name>', `language models: ${TOKENIZER_NAMES.join(', ')}`, choiceOption('--tokenizer', TOKENIZER_NAMES))
    .option('--context <n>', `language models: tokens per window (default ${TRANSFORMER_DEFAULTS.context})`, intOption('--context', 1))
    .option('--layers <n>', `gpt/llama: blocks (default ${TRANSFORMER_DEFAULTS.layers})`, intOption('--layers', 1))
    .option('--heads <n>', `gpt/llama: attention heads (default ${TRANSFORMER_DEFAULTS.heads})`, intOption('--heads', 1))
    .option('--dim <n>', `gpt/llama: width (default ${TRANSFORMER_DEFAULTS.dim})`, intOption('--dim', 1))
    .option('--accumulate <k>', 'language models: micro-batches per optimizer step (gradient accumulation)', intOption('--accumulate', 1))
    .option('--eval-every <n>', `validate (language models; default ${LANGUAGE_MODEL_DEFAULTS.evalEvery}) or evaluate on the test split (image runs; default 0) every N steps; 0: at the end`, intOption('--eval-every', 0))
    .option('--health-every <n>', 'QAT: record quant health (clipped, flipped codes, scale drift, oscillating) every N steps (default 25; 0: first and last step)', intOption('--health-every', 0))
    .option('--checkpoint-every <n>', 'write a checkpoint every N steps as well as at epoch ends (0: epoch ends only; default 250)', intOption('--checkpoint-every', 0))
    .option('--out <dir>', 'run directory: new or empty (default runs/<model>-<data>-<time>)')
    .option('--resume', 'continue the run in --out from its checkpoint (its saved config; only --epochs, --steps, --threads, --from, --checkpoint-every may change)')
    .option('--dry-run', 'check every input (flags, model, data, quant config, --from, --out) and print what would run; write nothing')
    .option('--kv-bits <n>', 'language models: fake-quantize the KV cache as it is written, 8, 4 or 2 bits (with --quant, or alone with --from)', choiceOption('--kv-bits', ['8', '4', '2'] as const))
    .option('--kv-layout <layout>', `with --kv-bits: ${KV_LAYOUTS.join(', ')} (per-token: LLM-QAT, keys and values per token; kivi: keys per channel in groups of ${KIVI_GROUP_SIZE} tokens, values per token, the unfinished group in float)`, choiceOption('--kv-layout', KV_LAYOUTS))
    .option('--json <file.json>', 'write the metrics as JSON to this file', outputFileOption('--json', '.json'));
}

/** `task`: what --quant-config's preset names mean (a language model's w8a8 has per-token activations). */
export function configFromOptions(o: Record<string, any>, task: PresetTask = 'classification'): TrainConfig {
  const input = o.inputScale !== undefined || o.inputMean || o.inputStd ? { scale: o.inputScale, mean: o.inputMean, std: o.inputStd } : undefined;
  return {
    model: o.model, data: o.data, epochs: o.epochs, steps: o.steps, batch: o.batch, optimizer: o.optimizer, lr: o.lr,
    weightDecay: o.weightDecay, schedule: o.schedule, warmupSteps: o.warmupSteps, labelSmoothing: o.labelSmoothing,
    clipNorm: o.clipNorm, augmentShift: o.augmentShift, seed: o.seed, threads: o.threads, input,
    quant: o.quant ?? (o.quantConfig ? 'custom' : undefined),
    quantConfig: o.quantConfig ? loadQuantConfigFile(o.quantConfig, o.quant, task) : undefined,
    from: o.from,
    distill: o.distill ? { weight: o.distillWeight, temperature: o.distillTemperature } : undefined,
    bnFreezeStep: o.bnFreezeStep,
    observerFreezeStep: o.observerFreezeStep,
    calibBatches: o.calibBatches,
    oscillation: o.oscillationDampen !== undefined || o.oscillationFreeze !== undefined ? { dampen: o.oscillationDampen ?? 0, freezeThreshold: o.oscillationFreeze ?? 0 } : undefined,
    tokenizer: o.tokenizer,
    context: o.context,
    layers: o.layers,
    heads: o.heads,
    dim: o.dim,
    accumulate: o.accumulate,
    evalEvery: o.evalEvery,
    healthEvery: o.healthEvery,
    checkpointEvery: o.checkpointEvery,
    distillData: o.distillData,
    generatedSamples: o.generatedSamples,
    kvCache: o.kvBits !== undefined ? { bits: Number(o.kvBits), layout: o.kvLayout ?? 'per-token' } : undefined,
    lora: o.loraRank !== undefined ? { rank: o.loraRank, alpha: o.loraAlpha, mergeSteps: o.loraMergeSteps } : undefined,
    method: o.method,
    blockApSteps: o.blockApSteps,
  };
}

/**
 * A language-model run takes LANGUAGE_MODEL_DEFAULTS for every training flag the user did not give (the image
 * defaults, batch 128 and lr 1e-3 for one epoch, do not suit a transformer).
 */
function withLanguageModelDefaults(config: TrainConfig, explicit: (flag: string) => boolean, d: typeof LANGUAGE_MODEL_DEFAULTS = LANGUAGE_MODEL_DEFAULTS): TrainConfig {
  const pick = <K extends keyof TrainConfig>(key: K, flag: string, value: TrainConfig[K]) => (explicit(flag) ? config[key] : value);
  return {
    ...config,
    steps: pick('steps', 'steps', d.steps),
    batch: pick('batch', 'batch', d.batch),
    lr: pick('lr', 'lr', d.lr),
    warmupSteps: pick('warmupSteps', 'warmupSteps', d.warmupSteps),
    weightDecay: pick('weightDecay', 'weightDecay', d.weightDecay),
    clipNorm: pick('clipNorm', 'clipNorm', d.clipNorm),
  };
}

/** SIGINT / SIGTERM during training: the first stops after the current step with a checkpoint, a second at once. */
function stopOnSignals(label: string): { signal: AbortSignal; exitCode: () => number; dispose: () => void } {
  const controller = new AbortController();
  let code: number = EXIT.sigint;
  const handler = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(sig === 'SIGTERM' ? EXIT.sigterm : EXIT.sigint);
    code = sig === 'SIGTERM' ? EXIT.sigterm : EXIT.sigint;
    console.error(`qat ${label}: ${sig}: stopping after this step to write a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again stops at once)`);
    controller.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return { signal: controller.signal, exitCode: () => code, dispose: () => (process.off('SIGINT', handler), process.off('SIGTERM', handler)) };
}

/**
 * The data of the run --from names, when it is a language-model run: QAT fine-tuning then takes the language-model
 * QAT defaults and flags, not the image ones that --data's default (mnist) would pick. An unreadable source is left
 * to planTrain, which names what is wrong with it.
 */
function languageModelSourceData(o: Record<string, any>, given: (flag: string) => boolean): string | undefined {
  if (o.resume || !given('from') || typeof o.from !== 'string') return undefined;
  try {
    const data = loadCheckpoint(path.join(o.from, CHECKPOINT_FILE)).config.data;
    return typeof data === 'string' && isTextData(data) ? data : undefined;
  } catch {
    return undefined;
  }
}

export async function runTrainCommand(o: Record<string, any>, label = 'train', explicit?: (flag: string) => boolean): Promise<TrainResult> {
  const given = explicit ?? (() => false);
  const sourceText = languageModelSourceData(o, given);
  checkApplicableFlags(o, given, sourceText);
  let config = configFromOptions(o, sourceText || (typeof o.data === 'string' && isTextData(o.data)) ? 'language-model' : 'classification');
  if (sourceText) config = withLanguageModelDefaults(config, given, LANGUAGE_MODEL_QAT_DEFAULTS);
  // --distill on a language model: KL alone at T = 1 unless the flags say otherwise (lm-distill.ts).
  if (sourceText && config.distill) config.distill = { weight: given('distillWeight') ? config.distill.weight : LANGUAGE_MODEL_DISTILL_DEFAULTS.weight, temperature: given('distillTemperature') ? config.distill.temperature : LANGUAGE_MODEL_DISTILL_DEFAULTS.temperature };
  else if (isTextData(config.data) && !o.resume) {
    config = withLanguageModelDefaults(config, given);
    if (config.quant === 'b158' && !given('lr')) config.lr = B158_SCRATCH_LR;
  }
  if (o.resume) {
    // A resumed run keeps its saved config; only what checkApplicableFlags allows may be given again.
    const keep = (flag: string, value: unknown) => (given(flag) ? value : undefined);
    config = { epochs: keep('epochs', o.epochs), steps: keep('steps', o.steps), threads: keep('threads', o.threads), from: keep('from', o.from), checkpointEvery: keep('checkpointEvery', o.checkpointEvery) } as unknown as TrainConfig;
  }
  if (o.resume && !o.out) throw new Error('--resume needs --out RUN_DIR (the run to continue)');
  const runDir = o.out ?? defaultRunDir(config);
  if (o.dryRun) {
    const plan = await planTrain(config, runDir, { resume: Boolean(o.resume), maxThreads: maxThreads() }).catch((e) => {
      throw nameQuantConfig(e, o.quantConfig, o.quant);
    });
    const what = plan.complete ? 'complete already: nothing to do' : `would train steps ${plan.startStep + 1}..${plan.totalSteps}`;
    console.log(
      `dry run: ${plan.task} run '${plan.model}' (${plan.parameters} parameters${plan.quant ? `, ${plan.quant} QAT` : ''}${plan.from ? ` from ${plan.from}` : ''}) on ${plan.config.data}, ` +
        `batch ${plan.config.batch}, lr ${plan.config.lr}, ${plan.config.threads} threads: ${what} into ${path.resolve(runDir)}; every input checked, nothing written`,
    );
    // The layer table of a QAT run: which layers stay at 8 bits and why, before anything trains.
    if (plan.layerTable) for (const line of formatInspectReport(plan.layerTable, { compact: true })) console.log(line);
    return { dry_run: true, ...plan } as unknown as TrainResult;
  }
  const progress = new Progress(label);
  const stop = stopOnSignals(label);
  let result: TrainResult;
  try {
    result = await train(config, runDir, {
      resume: Boolean(o.resume),
      signal: stop.signal,
      maxThreads: maxThreads(),
      hooks: {
        ...progressHooks(progress, (line) => console.error(`${label}: ${line}`)),
        onLayerTable: (report) => {
          for (const line of formatInspectReport(report, { compact: true })) console.log(line);
        },
      },
    });
  } catch (e) {
    progress.stop();
    if (e instanceof TrainingInterruptedError) Object.assign(e, { exitCode: stop.exitCode() });
    throw nameQuantConfig(e, o.quantConfig, o.quant);
  } finally {
    stop.dispose();
  }
  progress.stop();
  const { losses: _l, ...summary } = result;
  if (result.fp32_accuracy !== undefined) console.log(`fp32 accuracy ${(result.fp32_accuracy * 100).toFixed(2)}%; ${result.quant} QAT:`);
  if (result.task === 'language-model') {
    const lm = result as LanguageModelResult;
    console.log(
      `val_loss ${lm.val_loss.toFixed(4)} nats/token, val_perplexity ${lm.val_perplexity.toFixed(3)}, bits_per_byte ${lm.bits_per_byte.toFixed(3)} after ${lm.steps} steps ` +
        `(${lm.ms_per_step_median.toFixed(1)} ms/step median, ${Math.round(lm.tokens_per_second)} tokens/s); run saved in ${path.resolve(runDir)}`,
    );
  } else console.log(`test accuracy ${(result.test_accuracy * 100).toFixed(2)}% after ${result.steps} steps (${result.ms_per_step_median.toFixed(1)} ms/step median); run saved in ${path.resolve(runDir)}`);
  if (o.json) writeFileAtomic(o.json, JSON.stringify(summary, null, 2) + '\n');
  return result;
}

export function trainCommand(): Command {
  return addTrainOptions(new Command('train').description('train a model in fp32, or quantization-aware with --quant / --quant-config')).action(async (o, cmd: Command) => {
    await runTrainCommand(o, 'train', (flag) => cmd.getOptionValueSource(flag) === 'cli');
  });
}
