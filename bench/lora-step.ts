/**
 * QAT + LoRA step vs full QAT step (issue 11's target: LoRA >= 1.25x faster, peak memory lower): the zoo gpt on
 * Moby Dick at `qat train`'s LM shape (batch 32 x context 128, bytes), w4a8-g32, AdamW as LM QAT runs it. Full QAT
 * trains every weight and step size; LoRA (rank 16, alpha 32) trains only the adapters (src/quant/lora.ts). Both
 * trainers live in one process and alternate round by round, so both sample the same minutes of the shared
 * machine; the ratio is of the medians. Peak RSS is measured per mode in a child process of its own (building the
 * trainer and running a few steps), since one process's high-water mark cannot be split between two trainers.
 *
 *   node --import tsx bench/lora-step.ts [--rounds 10] [--per-round 2] [--rank 16] [--threads 2] [--json FILE]
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { loadTextData, WindowSampler } from '../src/data/text';
import { gpt } from '../src/models/transformers';
import { presetConfig } from '../src/quant/presets';
import { prepareLanguageModelQat } from '../src/quant/qat';
import { addLoraAdapters } from '../src/quant/lora';
import { defaultOptimizer } from '../src/train/optimizer';
import { LANGUAGE_MODEL_QAT_DEFAULTS } from '../src/train/run-language-model';
import { Trainer } from '../src/train/trainer';
import { writeJson } from './lib/cli';
import { median } from './lib/timing';

const { values: a } = parseArgs({ options: { rounds: { type: 'string', default: '10' }, 'per-round': { type: 'string', default: '2' }, rank: { type: 'string', default: '16' }, threads: { type: 'string', default: '2' }, json: { type: 'string' }, 'rss-only': { type: 'string' } } });
const [rounds, perRound, rank, threads] = [a.rounds, a['per-round'], a.rank, a.threads].map(Number);
const BATCH = 32;
const CONTEXT = 128;

async function setUp(mode: 'full' | 'lora') {
  const text = loadTextData('moby-dick', 'bytes');
  let model = prepareLanguageModelQat(gpt({ vocabSize: text.vocabSize, context: CONTEXT, seed: 0 }), presetConfig('w4a8-g32', 'language-model'), 'w4a8-g32');
  if (mode === 'lora') model = addLoraAdapters(model, { rank, seed: 0 });
  const d = LANGUAGE_MODEL_QAT_DEFAULTS;
  const optimizer = { ...defaultOptimizer('adamw'), beta2: d.beta2, weightDecay: d.weightDecay, clipNorm: d.clipNorm };
  const trainer = await Trainer.create(model, { batchSize: BATCH, classes: 0, sequenceLength: CONTEXT, optimizer, threads });
  const sampler = new WindowSampler(text.train, { batch: BATCH, context: CONTEXT, seed: 0 });
  let step = 0;
  const run = async () => {
    const t0 = performance.now();
    sampler.fill(step++, trainer.batchTokens, trainer.batchLabels);
    await trainer.trainStep(3e-4);
    return performance.now() - t0;
  };
  return { trainer, run };
}

async function main() {
  if (a['rss-only']) {
    const { run } = await setUp(a['rss-only'] as 'full' | 'lora');
    for (let i = 0; i < 3; i++) await run();
    console.log(JSON.stringify({ peak_rss_mb: process.resourceUsage().maxRSS / 1024 }));
    return;
  }
  const full = await setUp('full');
  const lora = await setUp('lora');
  for (let i = 0; i < 2; i++) (await full.run(), await lora.run()); // warm-up
  const times = { full: [] as number[], lora: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < perRound; i++) times.full.push(await full.run());
    for (let i = 0; i < perRound; i++) times.lora.push(await lora.run());
  }
  await full.trainer.release();
  await lora.trainer.release();
  const rss = (mode: string) => JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--rss-only', mode, '--rank', String(rank), '--threads', String(threads)], { encoding: 'utf8' }).trim().split('\n').at(-1)!).peak_rss_mb as number;
  const out = {
    model: 'gpt 4x128, batch 32 x 128, w4a8-g32', rank, threads, rounds, per_round: perRound,
    full_qat_ms_median: median(times.full), lora_ms_median: median(times.lora),
    speedup: median(times.full) / median(times.lora), target_speedup: 1.25,
    full_qat_peak_rss_mb: rss('full'), lora_peak_rss_mb: rss('lora'),
  };
  console.log(`full QAT step ${out.full_qat_ms_median.toFixed(1)} ms, LoRA (rank ${rank}) step ${out.lora_ms_median.toFixed(1)} ms: ${out.speedup.toFixed(2)}x (target >= 1.25x); peak RSS ${out.full_qat_peak_rss_mb.toFixed(0)} MB vs ${out.lora_peak_rss_mb.toFixed(0)} MB`);
  if (a.json) writeJson(a.json, out);
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
