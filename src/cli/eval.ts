import { Command } from 'commander';
import { DATASET_NAMES, loadDataset } from '../data';
import { evaluateOnnxFile } from '../export/evaluate-file';
import { writeFileAtomic } from '../onnx/atomic-write';
import { choiceOption, intOption } from './options';

export function evalCommand(): Command {
  return new Command('eval')
    .description('evaluate an ONNX model (fp32 or exported) on a test set')
    .requiredOption('--model <file.onnx>', 'model taking [N, C, H, W] pixels in [0, 1], returning logits')
    .option('--data <name>', `dataset: ${DATASET_NAMES.join(', ')}`, choiceOption('--data', DATASET_NAMES), 'mnist')
    .option('--json <file>', 'write the result as JSON')
    .option('--limit <n>', 'evaluate only the first n test samples', intOption('--limit', 1))
    .option('--threads <n>', 'ONNX Runtime intra-op threads', intOption('--threads', 1), 2)
    .action(async (o) => {
      const r = await evaluateOnnxFile(o.model, loadDataset(o.data).test, { threads: o.threads, limit: o.limit });
      const result = { model: o.model, data: o.data, samples: r.samples, test_accuracy: r.test_accuracy, test_loss: r.test_loss };
      console.log(`${o.model} on ${o.data}: test accuracy ${(r.test_accuracy * 100).toFixed(2)}% (${r.samples} samples), loss ${r.test_loss.toFixed(4)}`);
      if (o.json) writeFileAtomic(o.json, JSON.stringify(result, null, 2) + '\n');
    });
}
