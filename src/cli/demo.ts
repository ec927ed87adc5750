import { Command } from 'commander';
import { addTrainOptions, runTrainCommand } from './train';

/** `qat demo`: the main job with no arguments: LeNet on MNIST for one epoch, then test accuracy. */
export function demoCommand(): Command {
  return addTrainOptions(new Command('demo').description('train LeNet on MNIST for one epoch and report test accuracy')).action(async (o) => {
    await runTrainCommand({ ...o, out: o.out ?? 'runs/demo' }, 'demo');
  });
}
