import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomDecoder, maxLogitDiff } from '../helpers/tiny-decoder';
import fs from 'node:fs';
import path from 'node:path';
import '../../src/ops';
import { gpt, llama, transformerDecoder } from '../../src/models/transformers';
import { Model } from '../../src/models/model';
import { Rng } from '../../src/train/rng';
import { saveModel } from '../../src/onnx/model-io';
import { bytesTokenizer } from '../../src/data/tokenizers/index';
import {
  createFileGenerator,
  createGenerator,
  generate,
  KvCacheGenerator,
  languageModelJson,
  readLanguageModelJson,
  RecomputeGenerator,
  TokenSampler,
  topKIds,
  writeLanguageModelJson,
} from '../../src/generate/index';
import type { NextTokenLogits } from '../../src/generate/index';
import { scratchDir } from '../helpers/scratch.js';

const VOCAB = 40;
const CONTEXT = 16;
const builders = { gpt, llama };

/**
 * A small random model whose parameters are rescaled to N(0, 0.3^2): at the zoo's init (std 0.02) every logit is
 * near 0 and any two forward passes agree to 1e-4 whatever they compute.
 */
const tinyModel = (kind: keyof typeof builders): Model => randomDecoder(kind, VOCAB, CONTEXT);
const maxAbsDiff = maxLogitDiff;

function spread(l: NextTokenLogits): number {
  return Math.max(...l.data) - Math.min(...l.data);
}

const randomTokens = (rng: Rng, n: number) => Array.from({ length: n }, () => rng.int(VOCAB));

for (const kind of ['gpt', 'llama'] as const) {
  for (const rows of [1, 2]) {
    test(`${kind}, batch ${rows}: KV-cache logits equal full-recompute logits within 1e-4 at every step, before and after the window slides`, async () => {
      const model = tinyModel(kind);
      const kv = await KvCacheGenerator.fromModel(model);
      const reference = await RecomputeGenerator.fromModel(model);
      const rng = new Rng(rows);
      try {
        const prompts = Array.from({ length: rows }, () => randomTokens(rng, 5));
        let cached = await kv.start(prompts);
        let full = await reference.start(kv.window());
        assert.ok(spread(full) > 1, 'logits vary enough for the comparison to mean something');
        assert.ok(maxAbsDiff(cached, full) <= 1e-4, `prefill: ${maxAbsDiff(cached, full)}`);
        // 30 steps after a 5-token prompt, context 16: the window slides (keeping 8 tokens) at steps 12, 21 and 30.
        for (let step = 0; step < 30; step++) {
          cached = await kv.next(randomTokens(rng, rows));
          full = await reference.start(kv.window());
          const d = maxAbsDiff(cached, full);
          assert.ok(d <= 1e-4, `step ${step} (window ${kv.window()[0].length}, slides ${kv.slides}): max |diff| ${d}`);
        }
        assert.equal(kv.slides, 3);
        assert.equal(kv.window()[0].length, 8);
      } finally {
        await kv.release();
        await reference.release();
      }
    });
  }
}

test('a prompt longer than the context prefills its last context tokens, as full recompute sees them', async () => {
  const model = tinyModel('llama');
  const kv = await KvCacheGenerator.fromModel(model);
  const reference = await RecomputeGenerator.fromModel(model);
  const prompt = randomTokens(new Rng(3), CONTEXT + 5);
  const cached = await kv.start([prompt]);
  const full = await reference.start([prompt]);
  assert.deepEqual(kv.window(), [prompt.slice(5)]);
  assert.deepEqual(reference.window(), [prompt.slice(5)]);
  assert.ok(maxAbsDiff(cached, full) <= 1e-4);
  await kv.release();
  await reference.release();
});

test('greedy decoding (temperature 0) is deterministic and the KV cache picks the tokens full recompute picks until the window slides', async () => {
  const model = tinyModel('gpt');
  const prompt = [[1, 2, 3, 4]];
  const run = async (kvCache: boolean) => {
    const g = await createGenerator(model, { kvCache });
    const r = await generate(g, prompt, { maxTokens: CONTEXT - 4, temperature: 0 });
    await g.release();
    return r;
  };
  const [a, b, full] = [await run(true), await run(true), await run(false)];
  assert.equal(a.mode, 'kv-cache');
  assert.equal(full.mode, 'recompute');
  assert.deepEqual(a.tokens, b.tokens);
  assert.deepEqual(a.tokens, full.tokens);
  assert.ok(new Set(a.tokens[0]).size > 1, 'the random model does not just repeat one token');
});

test('top-k sampling only ever picks among the k largest logits', () => {
  const rng = new Rng(5);
  const logits = Float32Array.from({ length: 50 }, () => rng.normal());
  const top = new Set(topKIds(logits, 5));
  const sampler = new TokenSampler({ temperature: 5, topK: 5, seed: 1 });
  const seen = new Set(Array.from({ length: 2000 }, () => sampler.sample(logits, 0, 50)));
  assert.deepEqual([...seen].sort(), [...top].sort());
});

test('topKIds returns the k largest ids, largest first, the lower id winning a tie', () => {
  assert.deepEqual(topKIds([0.1, 3, 2, 3, -1, 2], 3), [1, 3, 2]);
  assert.deepEqual(topKIds([1, 2], 5), [1, 0]);
});

test('temperature sampling is reproducible with a seed and differs between seeds', async () => {
  const model = tinyModel('llama');
  const g = await createGenerator(model);
  const sample = async (seed: number) => (await generate(g, [[5, 6, 7]], { maxTokens: 20, temperature: 1, topK: 20, seed })).tokens[0];
  const first = await sample(0);
  assert.deepEqual(await sample(0), first);
  assert.notDeepEqual(await sample(1), first);
  await g.release();
});

test('temperature 0 ignores the seed; vocabLimit keeps sampled ids inside a smaller tokenizer vocabulary', () => {
  const logits = Float32Array.from([0, 1, 9, 2]);
  assert.equal(new TokenSampler({ temperature: 0, seed: 3 }).sample(logits, 0, 4), 2);
  assert.equal(new TokenSampler({ temperature: 0, vocabLimit: 2 }).sample(logits, 0, 4), 1);
  const hot = new TokenSampler({ temperature: 100, vocabLimit: 2, seed: 0 });
  assert.ok(Array.from({ length: 200 }, () => hot.sample(logits, 0, 4)).every((t) => t < 2));
  assert.throws(() => new TokenSampler({ temperature: -1 }), /temperature must be a number >= 0/);
});

test('generate reports prefill and decode tokens/s apart', async () => {
  const g = await createGenerator(tinyModel('gpt'));
  const r = await generate(g, [[1, 2, 3], [4, 5, 6]], { maxTokens: 6 });
  assert.equal(r.promptTokens, 3);
  assert.equal(r.decodeSteps, 5);
  assert.ok(r.prefillTokensPerSecond > 0 && r.decodeTokensPerSecond > 0);
  assert.deepEqual(r.tokens.map((t) => t.length), [6, 6]);
  const one = await generate(g, [[1]], { maxTokens: 1 });
  assert.equal(one.decodeTokensPerSecond, 0);
  await assert.rejects(generate(g, [[]], { maxTokens: 2 }), /prompt is empty/);
  await assert.rejects(generate(g, [[1], [1, 2]], { maxTokens: 2 }), /equal lengths/);
  await g.release();
});

test('a decoder ONNX file with model.json generates with its KV cache, the same tokens as the in-memory model', async () => {
  const model = tinyModel('llama');
  const dir = scratchDir('qatkit-generate-');
  const file = path.join(dir, 'decoder.onnx');
  saveModel(transformerDecoder(model).graph, file);
  writeLanguageModelJson(file, languageModelJson(model, bytesTokenizer(), { kvCache: true }));
  const json = readLanguageModelJson(file)!;
  assert.equal(json.context, CONTEXT);
  assert.equal(json.kvCache?.pastKey, 'past_key_values.{i}.key');
  const fromFile = await createFileGenerator(file, json.context, { json });
  const inMemory = await createGenerator(model);
  assert.equal(fromFile.mode, 'kv-cache');
  const options = { maxTokens: 24, temperature: 0.8, seed: 2 };
  assert.deepEqual((await generate(fromFile, [[3, 1, 4]], options)).tokens, (await generate(inMemory, [[3, 1, 4]], options)).tokens);
  await fromFile.release();
  await inMemory.release();
});

test('a language model file without past_key_values inputs generates by full recompute and says why', async () => {
  const model = tinyModel('gpt');
  const dir = scratchDir('qatkit-generate-');
  const file = path.join(dir, 'model.onnx');
  saveModel(model.graph, file);
  const g = await createFileGenerator(file, CONTEXT);
  assert.equal(g.mode, 'recompute');
  assert.match(g.recomputeReason!, /no past_key_values inputs/);
  const kv = await createGenerator(model);
  const options = { maxTokens: 8, temperature: 0 };
  assert.deepEqual((await generate(g, [[9, 9]], options)).tokens, (await generate(kv, [[9, 9]], options)).tokens);
  await g.release();
  await kv.release();
});

test('a decoder whose layers disagree on the cache shape is refused before generating, naming the file or the tensor', async () => {
  const model = tinyModel('gpt');
  const decoder = transformerDecoder(model).graph;
  // Declare layer 1's past key with a head size of its own: the decoder's cache layout is inconsistent.
  const past = decoder.inputs.find((v) => v.name === 'past_key_values.1.key')!;
  past.shape = [past.shape[0], past.shape[1], past.shape[2], (past.shape[3] as number) + 1];
  const file = path.join(scratchDir('qatkit-generate-'), 'decoder.onnx');
  saveModel(decoder, file);
  // ONNX Runtime's shape inference refuses static mismatches at load (naming the file); symbolic ones reach
  // decoderLayoutOf's own check, which names the tensor.
  await assert.rejects(createFileGenerator(file, CONTEXT), /decoder\.onnx failed|'past_key_values\.1\.key' has shape/);
});
