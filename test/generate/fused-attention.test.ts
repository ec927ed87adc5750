// The decoder's fused attention (one com.microsoft GroupQueryAttention per layer) computes what the ops form does,
// behind the same inputs and outputs, and the export uses it only where the run has nothing inside attention.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import '../../src/quant';
import { gpt, llama, transformerDecoder } from '../../src/models/transformers';
import { DecoderAttention } from '../../src/models/transformer-builder';
import { Model } from '../../src/models/model';
import { Session } from '../../src/runtime/session';
import { decoderLayoutOf } from '../../src/generate/decoder-layout';
import { KvCacheGenerator } from '../../src/generate/kv-cache-generator';
import { chooseAttention } from '../../src/export/lm-decoder';
import { prepareLanguageModelQat } from '../../src/quant/qat';
import { presetConfig } from '../../src/quant/presets';
import { withKvCacheQuantization } from '../../src/quant/kv-cache';
import { InputError } from '../../src/validate/schema';

const CONTEXT = 16;

/** Logits of every step: a prefill of two 5-token rows, then 20 decode steps (the window slides past 16). */
async function stepLogits(model: Model, attention: DecoderAttention): Promise<{ logits: Float32Array[]; slides: number }> {
  const decoder = transformerDecoder(model, attention);
  const session = await Session.create(decoder.graph, { threads: 1 });
  const arch = model.lm!.arch!;
  const layout = decoderLayoutOf(session.inner, { heads: arch.heads, headSize: arch.dim / arch.heads });
  // The fused decoder runs in append mode (one preallocated buffer per cache tensor, only new rows fetched).
  assert.equal(Boolean(layout.appended), attention === 'fused');
  const gen = new KvCacheGenerator(session.inner, layout, CONTEXT, arch.vocabSize, {}, session);
  const logits = [Float32Array.from((await gen.start([[1, 2, 3, 4, 5], [60, 7, 33, 2, 9]])).data)];
  for (let i = 0; i < 20; i++) logits.push(Float32Array.from((await gen.next([(i * 5) % 64, (i * 11 + 3) % 64])).data));
  const slides = gen.slides;
  await gen.release();
  return { logits, slides };
}

for (const [name, build] of [['gpt', gpt], ['llama (rotary inside the op)', llama]] as const) {
  test(`${name}: the fused decoder's logits equal the ops decoder's at prefill, decode and after the window slides`, async () => {
    const model = build({ vocabSize: 64, layers: 2, heads: 2, dim: 32, context: CONTEXT, seed: 5 });
    const ops = await stepLogits(model, 'ops');
    const fused = await stepLogits(model, 'fused');
    assert.ok(ops.slides >= 1 && fused.slides === ops.slides, `slides ${ops.slides} / ${fused.slides}`);
    let worst = 0;
    for (let s = 0; s < ops.logits.length; s++) for (let i = 0; i < ops.logits[s].length; i++) worst = Math.max(worst, Math.abs(ops.logits[s][i] - fused.logits[s][i]));
    assert.ok(worst < 1e-5, `max |ops - fused| = ${worst}`);
  });
}

test('the fused decoder has one GroupQueryAttention per layer and no Softmax or cache Concat; the ops form\'s inputs and outputs, plus the appended keys and values', () => {
  const model = llama({ vocabSize: 64, layers: 3, heads: 2, dim: 32, context: CONTEXT });
  const [ops, fused] = [transformerDecoder(model, 'ops').graph, transformerDecoder(model, 'fused').graph];
  const count = (g: typeof ops, op: string) => g.nodes.filter((n) => n.opType === op).length;
  assert.equal(count(fused, 'GroupQueryAttention'), 3);
  assert.equal(count(fused, 'Softmax'), 0);
  assert.ok(fused.nodes.filter((n) => n.opType === 'Concat').every((n) => !n.inputs.some((i) => i.startsWith('past_key_values'))));
  assert.ok(count(ops, 'Softmax') === 3 && count(ops, 'GroupQueryAttention') === 0);
  const inputs = (g: typeof ops) => g.inputs.map((v) => `${v.name}:${v.shape.join(',')}`);
  assert.deepEqual(inputs(fused), inputs(ops));
  const appended = [0, 1, 2].flatMap((i) => [`new_key_values.${i}.key`, `new_key_values.${i}.value`]);
  assert.deepEqual(fused.outputs.map((v) => v.name).sort(), [...ops.outputs.map((v) => v.name), ...appended].sort());
});

test('chooseAttention: fused for float and weight-only runs (int4 files only when asked); ops (with the reason) for a quantized KV cache or the per-head codes of qdq; --attention fused refuses those', () => {
  const fp32 = gpt({ vocabSize: 64, layers: 1, heads: 2, dim: 32, context: CONTEXT });
  assert.equal(chooseAttention(fp32).used, 'fused');
  assert.equal(chooseAttention(fp32, 'ops').used, 'ops');
  const w4 = prepareLanguageModelQat(fp32, presetConfig('w4a16-g32', 'language-model'), 'w4a16-g32');
  assert.equal(chooseAttention(w4, 'auto', 'matmulnbits').used, 'fused');
  // int4 is standard ONNX throughout unless the fused op is asked for.
  assert.equal(chooseAttention(w4, 'auto', 'int4').used, 'ops');
  assert.equal(chooseAttention(w4, 'fused', 'int4').used, 'fused');
  const kv = withKvCacheQuantization(prepareLanguageModelQat(fp32, presetConfig('w4a16-g32', 'language-model'), 'w4a16-g32'), { bits: 4, layout: 'per-token' });
  const kvChoice = chooseAttention(kv);
  assert.equal(kvChoice.used, 'ops');
  assert.match(kvChoice.reason, /KV cache/);
  // A per-head quantizer (w8a8's, before the output projection) stays float ops on a view of the fused output,
  // except in qdq, whose integer product takes per-head codes.
  const w8a8 = prepareLanguageModelQat(fp32, presetConfig('w8a8', 'language-model'), 'w8a8');
  assert.equal(chooseAttention(w8a8, 'auto', 'matmulnbits').used, 'fused');
  const w8a8Choice = chooseAttention(w8a8, 'auto', 'qdq');
  assert.equal(w8a8Choice.used, 'ops');
  assert.match(w8a8Choice.reason, /per-head int8 activations for MatMulIntegerToFloat \(blocks\.0\.attn\.proj/);
  const oddHeads = chooseAttention(llama({ vocabSize: 64, layers: 1, heads: 8, dim: 32, context: CONTEXT }));
  assert.equal(oddHeads.used, 'ops');
  assert.match(oddHeads.reason, /head size of 4 \(GroupQueryAttention takes multiples of 8\)/);
  assert.throws(() => chooseAttention(kv, 'fused'), (e: unknown) => e instanceof InputError && /--attention fused: .*KV cache.*--attention ops or auto/.test(e.message));
});

test('a per-head activation quantizer (b158 BitLinear before the output projection) reads a [B, T, H, D] view of the fused output: the same logits as the ops form', async () => {
  const { buildLanguageModelDecoder } = await import('../../src/export/lm-decoder');
  const { encodeModel } = await import('../../src/onnx/model-io');
  const { fileSessionOptions } = await import('../../src/generate/generator');
  const ort = await import('onnxruntime-node');
  const q = prepareLanguageModelQat(gpt({ vocabSize: 64, layers: 2, heads: 2, dim: 32, context: CONTEXT, seed: 4 }), presetConfig('b158', 'language-model'), 'b158');
  const runs: Float32Array[][] = [];
  for (const attention of ['ops', 'fused'] as const) {
    const exported = await buildLanguageModelDecoder(q, { format: 'matmulnbits', threads: 1, attention });
    assert.equal(exported.attention.used, attention);
    const session = await ort.InferenceSession.create(encodeModel(exported.graph), fileSessionOptions(1, {}));
    const gen = new KvCacheGenerator(session, decoderLayoutOf(session, { heads: 2, headSize: 16 }), CONTEXT, 64);
    const steps = [Float32Array.from((await gen.start([[3, 1, 4, 1, 5]])).data)];
    for (let i = 0; i < 12; i++) steps.push(Float32Array.from((await gen.next([(i * 7) % 64])).data));
    runs.push(steps);
    await gen.release();
  }
  let worst = 0;
  for (let s = 0; s < runs[0].length; s++) for (let i = 0; i < runs[0][s].length; i++) worst = Math.max(worst, Math.abs(runs[0][s][i] - runs[1][s][i]));
  assert.ok(worst < 1e-5, `max |ops - fused| = ${worst}`);
});
