import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gpt } from '../../src/models/transformers';
import { loadTextData } from '../../src/data/text';
import { compareLanguageModels } from '../../src/train/compare-language-models';
import { createGenerator } from '../../src/generate/create-generator';

const make = (seed: number) => gpt({ vocabSize: 256, layers: 1, heads: 2, dim: 16, context: 8, seed });
const text = loadTextData('moby-dick');

test('a model compared with itself: KL 0 and top-1 agreement 1', async () => {
  const m = make(1);
  const r = await compareLanguageModels(m, m, text.val, 8, { threads: 1, maxWindows: 5 });
  assert.equal(r.positions, 40);
  assert.ok(Math.abs(r.kl_to_reference) < 1e-9, `KL ${r.kl_to_reference}`);
  assert.equal(r.top1_agreement, 1);
});

test('KL(reference || candidate) and top-1 agreement equal a direct computation from each prefix (full recompute)', async () => {
  const [p, q] = [make(1), make(2)];
  const r = await compareLanguageModels(p, q, text.val, 8, { threads: 1, maxWindows: 2 });
  const gens = await Promise.all([p, q].map((m) => createGenerator(m, { kvCache: false, threads: 1 })));
  let kl = 0;
  let agree = 0;
  for (let w = 0; w < 2; w++) {
    const window = Array.from(text.val.tokens.subarray(w * 8, w * 8 + 8));
    for (let t = 1; t <= 8; t++) {
      const [a, b] = await Promise.all(gens.map(async (g) => Array.from((await g.start([window.slice(0, t)])).data)));
      const lse = (x: number[]) => Math.log(x.reduce((s, v) => s + Math.exp(v), 0));
      const [la, lb] = [lse(a), lse(b)];
      kl += a.reduce((s, v, i) => s + Math.exp(v - la) * (v - la - (b[i] - lb)), 0);
      if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) agree++;
    }
  }
  await Promise.all(gens.map((g) => g.release()));
  assert.equal(r.positions, 16);
  assert.ok(r.kl_to_reference > 1e-4, 'two random models differ');
  assert.ok(Math.abs(r.kl_to_reference - kl / 16) < 1e-5 * Math.max(1, kl / 16), `${r.kl_to_reference} vs ${kl / 16}`);
  assert.equal(r.top1_agreement, agree / 16);
});
