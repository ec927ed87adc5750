import { Command } from 'commander';
import { demoCommand } from './demo.js';
import { trainCommand } from './train.js';
import { exportCommand } from './export.js';
import { evalCommand } from './eval.js';
import { quantizeCommand } from './quantize.js';
import { sensitivityCommand } from './sensitivity.js';
import { generateCommand } from './generate.js';
import { serveCommand } from './serve.js';
import { reportCommand } from './report.js';
import { inspectCommand } from './inspect.js';
import { packageVersion } from './version.js';

/** The `qat` program: a new one per run (commander keeps parsed option values on its commands). */
export function buildProgram(): Command {
  return new Command('qat')
    .description('qatkit: quantization-aware training on ONNX Runtime')
    .version(packageVersion(), '-V, --version', "print qatkit's version (package.json)")
    .addCommand(demoCommand())
    .addCommand(trainCommand())
    .addCommand(exportCommand())
    .addCommand(evalCommand())
    .addCommand(quantizeCommand())
    .addCommand(sensitivityCommand())
    .addCommand(generateCommand())
    .addCommand(reportCommand())
    .addCommand(inspectCommand())
    .addCommand(serveCommand());
}
