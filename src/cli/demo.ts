import { Command } from 'commander';
import path from 'node:path';
import { quantizeRun } from '../train/ptq-run.js';
import { exportRun } from '../export/export-run.js';
import fs from 'node:fs';
import { defaultThreads, intOption, threadsOption } from './options.js';
import { InputError } from '../validate/schema.js';
import { runTrainCommand } from './train.js';

/**
 * `qat demo`: the whole path with no arguments: LeNet on MNIST in fp32 for one epoch, then 4-bit weights and
 * activations two ways on the same fake-quant graph (PTQ and QAT fine-tuning), the QAT model exported as an
 * integer ONNX QDQ model checked against the simulation, and a comparison.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('train LeNet on MNIST (fp32, 1 epoch), compare w4a4 PTQ and QAT, export the QAT model as integer ONNX')
    .option('--out <dir>', 'where the demo runs go', 'runs/demo')
    .option('--qat-steps <n>', 'QAT fine-tuning steps', intOption('--qat-steps', 1), 300)
    .option('--threads <n>', 'ONNX Runtime threads (1..the cores)', threadsOption(), defaultThreads())
    .action(async (o) => {
      if (fs.existsSync(o.out) && fs.readdirSync(o.out).length) throw new InputError(`--out ${o.out}: not empty (a previous demo?); remove it or choose another --out (nothing was written)`);
      const fp32Dir = path.join(o.out, 'fp32');
      const fp32 = await runTrainCommand({ model: 'lenet', data: 'mnist', epochs: 1, batch: 128, optimizer: 'adamw', lr: 1e-3, schedule: 'cosine', warmupSteps: 0, labelSmoothing: 0, clipNorm: 0, augmentShift: 0, seed: 0, threads: o.threads, out: fp32Dir, calibBatches: 8 }, 'fp32');
      const ptq = await quantizeRun({ from: fp32Dir, quant: 'w4a4', calib: 'percentile', calibBatches: 8, threads: o.threads }, path.join(o.out, 'ptq-w4a4'));
      const qat = await runTrainCommand(
        { model: 'lenet', data: 'mnist', epochs: 1, steps: o.qatSteps, batch: 128, optimizer: 'adamw', lr: 2e-4, schedule: 'cosine', warmupSteps: 0, labelSmoothing: 0, clipNorm: 0, augmentShift: 0, seed: 0, threads: o.threads, out: path.join(o.out, 'qat-w4a4'), quant: 'w4a4', from: fp32Dir, calibBatches: 8 },
        'qat w4a4',
      );
      const exported = await exportRun({ from: path.join(o.out, 'qat-w4a4'), out: path.join(o.out, 'lenet-w4a4-qdq.onnx'), format: 'qdq', threads: o.threads });
      const pct = (x: number) => `${(x * 100).toFixed(2)}%`.padStart(7);
      console.log('\nLeNet on MNIST (test accuracy)');
      console.log(`  fp32            ${pct(fp32.test_accuracy)}`);
      console.log(`  w4a4 PTQ        ${pct(ptq.test_accuracy)}   (percentile calibration, no training)`);
      console.log(`  w4a4 QAT        ${pct(qat.test_accuracy)}   (${qat.steps} fine-tuning steps from fp32)`);
      console.log(`  exported int8   ${pct(exported.parity.exported_accuracy)}   (ONNX QDQ, weights ${exported.weight_ratio.toFixed(2)}x smaller; argmax agreement with QAT ${pct(exported.parity.argmax_agreement)})`);
      console.log(`runs and ${path.basename(exported.out)} in ${path.resolve(o.out)}`);
    });
}
