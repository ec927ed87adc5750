import { Command } from 'commander';
import { demoCommand } from './demo';
import { trainCommand } from './train';
import { exportCommand } from './export';
import { evalCommand } from './eval';
import { quantizeCommand } from './quantize';
import { sensitivityCommand } from './sensitivity';
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

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`qat: ${e.message}`);
  if (process.env.QAT_DEBUG) console.error(e.stack);
  process.exit(1);
});
