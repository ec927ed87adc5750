import path from 'node:path';
import { Command } from 'commander';
import { loadDataset, DatasetName } from '../data/index.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { layerSensitivity, SENSITIVITY_FILE, suggestMixedPrecision } from '../quant/sensitivity.js';
import { loadRun } from '../train/run.js';
import { InputError } from '../validate/schema.js';
import { isTextData } from '../data/text.js';
import { displayName } from './terminal.js';
import { floatOption, intOption, defaultThreads, threadsOption, outputFileOption } from './options.js';

export function sensitivityCommand(): Command {
  return new Command('sensitivity')
    .description('accuracy drop when only one layer is quantized, per layer; suggests a mixed-precision config')
    .requiredOption('--from <run_dir>', 'fp32 run to analyse')
    .option('--bits <n>', 'bit-width to test each layer at', intOption('--bits', 2), 4)
    .option('--target-drop <x>', 'accuracy drop budget for the suggestion (fraction, e.g. 0.005)', floatOption('--target-drop', { min: 0 }), 0.005)
    .option('--limit <n>', 'test images to evaluate on', intOption('--limit', 1), 10000)
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .option('--suggest <file.json>', 'write the suggested --quant-config here', outputFileOption('--suggest', '.json'))
    .option('--json <file.json>', 'write the per-layer report as JSON', outputFileOption('--json', '.json'))
    .action(async (o) => {
      if (![2, 3, 4, 5, 6, 7, 8].includes(o.bits)) throw new Error(`--bits must be one of 2..8, got ${o.bits}`);
      const ckpt = loadRun(o.from);
      const quant = ckpt.model.quant;
      if (quant) {
        // Quantizing one layer of a model whose layers are all quantized already would measure nothing meaningful.
        const source = typeof ckpt.config.from === 'string' ? ckpt.config.from : undefined;
        throw new InputError(
          `--from: '${o.from}' is already quantized (${quant.method ?? 'qat'} ${quant.preset ?? 'custom'}); sensitivity quantizes an fp32 model one layer at a time: ` +
            (source ? `pass its fp32 source, --from ${source}` : 'pass an fp32 run (qat train without --quant)'),
        );
      }
      if (isTextData(String(ckpt.config.data))) throw new InputError(`--from: '${o.from}' is a language-model run; qat sensitivity measures image classifiers (test accuracy per layer)`);
      const data = loadDataset((ckpt.config as { data: DatasetName }).data);
      const report = await layerSensitivity(ckpt.model, data.train, data.test, {
        bits: o.bits,
        threads: o.threads,
        limit: o.limit,
        onLayer: (s) => console.log(`${displayName(s.layer).padEnd(24)} ${s.opType.padEnd(5)} w${o.bits}a${o.bits}: accuracy ${(s.accuracy * 100).toFixed(2)}%  drop ${(s.drop * 100).toFixed(2)} pt`),
      });
      const suggestion = suggestMixedPrecision(report, o.targetDrop);
      console.log(`fp32 ${(report.fp32_accuracy * 100).toFixed(2)}%; layers kept at 8 bits for a ${(o.targetDrop * 100).toFixed(2)} pt budget: ${suggestion.overrides.map((x) => displayName(x.match)).join(', ') || 'none'}`);
      if (o.suggest) writeFileAtomic(o.suggest, JSON.stringify(suggestion, null, 2) + '\n');
      const json = JSON.stringify({ ...report, suggestion }, null, 2) + '\n';
      if (o.json) writeFileAtomic(o.json, json);
      // Beside the run as well, where `qat report` finds it.
      writeFileAtomic(path.join(o.from, SENSITIVITY_FILE), json);
    });
}
