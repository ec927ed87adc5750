import { Command } from 'commander';
import { demoCommand } from './demo';
import { trainCommand } from './train';
import { exportCommand } from './export';
import { evalCommand } from './eval';
import { quantizeCommand } from './quantize';
import { sensitivityCommand } from './sensitivity';
import { generateCommand } from './generate';

/** The `qat` program: a new one per run (commander keeps parsed option values on its commands). */
export function buildProgram(): Command {
  return new Command('qat')
    .description('qatkit: quantization-aware training on ONNX Runtime')
    .addCommand(demoCommand())
    .addCommand(trainCommand())
    .addCommand(exportCommand())
    .addCommand(evalCommand())
    .addCommand(quantizeCommand())
    .addCommand(sensitivityCommand())
    .addCommand(generateCommand());
}
