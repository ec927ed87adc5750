import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { gpt } from '../../src/models/transformers';
import { createGenerator } from '../../src/generate/create-generator';
import { argmax } from '../../src/generate/sampling';
import { DATA_FREE_GREEDY_TOKENS, generateDataFreeWindows } from '../../src/generate/data-free-samples';
import { GENERATED_WINDOWS_FILE, GeneratedWindowSampler, readGeneratedWindows, writeGeneratedWindows } from '../../src/data/generated-windows';
import { checkApplicableFlags } from '../../src/cli/train-flags';
import { InputError, UsageError } from '../../src/validate/schema';
import { LanguageModelResult } from '../../src/train/run-language-model';
import { scratchDir } from '../helpers/scratch.js';

const tmp = () => scratchDir('qatkit-data-free-');
const teacher = () => gpt({ vocabSize: 256, layers: 1, heads: 2, dim: 16, context: 12, seed: 3 });

test('data-free windows: the same seed gives the same tokens, another seed others; first token in the vocabulary, the next ones greedy', async () => {
  const model = teacher();
  const options = { count: 5, length: 13, seed: 7, vocabLimit: 200, threads: 1 };
  const a = await generateDataFreeWindows(model, options);
  const b = await generateDataFreeWindows(model, options);
  const c = await generateDataFreeWindows(model, { ...options, seed: 8 });
  assert.equal(a.length, 5 * 13);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.ok(a.every((t) => t >= 0 && t < 200), 'every id below vocabLimit');
  // Tokens 1..DATA_FREE_GREEDY_TOKENS are the teacher's argmax given the window so far (full recompute).
  const check = await createGenerator(model, { kvCache: false, threads: 1 });
  try {
    for (let w = 0; w < 5; w++) {
      const win = Array.from(a.subarray(w * 13, w * 13 + 13));
      for (let i = 1; i <= DATA_FREE_GREEDY_TOKENS; i++) {
        const logits = await check.start([win.slice(0, i)]);
        assert.equal(win[i], argmax(logits.data, 0, 200), `window ${w} token ${i}`);
      }
    }
  } finally {
    await check.release();
  }
  // The sampled tail is not greedy everywhere: sampling at temperature 1 from a near-uniform untrained model.
  const firstTokens = new Set(Array.from({ length: 5 }, (_, w) => a[w * 13]));
  assert.ok(firstTokens.size > 1, 'first tokens are drawn, not fixed');
});

test('windows file: round trip, and refusals naming the file for a changed SHA-256, another length, a bad id', () => {
  const dir = tmp();
  const file = path.join(dir, GENERATED_WINDOWS_FILE);
  const tokens = Int32Array.from({ length: 3 * 5 }, (_, i) => (i * 7) % 11);
  const sha256 = writeGeneratedWindows(file, { count: 3, length: 5, seed: 2, vocabLimit: 11, tokens });
  const back = readGeneratedWindows(file, { sha256, count: 3, length: 5 });
  assert.deepEqual(back, { count: 3, length: 5, seed: 2, vocabLimit: 11, tokens });
  assert.throws(() => readGeneratedWindows(file, { length: 9 }), (e: Error) => e instanceof InputError && e.message.includes(file) && /context \+ 1 is 9/.test(e.message));
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 1] = 0x7f; // last id becomes huge
  fs.writeFileSync(file, bytes);
  assert.throws(() => readGeneratedWindows(file, { sha256 }), /SHA-256 differs/);
  assert.throws(() => readGeneratedWindows(file), /outside 0\.\.10/);
});

test('GeneratedWindowSampler: a batch depends on (seed, step) only, rows are whole windows (ids, next-token targets)', () => {
  const tokens = Int32Array.from({ length: 4 * 6 }, (_, i) => i);
  const windows = { count: 4, length: 6, seed: 0, vocabLimit: 64, tokens };
  const s = new GeneratedWindowSampler(windows, 3, 5);
  const fill = (sampler: GeneratedWindowSampler, step: number) => {
    const ids = new BigInt64Array(15);
    const targets = new BigInt64Array(15);
    sampler.fill(step, ids, targets);
    return { ids: Array.from(ids, Number), targets: Array.from(targets, Number) };
  };
  const a = fill(s, 4);
  assert.deepEqual(a, fill(new GeneratedWindowSampler(windows, 3, 5), 4));
  s.indices(4).forEach((w, row) => {
    assert.deepEqual(a.ids.slice(row * 5, row * 5 + 5), [0, 1, 2, 3, 4].map((t) => w * 6 + t));
    assert.deepEqual(a.targets.slice(row * 5, row * 5 + 5), [1, 2, 3, 4, 5].map((t) => w * 6 + t));
  });
});

const fp32Config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 16, context: 8, steps: 4, batch: 2, lr: 3e-3, threads: 2, evalEvery: 0, checkpointEvery: 0 };

test('qat train --from LM --distill-data generated: windows cached in the run, KL-only training, resume bit for bit', async () => {
  const fp32 = tmp();
  await train(fp32Config, fp32);
  const config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, from: fp32, quant: 'w8a8', steps: 4, batch: 2, lr: 1e-3, threads: 2, evalEvery: 2, checkpointEvery: 0, distillData: 'generated', generatedSamples: 6 };
  const [straight, split] = [tmp(), tmp()];
  const a = (await train(config, straight)) as LanguageModelResult;
  assert.equal(a.distill_data, 'generated');
  assert.equal(a.generated_samples, 6);
  const cached = readGeneratedWindows(path.join(straight, GENERATED_WINDOWS_FILE), { count: 6, length: 9 });
  assert.ok(Number.isFinite(a.val_perplexity) && a.val_perplexity > 1, 'validated on the real split');
  assert.ok(a.losses.every((l) => Number.isFinite(l) && l >= 0), 'KL losses are finite and >= 0');
  // The loss is the KL to the fp32 teacher alone: near 0 for a w8a8 copy of it, where the cross-entropy of a
  // 4-step byte model is above 4 nats.
  assert.ok(a.losses[0] < 0.05, `first loss ${a.losses[0]} is a KL, not a cross-entropy`);
  await train(config, split, { stopAtStep: 2 });
  const windowsBefore = fs.readFileSync(path.join(split, GENERATED_WINDOWS_FILE));
  assert.deepEqual(readGeneratedWindows(path.join(split, GENERATED_WINDOWS_FILE)).tokens, cached.tokens, 'same seed, same windows');
  const b = (await train({ steps: 4 } as TrainConfig, split, { resume: true })) as LanguageModelResult;
  assert.deepEqual(fs.readFileSync(path.join(split, GENERATED_WINDOWS_FILE)), windowsBefore, 'resume reads the cache, does not regenerate');
  assert.deepEqual(b.losses, a.losses.slice(2));
  assert.equal(b.val_loss, a.val_loss);
  const [x, y] = [loadCheckpoint(path.join(straight, 'checkpoint.qat')), loadCheckpoint(path.join(split, 'checkpoint.qat'))];
  for (const [name, t] of x.model.graph.initializers) assert.deepEqual(t.data, y.model.graph.initializers.get(name)!.data, name);
  // A cache that changed is refused on resume, naming the file.
  const changed = tmp();
  await train(config, changed, { stopAtStep: 2 });
  const f = path.join(changed, GENERATED_WINDOWS_FILE);
  const bytes = fs.readFileSync(f);
  bytes[bytes.length - 4] ^= 1;
  fs.writeFileSync(f, bytes);
  await assert.rejects(train({ steps: 4 } as TrainConfig, changed, { resume: true }), (e: Error) => e instanceof InputError && e.message.includes(f) && /SHA-256/.test(e.message));
});

test('--distill-data generated is refused on image runs, without --from, and --generated-samples without it', async () => {
  const given = (flags: string[]) => (f: string) => flags.includes(f);
  assert.throws(() => checkApplicableFlags({ data: 'mnist', distillData: 'generated', from: 'runs/lenet', quant: 'w4a4' }, given(['distillData', 'from', 'quant'])), (e: Error) => e instanceof UsageError && /--distill-data does not apply to image data/.test(e.message));
  assert.throws(() => checkApplicableFlags({ data: 'moby-dick', distillData: 'generated', quant: 'w4a8-g32' }, given(['distillData', 'quant', 'data'])), /--distill-data does not apply without --from/);
  assert.throws(() => checkApplicableFlags({ data: 'moby-dick', from: 'r', quant: 'w4a8-g32', generatedSamples: 5 }, given(['generatedSamples', 'quant', 'from']), 'moby-dick'), /--generated-samples does not apply without --distill-data generated/);
  await assert.rejects(train({ ...fp32Config, quant: 'w8a8', distillData: 'generated' }, tmp()), (e: Error) => e instanceof InputError && /needs --from LM_RUN/.test(e.message));
});
