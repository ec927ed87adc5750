import { Command, Option } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { runImageDemo } from '../demo/image-demo.js';
import { runLanguageModelDemo } from '../demo/language-model-demo.js';
import { IMAGE_DEMO_SCHEDULES, LANGUAGE_MODEL_DEMO_SCHEDULES } from '../demo/schedule.js';
import { formatDemoTable } from '../demo/table.js';
import { DemoSummary } from '../demo/summary.js';
import { InputError } from '../validate/schema.js';
import { defaultThreads, maxThreads, threadsOption } from './options.js';

/** A demo writes into a new or empty directory only: it never mixes its runs with an earlier demo's. */
export function checkDemoOut(out: string): void {
  if (fs.existsSync(out) && (!fs.statSync(out).isDirectory() || fs.readdirSync(out).length)) {
    throw new InputError(`--out ${out}: exists and is not an empty directory (a previous demo?); remove it or choose another --out (nothing was written)`);
  }
}

function printSummary(s: DemoSummary, out: string): void {
  const what =
    s.demo === 'image'
      ? `test accuracy on ${s.test_samples} test images; each file measured from disk in ONNX Runtime`
      : `validation perplexity on ${s.test_samples} validation tokens (bytes); short schedules (qat train's defaults: 1500 fp32 steps, 300 QAT steps); each file measured from disk in ONNX Runtime, tokens/s of KV-cache decoding at batch 1`;
  console.log(`\n${s.model} on ${s.data}: ${what} (${s.machine.threads} threads)`);
  for (const line of formatDemoTable(s)) console.log(line);
  console.log(`\n${s.wall_seconds.toFixed(0)} s in all; runs, files, ${path.join(out, s.report)} and ${path.join(out, 'summary.json')} in ${path.resolve(out)}`);
}

/**
 * `qat demo`: the whole path with no arguments. LeNet on MNIST in fp32; PTQ against QAT at w4a4 and at 2-bit
 * settings where PTQ collapses (w2a8) or falls behind (ternary); every QAT model exported (QDQ, int4, packed) and
 * every file measured (size, ONNX Runtime latency, test accuracy of the file); a printed table, summary.json and
 * report.html. `--lm`: the same story for the gpt on Moby Dick (src/demo/language-model-demo.ts).
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('LeNet on MNIST: fp32, then PTQ vs QAT at w4a4, w2a8 and ternary; each QAT model exported and measured as a file (size, latency, accuracy); about 5 minutes on 2 cores (--lm: the gpt on Moby Dick)')
    .option('--lm', 'the language-model demo instead: gpt on Moby Dick, fp32 / RTN / QAT at w4a8-g32 and b158, int4 and MatMulNBits decoders, perplexity, size, tokens/s and a sample of each; about 15 minutes on 2 cores')
    .option('--out <dir>', 'where the demo writes (new or empty; default runs/demo, with --lm runs/demo-lm)')
    .option('--threads <n>', 'ONNX Runtime threads (1..the cores)', threadsOption(), defaultThreads())
    // Tests run the same path on a few steps; not a user-facing knob.
    .addOption(new Option('--schedule <name>').choices(Object.keys(IMAGE_DEMO_SCHEDULES)).default('default').hideHelp())
    .action(async (o) => {
      const out: string = o.out ?? (o.lm ? 'runs/demo-lm' : 'runs/demo');
      checkDemoOut(out);
      const options = { out, threads: o.threads, maxThreads: maxThreads(), log: (line: string) => console.error(`demo: ${line}`) };
      const summary = o.lm ? await runLanguageModelDemo(LANGUAGE_MODEL_DEMO_SCHEDULES[o.schedule], options) : await runImageDemo(IMAGE_DEMO_SCHEDULES[o.schedule], options);
      printSummary(summary, out);
    });
}
