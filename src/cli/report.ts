import { Command } from 'commander';
import { writeReport } from '../report/write-report.js';
import { defaultThreads, outputFileOption, threadsOption } from './options.js';

export function reportCommand(): Command {
  return new Command('report')
    .description('one self-contained HTML report of runs: accuracy vs bits, training curves, quant health, sensitivity, weight histograms, exports')
    .argument('<run_dir...>', 'run directories (qat train, qat quantize)')
    .requiredOption('--out <report.html>', 'where to write the report', outputFileOption('--out', '.html'))
    .option('--layers <glob>', 'layers whose weight histograms to show (* and ?; default: first, a middle and the last quantized layer)')
    .option('--exports <file.json...>', 'export reports (qat export --json) besides those in the run directories')
    .option('--title <text>', 'the report title', 'qatkit report')
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .action(async (runs: string[], o) => {
      const r = await writeReport({ runs, out: o.out, layers: o.layers, exports: o.exports, title: o.title, threads: o.threads });
      console.log(`report: ${r.out} (${r.charts.length} charts, ${(r.bytes / 1024).toFixed(0)} KiB)${r.absent.length ? `; absent: ${r.absent.join('; ')}` : ''}`);
    });
}
