import { Command } from 'commander';
import path from 'node:path';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { loadQuantConfigFile, nameQuantConfig } from '../quant/config-file.js';
import { PRESETS } from '../quant/presets.js';
import { CALIB_BATCH_SIZE, CALIB_KINDS } from '../quant/ptq.js';
import { defaultPtqDir, PtqRunConfig, PtqResult, quantizeRun } from '../train/ptq-run.js';
import { isTextData } from '../data/text.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { CHECKPOINT_FILE } from '../train/run-lifecycle.js';
import { UsageError } from '../validate/schema.js';
import { DEFAULT_CALIB_WINDOWS, LM_PTQ_METHODS, MAX_CALIB_WINDOWS } from '../quant/ptq-methods/language-model-ptq.js';
import { LM_PTQ_METHOD_NAMES } from '../train/ptq-run.js';
import { choiceOption, intOption, defaultThreads, threadsOption, outputFileOption } from './options.js';
import { KV_LAYOUTS } from '../quant/kv-cache.js';

/**
 * Whether the run --from names was trained on text (a language model: RTN, no calibration). An unreadable source
 * is left to quantizeRun, which names what is wrong with it.
 */
function fromLanguageModelRun(from: string): boolean {
  try {
    const data = loadCheckpoint(path.join(from, CHECKPOINT_FILE)).config.data;
    return typeof data === 'string' && isTextData(data);
  } catch {
    return false;
  }
}

export function ptqConfigFromOptions(o: Record<string, any>, given: (flag: string) => boolean = () => false): PtqRunConfig {
  if (!o.from) throw new Error('--from RUN_DIR is required (the fp32 run to quantize)');
  if (!o.quant && !o.quantConfig) throw new Error(`--quant is required unless --quant-config is given; valid presets: ${PRESETS.join(', ')}`);
  const text = fromLanguageModelRun(o.from);
  if (given('kvLayout') && !given('kvBits')) throw new UsageError('--kv-layout does not apply without --kv-bits 8|4|2 (it chooses how the quantized KV cache is laid out)');
  if (text) {
    // A language model's RTN baseline calibrates nothing: its activation quantizers are dynamic (per token) and its
    // weight scales come from the weights (max|W| / qmax per channel or group).
    for (const [key, flag] of [['calib', '--calib'], ['calibBatches', '--calib-batches']]) {
      if (given(key)) throw new UsageError(`${flag} does not apply to language-model runs (${o.from} is trained on text): their activations are dynamic (per token); calibrate GPTQ/AWQ/SmoothQuant with --method ${LM_PTQ_METHODS.slice(1).join('|')} --calib-windows N`);
    }
    const method = o.method ?? 'rtn';
    if (given('calibWindows') && method === 'rtn') throw new UsageError(`--calib-windows applies to --method ${LM_PTQ_METHODS.slice(1).join(', ')} (RTN calibrates nothing)`);
    if (given('actOrder') && method !== 'gptq') throw new UsageError(`--act-order applies to --method gptq only (got --method ${method})`);
  } else {
    if (given('kvBits')) throw new UsageError(`--kv-bits applies to language-model runs (${o.from} is an image run, which has no KV cache)`);
    for (const [key, flag] of [['method', '--method'], ['calibWindows', '--calib-windows'], ['actOrder', '--act-order']]) {
      if (given(key)) throw new UsageError(`${flag} applies to language-model runs (${o.from} is an image run): image PTQ calibrates activation ranges with --calib ${CALIB_KINDS.join('|')} --calib-batches N`);
    }
  }
  return {
    from: o.from,
    quant: o.quant ?? 'custom',
    quantConfig: o.quantConfig ? loadQuantConfigFile(o.quantConfig, o.quant, text ? 'language-model' : 'classification') : undefined,
    calib: o.calib,
    calibBatches: o.calibBatches,
    threads: o.threads,
    ...(text ? { ptqMethod: o.method ?? 'rtn', calibWindows: o.calibWindows ?? DEFAULT_CALIB_WINDOWS, actOrder: !!o.actOrder } : {}),
    ...(text && o.kvBits !== undefined ? { kvCache: { bits: Number(o.kvBits), layout: o.kvLayout ?? 'per-token' } } : {}),
  };
}

export async function runQuantizeCommand(o: Record<string, any>, given?: (flag: string) => boolean): Promise<PtqResult> {
  const config = ptqConfigFromOptions(o, given);
  const outDir = o.out ?? defaultPtqDir(config);
  const result = await quantizeRun(config, outDir, (line) => console.error(`quantize: ${line}`)).catch((e) => {
    throw nameQuantConfig(e, o.quantConfig, o.quant);
  });
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  if (result.val_perplexity !== undefined && result.fp32_perplexity !== undefined) {
    const method = result.ptq_method ?? 'rtn';
    const calib = method === 'rtn' ? '' : ` on ${result.calib_windows} calibration windows`;
    console.log(`fp32 val_perplexity ${result.fp32_perplexity.toFixed(3)}; ${result.quant} ${LM_PTQ_METHOD_NAMES[method]}${calib}:`);
    console.log(`val_perplexity ${result.val_perplexity.toFixed(3)}; model saved in ${path.resolve(outDir)}`);
  } else {
    console.log(`fp32 accuracy ${pct(result.fp32_accuracy)}; ${result.quant} PTQ (${result.calib} calibration):`);
    console.log(`test accuracy ${pct(result.test_accuracy)}; model saved in ${path.resolve(outDir)}`);
  }
  if (o.json) writeFileAtomic(o.json, JSON.stringify(result, null, 2) + '\n');
  return result;
}

export function quantizeCommand(): Command {
  return new Command('quantize')
    .description('post-training quantization of an fp32 run, in the same fake-quant graph as QAT (a like-for-like baseline)')
    .option('--from <run_dir>', 'the fp32 run to quantize (its checkpoint.qat; the dataset comes from its config)')
    .option('--quant <preset>', `bit-widths: ${PRESETS.join(', ')} (learned scales become min/max ones)`, choiceOption('--quant', PRESETS))
    .option('--quant-config <file.json>', 'full quantization config (per-layer bits, granularity), merged over --quant')
    .option('--calib <kind>', `activation range calibration: ${CALIB_KINDS.join(', ')}`, choiceOption('--calib', CALIB_KINDS), 'minmax')
    .option('--calib-batches <n>', `calibration batches of ${CALIB_BATCH_SIZE} training images`, intOption('--calib-batches', 1), 8)
    .option('--method <m>', `language models: ${LM_PTQ_METHODS.join(', ')} (default rtn; smoothquant for w8a8 only)`, choiceOption('--method', LM_PTQ_METHODS))
    .option('--calib-windows <n>', `language models: calibration windows of the training split for gptq/awq/smoothquant (default ${DEFAULT_CALIB_WINDOWS})`, intOption('--calib-windows', 1, MAX_CALIB_WINDOWS))
    .option('--act-order', 'GPTQ: quantize columns in decreasing order of the Hessian diagonal (static groups)')
    .option('--kv-bits <n>', 'language models: quantize the KV cache as it is written, 8, 4 or 2 bits (dynamic ranges: nothing to calibrate)', choiceOption('--kv-bits', ['8', '4', '2'] as const))
    .option('--kv-layout <layout>', `with --kv-bits: ${KV_LAYOUTS.join(', ')}`, choiceOption('--kv-layout', KV_LAYOUTS))
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .option('--out <dir>', 'output directory (default <from>-ptq-<preset>-<calib>; language models: <from>-ptq-<preset>-<method>)')
    .option('--json <file.json>', 'write the metrics as JSON to this file', outputFileOption('--json', '.json'))
    .action(async (o, cmd: Command) => {
      await runQuantizeCommand(o, (key) => cmd.getOptionValueSource(key) === 'cli');
    });
}
