import { Command } from 'commander';
import { formatInspectReport } from '../inspect/format-table.js';
import { inspectPath } from '../inspect/inspect-path.js';
import { inspectJson } from '../inspect/report-json.js';
import { defaultThreads, threadsOption } from './options.js';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('the layer table of a run or an ONNX file: shapes, parameters, quantization, storage, ORT kernel per layer')
    .argument('<target>', 'FILE.onnx (any ONNX model, a qat export, a run\'s model.onnx) or RUN_DIR (qat train / qat quantize)')
    .option('--json', 'print the report as JSON (keys: docs/inspect.md)')
    .option('--no-kernels', 'ONNX files: do not ask ONNX Runtime which kernel runs each layer')
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .action(async (target: string, o) => {
      const report = await inspectPath(target, { kernels: o.kernels, threads: o.threads });
      if (o.json) console.log(inspectJson(report));
      else for (const line of formatInspectReport(report)) console.log(line);
    });
}
