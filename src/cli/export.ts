import { Command } from 'commander';
import { exportRun } from '../export/export-run.js';
import { EXPORT_FORMATS, WEIGHT_TYPES } from '../export/qdq.js';
import { displayName } from './terminal.js';
import { choiceOption, intOption, defaultThreads, threadsOption, outputFileOption } from './options.js';

export function exportCommand(): Command {
  return new Command('export')
    .description('export a QAT run to a deployable integer ONNX model and check it against the fake-quant model')
    .requiredOption('--from <run_dir>', 'QAT run directory (its checkpoint.qat)')
    .option('--format <name>', `${EXPORT_FORMATS.join(', ')}`, choiceOption('--format', EXPORT_FORMATS), 'qdq')
    .requiredOption('--out <file.onnx>', 'where to write the model', outputFileOption('--out', '.onnx'))
    .option('--json <file.json>', 'write the export report (sizes, parity) as JSON', outputFileOption('--json', '.json'))
    .option('--no-verify', 'write the model even when parity with the fake-quant model fails')
    .option('--weight-type <type>', `8-bit weight storage: ${WEIGHT_TYPES.join(', ')} (uint8 is exact on every x86 CPU)`, choiceOption('--weight-type', WEIGHT_TYPES), 'uint8')
    .option('--limit <n>', 'test samples for the parity check (default: all)', intOption('--limit', 1))
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .action(async (o) => {
      const r = await exportRun({ from: o.from, out: o.out, json: o.json, format: o.format, noVerify: !o.verify, weightType: o.weightType, limit: o.limit, threads: o.threads });
      const p = r.parity;
      console.log(
        `${r.format}: ${r.out} (${r.file_bytes} bytes; weights ${r.weight_ratio.toFixed(2)}x smaller than fp32); ` +
          `agreement ${(p.argmax_agreement * 100).toFixed(2)}%, accuracy ${(p.exported_accuracy * 100).toFixed(2)}% vs ${(p.qat_accuracy * 100).toFixed(2)}% fake-quant, ` +
          `max |logit diff| ${p.max_abs_logit_difference.toPrecision(3)}${r.verified ? '' : ' (not verified)'}`,
      );
      const i = r.integer_reference;
      if ('samples' in i) {
        console.log(
          `integer reference evaluator vs ORT's integer kernels (${i.samples} images): ${i.first_mismatch ? `first mismatch at node '${displayName(i.first_mismatch)}'` : 'codes match'} ` +
            `(${i.off_by_one} of ${i.elements} one step off from float requantization), predictions agree ${(i.argmax_agreement * 100).toFixed(1)}%`,
        );
      }
    });
}
