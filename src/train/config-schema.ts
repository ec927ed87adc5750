/**
 * The schema of a training run's config (TrainConfig): what `train()` accepts from TypeScript or the CLI, and what a
 * checkpoint must hold before `--resume` trusts it. Messages name the flag for a config the user wrote and the
 * checkpoint field for a stored one, so a corrupt checkpoint is never blamed on a flag nobody passed.
 */
import { z } from 'zod';
import { DATASET_NAMES } from '../data/index.js';
import { isTextData } from '../data/text.js';
import { TOKENIZER_NAMES } from '../data/tokenizers/index.js';
import { kvCacheSchema, qatConfigSchema } from '../quant/config-file.js';
import { KV_LAYOUTS } from '../quant/kv-cache.js';
import { PRESETS } from '../quant/presets.js';
import { MAX_THREADS } from '../validate/limits.js';
import { bool, intIn, numberIn, oneOf, parseWith, text } from '../validate/schema.js';
import { OPTIMIZERS } from './optimizer.js';
import { SCHEDULES } from './schedule.js';

const MAX_STEPS = 2 ** 31 - 1;

export const trainConfigSchema = z.strictObject({
  model: text('a zoo model name or a path to an .onnx file'),
  data: z
    .string({ error: `must be one of ${DATASET_NAMES.join(', ')}, moby-dick, sotu or a path ending in .txt` })
    .refine((d) => (DATASET_NAMES as readonly string[]).includes(d) || isTextData(d), { error: `must be one of ${DATASET_NAMES.join(', ')}, moby-dick, sotu or a path ending in .txt` }),
  epochs: intIn(1, 100000),
  steps: intIn(1, MAX_STEPS).optional(),
  batch: intIn(1, 1 << 16),
  optimizer: oneOf(OPTIMIZERS),
  lr: numberIn(0, Infinity, { exclusiveMin: true }),
  weightDecay: numberIn(0, 1e3).optional(),
  schedule: oneOf(SCHEDULES),
  warmupSteps: intIn(0, MAX_STEPS),
  labelSmoothing: numberIn(0, 1, { exclusiveMax: true }),
  clipNorm: numberIn(0, Infinity),
  augmentShift: intIn(0, 64),
  seed: intIn(0, 2 ** 32 - 1),
  threads: intIn(1, MAX_THREADS),
  input: z
    .strictObject({
      scale: numberIn(-1e9, 1e9).optional(),
      mean: z.array(numberIn(-1e9, 1e9)).min(1).max(4096).optional(),
      std: z.array(numberIn(-1e9, 1e9).refine((v) => v !== 0, { error: 'must be non-zero' })).min(1).max(4096).optional(),
    })
    .optional(),
  quant: z.union([oneOf(PRESETS), z.literal('custom')], { error: `must be one of ${PRESETS.join(', ')} or custom` }).optional(),
  quantConfig: qatConfigSchema.optional(),
  from: text('a run directory').optional(),
  distill: z.strictObject({ weight: numberIn(0, 1), temperature: numberIn(0, 1e3, { exclusiveMin: true }) }).optional(),
  bnFreezeStep: intIn(0, MAX_STEPS).optional(),
  observerFreezeStep: intIn(0, MAX_STEPS).optional(),
  calibBatches: intIn(1, 1 << 20).optional(),
  oscillation: z.strictObject({ dampen: numberIn(0, 1e6).optional(), freezeThreshold: numberIn(0, 1).optional(), momentum: numberIn(0, 1).optional(), reportThreshold: numberIn(0, 1).optional() }).optional(),
  tokenizer: oneOf(TOKENIZER_NAMES).optional(),
  context: intIn(1, 1 << 20).optional(),
  layers: intIn(1, 4096).optional(),
  heads: intIn(1, 4096).optional(),
  dim: intIn(1, 1 << 20).optional(),
  accumulate: intIn(1, 1 << 16).optional(),
  beta2: numberIn(0, 1, { exclusiveMax: true }).optional(),
  evalEvery: intIn(0, MAX_STEPS).optional(),
  healthEvery: intIn(0, MAX_STEPS).optional(),
  checkpointEvery: intIn(0, MAX_STEPS).optional(),
  distillData: oneOf(['real', 'generated'] as const).optional(),
  generatedSamples: intIn(1, 1 << 20).optional(),
  kvCache: kvCacheSchema.extend({ layout: oneOf(KV_LAYOUTS) }).optional(),
  lora: z.strictObject({ rank: intIn(1, 1 << 16), alpha: numberIn(0, 1e6, { exclusiveMin: true }).optional(), mergeSteps: intIn(1, MAX_STEPS).optional() }).optional(),
  method: oneOf(['qat', 'efficientqat'] as const).optional(),
  blockApSteps: intIn(1, MAX_STEPS).optional(),
});

/** Config fields and the flag that sets each (for messages about a config the user gave). */
const FLAGS: Record<string, string> = {
  model: '--model', data: '--data', epochs: '--epochs', steps: '--steps', batch: '--batch', optimizer: '--optimizer', lr: '--lr',
  weightDecay: '--weight-decay', schedule: '--schedule', warmupSteps: '--warmup-steps', labelSmoothing: '--label-smoothing',
  clipNorm: '--clip-norm', augmentShift: '--augment-shift', seed: '--seed', threads: '--threads', 'input.scale': '--input-scale',
  'input.mean': '--input-mean', 'input.std': '--input-std', quant: '--quant', quantConfig: '--quant-config', from: '--from',
  'distill.weight': '--distill-weight', 'distill.temperature': '--distill-temperature', bnFreezeStep: '--bn-freeze-step',
  observerFreezeStep: '--observer-freeze-step', calibBatches: '--calib-batches', 'oscillation.dampen': '--oscillation-dampen',
  'oscillation.freezeThreshold': '--oscillation-freeze', tokenizer: '--tokenizer', context: '--context', layers: '--layers',
  heads: '--heads', dim: '--dim', accumulate: '--accumulate', evalEvery: '--eval-every', healthEvery: '--health-every', checkpointEvery: '--checkpoint-every',
  distillData: '--distill-data', generatedSamples: '--generated-samples', 'kvCache.bits': '--kv-bits', 'kvCache.layout': '--kv-layout',
  'lora.rank': '--lora-rank', 'lora.alpha': '--lora-alpha', 'lora.mergeSteps': '--lora-merge-steps', method: '--method', blockApSteps: '--block-ap-steps',
};

function flagFor(path: string): string {
  if (FLAGS[path]) return FLAGS[path];
  const prefix = Object.keys(FLAGS).find((k) => path.startsWith(`${k}.`) || path.startsWith(`${k}[`));
  return prefix ? `${FLAGS[prefix]} (${path})` : path;
}

export type CheckedTrainConfig = z.infer<typeof trainConfigSchema>;

/** A config given by the user (CLI or TypeScript): errors name the flag. */
export function checkTrainConfig<T>(config: T): T {
  const defined = Object.fromEntries(Object.entries(config as object).filter(([, v]) => v !== undefined));
  parseWith(trainConfigSchema, defined, 'train config', flagFor);
  return config;
}

/** A config read from a checkpoint: errors name the file and the field (config.batch, ...). */
export function checkStoredTrainConfig(config: unknown, file: string): CheckedTrainConfig {
  return parseWith(trainConfigSchema, config, `checkpoint '${file}'`, (p) => `config.${p}`);
}

// Compile-time guard: a field added to TrainConfig must be added to the schema (a stored config with it would be refused).
type Unchecked = Exclude<keyof import('./run.js').TrainConfig, keyof CheckedTrainConfig>;
export const EVERY_TRAIN_CONFIG_FIELD_IS_CHECKED: [Unchecked] extends [never] ? true : Unchecked = true;
