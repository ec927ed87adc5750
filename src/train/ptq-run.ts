import fs from 'node:fs';
import path from 'node:path';
import { DATASET_NAMES, DatasetName, loadDataset } from '../data/index.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { RUN_MODEL_FILE, saveRunModel } from '../export/run-model-file.js';
import { QatConfig } from '../quant/presets.js';
import { CALIB_BATCH_SIZE, CalibKind, quantizeLanguageModelRtn, quantizePostTraining } from '../quant/ptq.js';
import { presetConfig } from '../quant/presets.js';
import { isTextData, loadTextData } from '../data/text.js';
import { TokenizerName } from '../data/tokenizers/index.js';
import { evaluateLanguageModel } from './evaluate-language-model.js';
import { Checkpoint } from './checkpoint.js';
import { saveCheckpoint } from './checkpoint.js';
import { evaluateModel } from './evaluate.js';
import { CHECKPOINT_FILE } from './run.js';
import { openSourceRun } from './run-lifecycle.js';
import { RunDirectory } from './run-dir.js';
import { calibrationWindows, checkMethodFitsPreset, DEFAULT_CALIB_WINDOWS, LmPtqLayer, LmPtqMethod, quantizeLanguageModelPtq } from '../quant/ptq-methods/language-model-ptq.js';
import { SkippedWeight } from '../quant/ptq-methods/layer-targets.js';
import { KvCacheQuant, kvCacheJson, kvDescription, runKvCache, withKvCacheQuantization } from '../quant/kv-cache.js';
import { Model } from '../models/model.js';

export interface PtqRunConfig {
  /** The fp32 run directory (its checkpoint.qat) to quantize. */
  from: string;
  /** Preset name, or 'custom' with quantConfig. */
  quant: string;
  quantConfig?: QatConfig;
  calib: CalibKind;
  /** Batches of CALIB_BATCH_SIZE training images that calibrate the activation ranges. */
  calibBatches: number;
  threads: number;
  /** Language models: rtn (default), gptq, awq or smoothquant. */
  ptqMethod?: LmPtqMethod;
  /** Language models: calibration windows of the training split (default 128). */
  calibWindows?: number;
  /** GPTQ: quantize columns in decreasing order of diag(H). */
  actOrder?: boolean;
  /** Language models: the KV cache quantized as written (--kv-bits; RTN: its scales are dynamic, nothing to calibrate). */
  kvCache?: KvCacheQuant;
}

export interface PtqResult {
  model: string;
  quant: string;
  method: 'ptq';
  calib: CalibKind;
  calib_batches: number;
  calib_images: number;
  data: string;
  from: string;
  test_accuracy: number;
  test_loss: number;
  fp32_accuracy: number;
  fp32_loss: number;
  quantizers: number;
  calib_seconds: number;
  run_dir: string;
  /** Language-model runs (RTN): validation perplexity of the quantized and the fp32 model. */
  val_perplexity?: number;
  fp32_perplexity?: number;
  /** Language models: the PTQ method (also in `calib`), its calibration windows, and per weight what it did. */
  ptq_method?: LmPtqMethod;
  calib_windows?: number;
  act_order?: boolean;
  layers?: LmPtqLayer[];
  skipped?: SkippedWeight[];
  kv_cache?: ReturnType<typeof kvCacheJson>;
}

/** `<from>-ptq-<preset>-<calib>` next to the from-run (a language model's: `<from>-ptq-<preset>-<method>`). */
export function defaultPtqDir(c: Pick<PtqRunConfig, 'from' | 'quant' | 'calib'> & { ptqMethod?: string }): string {
  const from = path.normalize(c.from).replace(/[\\/]+$/, '');
  return `${from}-ptq-${c.quant}-${c.ptqMethod ?? c.calib}`;
}

/**
 * `qat quantize`: loads the fp32 model and dataset of a finished run, quantizes it post-training
 * (src/quant/ptq.ts), evaluates both on the test split and writes checkpoint.qat (step 0: nothing trained, the
 * config says how it was made) and metrics.json into outDir.
 */
export async function quantizeRun(config: PtqRunConfig, outDir: string, log: (line: string) => void = () => {}): Promise<PtqResult> {
  const source = openSourceRun(config.from, outDir);
  RunDirectory.check(outDir, { resume: false, requiredFile: CHECKPOINT_FILE });
  if (source.model.quant) {
    throw new Error(`--from: ${config.from} is a quantization-aware run (${source.model.quant.method ?? 'qat'} ${source.model.quant.preset ?? 'custom'}); PTQ needs an fp32 run`);
  }
  if (isTextData(String(source.config.data))) return quantizeLanguageModelRun(config, source, outDir, log);
  const data = source.config.data as DatasetName;
  if (!(DATASET_NAMES as readonly string[]).includes(data)) throw new Error(`--from: ${path.join(config.from, CHECKPOINT_FILE)} names no known dataset (config.data = '${data}'; valid: ${DATASET_NAMES.join(', ')})`);
  const dataset = loadDataset(data);
  const count = Math.min(dataset.train.count, config.calibBatches * CALIB_BATCH_SIZE);
  log(`calibrating ${config.quant} activation ranges (${config.calib}) on ${count} training images`);
  const started = Date.now();
  const model = await quantizePostTraining(
    source.model,
    config.quantConfig ?? config.quant,
    { kind: config.calib, images: dataset.train.images, count, sampleShape: dataset.train.shape, batchSize: CALIB_BATCH_SIZE },
    { preset: config.quant, threads: config.threads },
  );
  const calibSeconds = (Date.now() - started) / 1000;
  log(`evaluating fp32 and PTQ models on ${dataset.test.count} test images`);
  const fp32 = await evaluateModel(source.model, dataset.test, { threads: config.threads });
  const ptq = await evaluateModel(model, dataset.test, { threads: config.threads });
  const result: PtqResult = {
    model: (source.config.model as string | undefined) ?? source.model.name,
    quant: config.quant,
    method: 'ptq',
    calib: config.calib,
    calib_batches: config.calibBatches,
    calib_images: count,
    data,
    from: config.from,
    test_accuracy: ptq.accuracy,
    test_loss: ptq.loss,
    fp32_accuracy: fp32.accuracy,
    fp32_loss: fp32.loss,
    quantizers: model.quant!.quantizers.length,
    calib_seconds: calibSeconds,
    run_dir: outDir,
  };
  const runConfig = { ...source.config, ...config, method: 'ptq', data };
  await savePtqRun(outDir, model, (source.config.seed as number | undefined) ?? 0, runConfig, result, config.threads);
  return result;
}

/** Human name of a language-model PTQ method, as printed. */
export const LM_PTQ_METHOD_NAMES: Record<LmPtqMethod, string> = {
  rtn: 'RTN (round to nearest, min/max scales)',
  gptq: 'GPTQ',
  awq: 'AWQ',
  smoothquant: 'SmoothQuant (alpha 0.5) + RTN',
};

/**
 * `qat quantize --from` a language-model run: RTN, GPTQ, AWQ or SmoothQuant (src/quant/ptq-methods) on calibration
 * windows of the training split, and the val perplexity of the result beside fp32's.
 */
async function quantizeLanguageModelRun(config: PtqRunConfig, source: Checkpoint, outDir: string, log: (line: string) => void): Promise<PtqResult> {
  const saved = source.config as Record<string, unknown>;
  const text = loadTextData(String(saved.data), ((saved.tokenizer as string | undefined) ?? 'bytes') as TokenizerName);
  const context = (saved.context as number | undefined) ?? source.model.lm?.context ?? 128;
  const qat = config.quantConfig ?? presetConfig(config.quant, 'language-model');
  const method = config.ptqMethod ?? 'rtn';
  checkMethodFitsPreset(method, qat, config.quant); // before any work
  const windows = method === 'rtn' ? 0 : config.calibWindows ?? DEFAULT_CALIB_WINDOWS;
  const seed = (saved.seed as number | undefined) ?? 0;
  const started = Date.now();
  const calib = windows ? calibrationWindows(source.model, text.train, windows, context, seed) : [];
  if (windows) log(`${method}: ${windows} calibration windows of ${context} tokens from the training split`);
  const kv = runKvCache(config);
  if (kv) withKvCacheQuantization(source.model, kv); // a model without attention is refused before any work
  const ptq = await quantizeLanguageModelPtq(source.model, qat, calib, { method, actOrder: config.actOrder, preset: config.quant, threads: config.threads, log });
  // The KV quantizers take their ranges from each token (group) as it is written: dynamic, so RTN of the cache is the
  // same quantizer QAT trains with, added after the weights' PTQ.
  const model = kv ? withKvCacheQuantization(ptq.model, kv) : ptq.model;
  if (kv) log(`KV cache: ${kvDescription(kv)}`);
  const calibSeconds = (Date.now() - started) / 1000;
  const name = LM_PTQ_METHOD_NAMES[method];
  log(`evaluating fp32 and ${config.quant} ${name} on ${text.val.tokens.length} validation tokens`);
  const fp32 = await evaluateLanguageModel(source.model, text.val, context, { threads: config.threads });
  const quantized = await evaluateLanguageModel(model, text.val, context, { threads: config.threads });
  const result: PtqResult = {
    model: (saved.model as string | undefined) ?? source.model.name,
    quant: config.quant,
    method: 'ptq' as const,
    calib: method as unknown as CalibKind,
    calib_batches: calib.length,
    calib_images: 0,
    data: String(saved.data),
    from: config.from,
    test_accuracy: quantized.val_token_accuracy,
    test_loss: quantized.val_loss,
    fp32_accuracy: fp32.val_token_accuracy,
    fp32_loss: fp32.val_loss,
    val_perplexity: quantized.val_perplexity,
    fp32_perplexity: fp32.val_perplexity,
    quantizers: model.quant!.quantizers.length,
    calib_seconds: calibSeconds,
    run_dir: outDir,
    ptq_method: method,
    calib_windows: windows,
    ...(method === 'gptq' ? { act_order: !!config.actOrder } : {}),
    layers: ptq.layers,
    skipped: ptq.skipped,
    ...(kv ? { kv_cache: kvCacheJson(kv) } : {}),
  };
  const runConfig = { ...saved, ...config, method: 'ptq' };
  await savePtqRun(outDir, model, (saved.seed as number | undefined) ?? 0, runConfig, result, config.threads);
  log(`fp32 val_perplexity ${fp32.val_perplexity.toFixed(3)}; ${config.quant} ${method.toUpperCase()} val_perplexity ${quantized.val_perplexity.toFixed(3)}`);
  return result;
}

/**
 * Writes a PTQ run only now that it is complete: the directory appears with its checkpoint (step 0, no optimizer
 * state), metrics.json and the fake-quant model in standard ONNX ops (recipe in its metadata, as QAT runs save
 * it), or not at all.
 */
async function savePtqRun(outDir: string, model: Model, seed: number, runConfig: object, result: PtqResult, threads: number): Promise<void> {
  const dir = RunDirectory.open(outDir, { resume: false, requiredFile: CHECKPOINT_FILE });
  try {
    saveCheckpoint(path.join(outDir, CHECKPOINT_FILE), {
      model,
      optimizerState: new Map(),
      step: 0,
      rng: { seed, step: 0 },
      config: runConfig as unknown as Record<string, unknown>,
      metrics: { ...result },
    });
    writeFileAtomic(path.join(outDir, 'metrics.json'), JSON.stringify({ ...result, config: runConfig }, null, 2) + '\n');
    await saveRunModel(model, path.join(outDir, RUN_MODEL_FILE), threads);
  } catch (e) {
    dir.abandon();
    throw e;
  }
  dir.release();
}
