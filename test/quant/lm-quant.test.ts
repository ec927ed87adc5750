import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runQuantizerOp } from '../helpers/quantizer-op-run';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import '../../src/quant';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { roundHalfEven } from '../../src/quant';
import { gpt, llama } from '../../src/models/transformers';
import { planQuantization, scaleLayout } from '../../src/quant/prepare';
import { fetchValues } from '../../src/export/fetch-values';
import { weightCodes } from '../../src/train/quant-health';
import { prepareLanguageModelQat } from '../../src/quant/qat';
import { LM_PRESETS, presetConfig } from '../../src/quant/presets';
import { parseQuantConfig } from '../../src/quant/config-file';
import { Model } from '../../src/models/model';
import { scratchDir } from '../helpers/scratch.js';

/** op(x) on [rows, cols]; loss = sum(y * w) so the gradient of x is dy = w where the STE passes. */
const run = (opType: string, dims: number[], x: number[], attrs: Record<string, number>) => runQuantizerOp(opType, dims, x, attrs, 0.5);

test('AbsmaxQuantize per token: s = max|row| / 127 per row, ties to even', async () => {
  // Row 0: absmax 127 -> s = 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2. Row 1: absmax 12.7 -> s = 0.1.
  const x = [127, 0.5, 1.5, 2.5, -2.5, 3.25, 12.7, 0.25, -0.35, 1.04, 0.05, 6.35];
  const { y } = await run('AbsmaxQuantize', [2, 6], x, { bits: 8, per_token: 1 });
  const expected = x.map((v, i) => {
    const row = i < 6 ? x.slice(0, 6) : x.slice(6);
    const s = Math.fround(Math.max(...row.map(Math.abs)) / 127);
    return roundHalfEven(Math.fround(Math.fround(v) / s)) * s;
  });
  y.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `${i}: ${v} vs ${expected[i]}`));
  assert.deepEqual(y.slice(1, 5), [0, 2, 2, -2]);
});

test('AbsmaxQuantize per token per block: one absmax/qmax scale per row per block of block_size channels', async () => {
  // 4-bit (qmax 7), blocks of 2: [7, 0.5] s = 1 -> [7, 0]; [1.4, 0.3] s = 0.2 -> [1.4, 0.4] (1.5 ties to 2).
  const { y } = await run('AbsmaxQuantize', [1, 4], [7, 0.5, 1.4, 0.3], { bits: 4, per_token: 1, block_size: 2 });
  [7, 0, 1.4, 0.4].forEach((v, i) => assert.ok(Math.abs(y[i] - v) < 1e-6, `${i}: ${y[i]} vs ${v}`));
});

test('TokenMinMaxQuantize: asymmetric per row, S = (max - min) / 255, Z = round(-min / S)', async () => {
  const x = [-1, 0, 0.5, 1.55, 2, 4, 8, 10];
  const { y } = await run('TokenMinMaxQuantize', [2, 4], x, { bits: 8 });
  const expected = x.map((v, i) => {
    const row = i < 4 ? x.slice(0, 4) : x.slice(4);
    const lo = Math.min(0, ...row);
    const hi = Math.max(0, ...row);
    const s = Math.fround((hi - lo) / 255);
    const z = roundHalfEven(-lo / s);
    const q = Math.min(255, Math.max(0, roundHalfEven(Math.fround(v / s)) + z));
    return (q - z) * s;
  });
  y.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5, `${i}: ${v} vs ${expected[i]}`));
  assert.equal(y[1], 0); // 0 is exact
});

test('per-token quantizers pass the gradient straight through (STE: nothing is clipped)', async () => {
  const x = [0.3, -1.2, 2.5, 0.01, -0.7, 1.9, -3, 0.2];
  for (const [op, attrs] of [['AbsmaxQuantize', { bits: 4, per_token: 1 }], ['AbsmaxQuantize', { bits: 8, per_token: 1, block_size: 2 }], ['TokenMinMaxQuantize', { bits: 4 }]] as const) {
    const { dx, w } = await run(op, [2, 4], x, attrs);
    assert.deepEqual(dx, w.map(Math.fround), op);
  }
});

const tiny = (kind: 'gpt' | 'llama'): Model => (kind === 'gpt' ? gpt : llama)({ vocabSize: 64, layers: 1, heads: 2, dim: 32, context: 8, seed: 1 });

test('gpt w4a16-g32: every MatMul weight and the tied table quantized once (one set of codes for embedding and head)', () => {
  const m = tiny('gpt');
  const plan = planQuantization(m, presetConfig('w4a16-g32', 'language-model'));
  const table = plan.weights.filter((w) => w.tensor === 'wte.weight');
  assert.equal(table.length, 1);
  assert.deepEqual(table[0].layers, ['wte', 'lm_head/MatMul']);
  assert.deepEqual(table[0].spec.granularity, { kind: 'per-group', axis: 1, size: 32 });
  const matmuls = m.graph.nodes.filter((n) => n.opType === 'MatMul' && m.params.includes(n.inputs[1])).map((n) => n.inputs[1]);
  assert.equal(matmuls.length, 4); // qkv, proj, fc, mlp.proj
  for (const w of matmuls) assert.ok(plan.weights.some((x) => x.tensor === w && x.spec.bits === 4), w);
  // The learned position table: int8 per row (per position) whatever the preset.
  const wpe = plan.weights.filter((w) => w.tensor === 'wpe.weight');
  assert.deepEqual(wpe.map((w) => [w.layers, w.spec.bits, w.spec.granularity, w.spec.symmetric]), [[['wpe'], 8, { kind: 'per-channel', axis: 0 }, true]]);
  assert.equal(plan.weights.length, 6);
  assert.equal(plan.activations.size, 0); // a16: activations stay float
});

test('the position table follows a quant-config override; firstLastBits still means the token embedding and the head', () => {
  const config = { ...presetConfig('w4a16-g32', 'language-model'), overrides: [{ match: 'wpe', weight: { bits: 4 } }] };
  const plan = planQuantization(tiny('gpt'), config);
  assert.equal(plan.weights.find((w) => w.tensor === 'wpe.weight')!.spec.bits, 4);
  const wide = planQuantization(tiny('gpt'), { ...presetConfig('w2a16-g32', 'language-model'), firstLastBits: 8 });
  const bitsOf = (t: string) => wide.weights.find((w) => w.tensor === t)!.spec.bits;
  assert.deepEqual([bitsOf('wte.weight'), bitsOf('wpe.weight'), bitsOf('blocks.0.attn.qkv.weight')], [8, 8, 2]);
});

test('LM presets: no layer stays at 8 bits by position; w4a8-g32 quantizes every Linear input per token', () => {
  const plan = planQuantization(tiny('llama'), presetConfig('w4a8-g32', 'language-model'));
  assert.ok(plan.weights.every((w) => w.spec.bits === 4), plan.weights.map((w) => `${w.tensor}:${w.spec.bits}`).join());
  assert.ok(plan.weights.some((w) => w.tensor === 'embed_tokens.weight') && plan.weights.some((w) => w.tensor === 'lm_head.weight'));
  for (const [, a] of plan.activations) assert.deepEqual([a.spec.method, a.spec.granularity.kind, a.spec.bits], ['absmax', 'per-token', 8]);
  // gate_proj and up_proj read one normed tensor: one quantizer; no residual Add is quantized.
  assert.ok([...plan.activations.values()].some((a) => a.layers.length === 2));
});

test('b158: BitLinear layers ternary behind an RMSNorm; the embedding and head (BitNet keeps them high precision) int8 rows and int8 plain per-token inputs; an override still rules', () => {
  for (const [name, tables] of [['gpt', ['wte.weight']], ['llama', ['embed_tokens.weight', 'lm_head.weight']]] as const) {
    const plan = planQuantization(tiny(name), presetConfig('b158', 'language-model'));
    const edge = new Set<string>(tables);
    for (const w of plan.weights) {
      if (edge.has(w.tensor) || w.tensor.includes('wpe')) assert.deepEqual([w.spec.bits, w.spec.method, w.spec.granularity.kind], [8, 'minmax', 'per-channel'], `${name} ${w.tensor}`);
      else assert.deepEqual([w.spec.method, w.spec.granularity.kind], ['ternary', 'per-channel'], `${name} ${w.tensor}`);
    }
    const acts = [...plan.activations.values()] as { layers: string[]; rmsNorm?: boolean; spec: { bits: number } }[];
    const headAct = acts.filter((a) => a.layers.some((l) => l.startsWith('lm_head')));
    assert.equal(headAct.length, 1, name);
    assert.ok(!headAct[0].rmsNorm && headAct[0].spec.bits === 8, `${name}: the head's input is a plain int8 per-token quantizer`);
    assert.ok(acts.filter((a) => a !== headAct[0]).every((a) => a.rmsNorm), `${name}: every BitLinear input has its RMSNorm`);
  }
  const ternaryTable = planQuantization(tiny('gpt'), { ...presetConfig('b158', 'language-model'), overrides: [{ match: 'wte', weight: { bits: 2, method: 'ternary', granularity: 'per-tensor' } }] });
  assert.equal(ternaryTable.weights.find((w) => w.tensor === 'wte.weight')!.spec.method, 'ternary');
  // --quant-config: "tokenLayers": null ternarizes the table with the rest; a partial object merges over the preset's.
  const allTernary = parseQuantConfig({ preset: 'b158', tokenLayers: null }, 'q.json', undefined, 'language-model');
  assert.equal(planQuantization(tiny('gpt'), allTernary).weights.find((w) => w.tensor === 'wte.weight')!.spec.method, 'ternary');
  const table4 = parseQuantConfig({ preset: 'b158', tokenLayers: { weight: { bits: 4, method: 'lsq', granularity: 'per-group', groupSize: 32 } } }, 'q.json', undefined, 'language-model');
  assert.deepEqual(planQuantization(tiny('gpt'), table4).weights.find((w) => w.tensor === 'wte.weight')!.spec.granularity, { kind: 'per-group', axis: 1, size: 32 });
  assert.throws(() => parseQuantConfig({ preset: 'b158', tokenLayers: { wieght: {} } }, 'q.json', undefined, 'language-model'), /q\.json: tokenLayers\.wieght: unknown key/);
});

test('a width not divisible by the group is refused naming the layer, its width and the valid groups', () => {
  const m = gpt({ vocabSize: 64, layers: 1, heads: 2, dim: 48, context: 8, seed: 1 });
  assert.throws(() => planQuantization(m, presetConfig('w4a16-g32', 'language-model')), /layer 'wte' has input width 48 .*groupSize 32; valid groups for it: 16/);
});

test('a per-token activation block that does not divide the quantized rows is refused when planned, naming the layer (per head: the head size)', () => {
  const m = gpt({ vocabSize: 64, layers: 1, heads: 2, dim: 32, context: 8, seed: 1 });
  const base = presetConfig('w4a8-g32', 'language-model');
  assert.throws(
    () => planQuantization(m, { ...base, activation: { ...base.activation, groupSize: 32 } }),
    /layer 'blocks\.0\.attn\.proj\/MatMul' reads \(the attention output, quantized per head\) has rows of 16, not divisible by the activation groupSize 32; valid blocks for it: 16/,
  );
  assert.doesNotThrow(() => planQuantization(m, { ...base, activation: { ...base.activation, groupSize: 16 } }));
});

test('w2a16-g32 is ParetoQ SEQ: FakeQuantize with level_offset 1/2, every weight on the odd multiples of s / 2 (no zero level), scales from the clip search on that grid', async () => {
  const m = gpt({ vocabSize: 64, layers: 1, heads: 2, dim: 32, context: 8, seed: 1 });
  const q = prepareLanguageModelQat(m, presetConfig('w2a16-g32', 'language-model'), 'w2a16-g32');
  const weights = q.quant!.quantizers.filter((z) => z.role === 'weight' && z.spec.bits === 2);
  assert.ok(weights.length === 5 && weights.every((z) => z.spec.method === 'seq'), weights.map((z) => `${z.tensor}:${z.spec.method}`).join());
  const nodes = q.graph.nodes.filter((n) => weights.some((z) => z.node === n.name));
  assert.ok(nodes.every((n) => n.opType === 'FakeQuantize' && n.attrs.level_offset?.value === 0.5 && n.attrs.qmin.value === -2 && n.attrs.qmax.value === 1));
  const values = await fetchValues(q, weights.flatMap((z) => [z.output, z.scale!]), 1);
  for (const z of weights) {
    const wq = values.get(z.output)!.data as Float32Array;
    const s = values.get(z.scale!)!.data as Float32Array;
    const layout = scaleLayout(q.graph.typeOf(z.tensor).shape as number[], z.spec);
    const w = m.graph.initializers.get(z.tensor)!.data as Float32Array;
    for (let i = 0; i < wq.length; i++) {
      const level = (2 * wq[i]) / s[layout.index(i)];
      assert.ok([-3, -1, 1, 3].some((l) => Math.abs(level - l) < 1e-5), `${z.tensor}[${i}]: ${wq[i]} is not an odd multiple of s / 2 (s ${s[layout.index(i)]})`);
    }
    // The start is a searched clip of max|w| on SEQ's grid: at most ParetoQ's alpha = max|w| (s = max|w| / 2), at least 0.3 of it.
    const maxAbs = new Float64Array(s.length);
    for (let i = 0; i < w.length; i++) maxAbs[layout.index(i)] = Math.max(maxAbs[layout.index(i)], Math.abs(w[i]));
    for (let j = 0; j < s.length; j++) assert.ok(s[j] <= (maxAbs[j] / 2) * (1 + 1e-6) && s[j] >= (0.3 * maxAbs[j]) / 2 - 1e-7, `${z.tensor} scale ${j}: ${s[j]} vs max|w| ${maxAbs[j]}`);
  }
  // Quant health counts SEQ's codes on its own grid: the codes of the start are the ones the quantizer used.
  const z = weights[0];
  const layout = scaleLayout(q.graph.typeOf(z.tensor).shape as number[], z.spec);
  const sample = { node: z.node, layer: z.layers[0], weight: m.graph.initializers.get(z.tensor)!.data as Float32Array, scale: values.get(z.scale!)!.data as Float32Array, zeroPoint: new Float32Array(1), index: layout.index, qmin: -2, qmax: 1, offset: 0.5 };
  const codes = weightCodes(sample);
  const wq = values.get(z.output)!.data as Float32Array;
  codes.forEach((c, i) => assert.ok(Math.abs((c + 0.5) * sample.scale[layout.index(i)] - wq[i]) < 1e-6, `code ${c} at ${i}`));
});

test("'seq' is refused for activations and outside 2..4 bits, naming the key", () => {
  assert.throws(() => parseQuantConfig({ preset: 'w4a8-g32', activation: { method: 'seq' } }, 'cfg.json', undefined, 'language-model'), /cfg\.json: activation\.method: 'seq' is a weight quantizer/);
  assert.throws(() => parseQuantConfig({ preset: 'w4a16-g32', weight: { method: 'seq', bits: 8 } }, 'cfg.json', undefined, 'language-model'), /weight: bits = 8 is invalid; valid: 2, 3 or 4 for 'seq'/);
});

test('image presets keep their meaning; language-model names are refused for image models', () => {
  assert.equal(presetConfig('w8a8').activation.granularity, 'per-tensor');
  assert.equal(presetConfig('w8a8', 'language-model').activation.granularity, 'per-token');
  assert.throws(() => presetConfig('w4a16-g32'), /language-model preset/);
  assert.throws(() => presetConfig('w4a4', 'language-model'), /not a language-model preset.*image-model preset/);
});

async function logits(m: Model, ids: number[]): Promise<Float32Array> {
  const s = await Session.create(m.graph, { threads: 1 });
  const r = await s.run({ [m.input]: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) }, [m.output]);
  await s.release();
  return r[m.output].data as Float32Array;
}

test('every LM preset builds a QAT graph that runs, near the fp32 logits at 8 bits', async () => {
  const ids = [1, 5, 9, 2, 33, 7, 0, 63];
  for (const kind of ['gpt', 'llama'] as const) {
    const m = tiny(kind);
    const ref = await logits(m, ids);
    for (const preset of LM_PRESETS) {
      const q = prepareLanguageModelQat(m, presetConfig(preset, 'language-model'), preset);
      const out = await logits(q, ids);
      assert.equal(out.length, ref.length);
      assert.ok(out.every(Number.isFinite), `${kind} ${preset}`);
      if (preset === 'w8a8') {
        const err = Math.max(...Array.from(out, (v, i) => Math.abs(v - ref[i])));
        assert.ok(err < 0.05, `${kind} w8a8 max logit error ${err}`);
      }
    }
  }
});

test('QAT fine-tuning of a gpt run (--from, w4a16-g32) reports fp32 and QAT perplexity; the RTN graph evaluates', async () => {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { DEFAULT_TRAIN_CONFIG, train } = await import('../../src/train/run');
  const dir = scratchDir('lm-qat-');
  const base = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 32, context: 16, steps: 4, batch: 4, lr: 2e-3, threads: 1, evalEvery: 0, checkpointEvery: 0 };
  await train(base, path.join(dir, 'fp32'));
  const r = (await train({ ...base, model: 'lenet', data: 'mnist', quant: 'w4a16-g32', from: path.join(dir, 'fp32'), steps: 2 }, path.join(dir, 'qat'))) as unknown as Record<string, unknown>;
  assert.equal(r.quant, 'w4a16-g32');
  assert.equal(r.method, 'qat');
  assert.ok(typeof r.fp32_perplexity === 'number' && typeof r.val_perplexity === 'number' && Number.isFinite(r.val_perplexity as number));
  fs.rmSync(dir, { recursive: true, force: true });
});
