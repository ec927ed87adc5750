// A quantized model generates what its fake-quant graph computes, never its float weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import '../../src/quant';
import { gpt } from '../../src/models/transformers';
import { prepareLanguageModelQat } from '../../src/quant/qat';
import { presetConfig } from '../../src/quant/presets';
import { createGenerator, generate, RecomputeGenerator } from '../../src/generate';

test('a b158 model generates from its fake-quant graph (full recompute, said so), not from the float weights', async () => {
  const fp32 = gpt({ vocabSize: 64, layers: 1, heads: 2, dim: 32, context: 16, seed: 3 });
  const q = prepareLanguageModelQat(fp32, presetConfig('b158', 'language-model'), 'b158');
  const prompts = [[1, 2, 3, 4], [9, 8, 7, 6]];
  const options = { maxTokens: 12, temperature: 0 };
  const fromQuantized = await generate(await createGenerator(q, { threads: 1 }), prompts, options);
  assert.equal(fromQuantized.mode, 'recompute');
  assert.match(fromQuantized.recomputeReason ?? '', /quantized/);
  const reference = await generate(await RecomputeGenerator.fromModel(q, { threads: 1 }), prompts, options);
  assert.deepEqual(fromQuantized.tokens, reference.tokens);
  // The float model keeps its KV-cache decoder and, with ternary weights this far from the float ones, other logits.
  const float = await generate(await createGenerator(fp32, { threads: 1 }), prompts, options);
  assert.equal(float.mode, 'kv-cache');
});
