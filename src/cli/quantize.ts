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
import { choiceOption, intOption, defaultThreads, threadsOption, outputFileOption } from './options.js';

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
  if (text) {
    // A language model's RTN baseline calibrates nothing: its activation quantizers are dynamic (per token) and its
    // weight scales come from the weights (max|W| / qmax per channel or group).
    for (const [key, flag] of [['calib', '--calib'], ['calibBatches', '--calib-batches']]) {
      if (given(key)) throw new UsageError(`${flag} does not apply to language-model runs (${o.from} is trained on text): their RTN baseline takes min/max weight scales and dynamic per-token activations, with nothing to calibrate`);
    }
  }
  return {
    from: o.from,
    quant: o.quant ?? 'custom',
    quantConfig: o.quantConfig ? loadQuantConfigFile(o.quantConfig, o.quant, text ? 'language-model' : 'classification') : undefined,
    calib: o.calib,
    calibBatches: o.calibBatches,
    threads: o.threads,
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
    console.log(`fp32 val_perplexity ${result.fp32_perplexity.toFixed(3)}; ${result.quant} RTN (round to nearest, min/max scales):`);
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
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .option('--out <dir>', 'output directory (default <from>-ptq-<preset>-<calib>)')
    .option('--json <file.json>', 'write the metrics as JSON to this file', outputFileOption('--json', '.json'))
    .action(async (o, cmd: Command) => {
      await runQuantizeCommand(o, (key) => cmd.getOptionValueSource(key) === 'cli');
    });
}
