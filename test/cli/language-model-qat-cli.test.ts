/**
 * QAT and RTN of a language model from the command line: `qat train --from LM_RUN --quant ...` takes the
 * language-model QAT defaults (not the image ones --data's default would pick) and language-model flags, and
 * `qat quantize --from LM_RUN` writes round-to-nearest weights at min/max scales and reports perplexity.
 * One tiny fp32 gpt run (1 block, width 32, context 16, 4 steps) is trained once and shared.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runCorpusCase } from '../helpers/run-qat';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { LANGUAGE_MODEL_QAT_DEFAULTS } from '../../src/train/run-language-model';
import { scratchDir } from '../helpers/scratch.js';

let work = '';
let fp32 = '';

before(async () => {
  work = scratchDir('qatkit-lm-qat-cli-');
  fp32 = path.join(work, 'fp32');
  const config = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 32, context: 16, steps: 4, batch: 4, lr: 2e-3, threads: 1, evalEvery: 0, checkpointEvery: 0 };
  await train(config, fp32);
});

after(() => fs.rmSync(work, { recursive: true, force: true }));

test('qat train --from an LM run takes the language-model QAT defaults (batch, lr, steps), not the image ones', async () => {
  const out = path.join(work, 'qat-dry');
  const r = await runCorpusCase(['train', '--from', fp32, '--quant', 'w4a16-g32', '--out', out, '--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  const d = LANGUAGE_MODEL_QAT_DEFAULTS;
  assert.match(r.stdout, new RegExp(`^dry run: language-model run 'gpt' .*w4a16-g32 QAT.* batch ${d.batch}, lr ${d.lr}, \\d+ threads: would train steps 1\\.\\.${d.steps} `));
  assert.notEqual(d.batch, DEFAULT_TRAIN_CONFIG.batch);
  assert.notEqual(d.lr, DEFAULT_TRAIN_CONFIG.lr);
  // A flag given on the command line still wins over the default.
  const given = await runCorpusCase(['train', '--from', fp32, '--quant', 'w4a16-g32', '--batch', '3', '--lr', '0.0005', '--steps', '7', '--out', out, '--dry-run']);
  assert.match(given.stdout, /batch 3, lr 0\.0005, .*would train steps 1\.\.7 /);
  assert.equal(fs.existsSync(out), false);
});

test('qat train --from an LM run refuses image-only flags and flags the source run decides', async () => {
  const out = path.join(work, 'qat-refused');
  const image = await runCorpusCase(['train', '--from', fp32, '--quant', 'w4a16-g32', '--bn-freeze-step', '2', '--out', out]);
  assert.equal(image.code, 2);
  assert.match(image.stderr, /--bn-freeze-step does not apply to language-model runs \(the --from run's data moby-dick is text\)/);
  const context = await runCorpusCase(['train', '--from', fp32, '--quant', 'w4a16-g32', '--context', '8', '--out', out]);
  assert.equal(context.code, 2);
  assert.match(context.stderr, /--context does not apply with --from: the run takes the model, data, input transform, tokenizer and context of /);
  // A language-model flag is accepted with an LM source (it was refused as "image data" before).
  const lmFlag = await runCorpusCase(['train', '--from', fp32, '--quant', 'w4a16-g32', '--eval-every', '2', '--out', out, '--dry-run']);
  assert.equal(lmFlag.code, 0, lmFlag.stderr);
  assert.equal(fs.existsSync(out), false);
});
