import { Command } from 'commander';
import { demoCommand } from './demo';
import { trainCommand } from './train';
import { exportCommand } from './export';
import { evalCommand } from './eval';
import { quantizeCommand } from './quantize';
import { sensitivityCommand } from './sensitivity';
import { runCli } from './run-cli';
import { generateCommand } from './generate';

const program = new Command('qat')
  .description('qatkit: quantization-aware training on ONNX Runtime')
  .showHelpAfterError()
  .addCommand(demoCommand())
  .addCommand(trainCommand())
  .addCommand(exportCommand())
  .addCommand(evalCommand())
  .addCommand(quantizeCommand())
  .addCommand(sensitivityCommand());
program.addCommand(generateCommand());

// One line on stderr per failure and the exit code of run-cli.ts (1 refused input or failed run, 2 usage).
process.exit(await runCli(program, process.argv));
