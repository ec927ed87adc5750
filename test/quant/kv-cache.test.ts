import { test } from 'node:test';
import path from 'node:path';
import assert from 'node:assert/strict';
import { randomDecoder, maxLogitDiff } from '../helpers/tiny-decoder';
import { runQuantizerOp } from '../helpers/quantizer-op-run';
import '../../src/ops';
import '../../src/quant';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { QATKIT, roundHalfEven } from '../../src/quant';
import { gpt, llama } from '../../src/models/transformers';
import { Model } from '../../src/models/model';
import { Rng } from '../../src/train/rng';
import { checkKvCacheQuant, insertKvCacheQuantizers, kvCacheQuantOf, KvCacheQuant, kvDescription, withKvCacheQuantization } from '../../src/quant/kv-cache';
import { importForTraining } from '../../src/models/resolve';
import { KvCacheGenerator, RecomputeGenerator } from '../../src/generate/index';
import type { NextTokenLogits } from '../../src/generate/index';

/** Asymmetric min/max fake quantization of `values` as one set (range widened to include 0): the closed form. */
function minMaxQuantize(values: number[], bits: number): number[] {
  const qmax = 2 ** bits - 1;
  const lo = Math.min(0, ...values);
  const hi = Math.max(0, ...values);
  const s = Math.max(Math.fround(Math.fround(hi - lo) / qmax), Math.fround(1e-8));
  const z = roundHalfEven(Math.fround(-lo / s));
  return values.map((v) => Math.min(Math.max(roundHalfEven(Math.fround(v / s)), -z), qmax - z) * s);
}

/** y = op(x) on [1, 1, T, D] and dx of loss = sum(y * w). */
const run = (opType: string, dims: number[], x: number[], attrs: Record<string, number>) => runQuantizerOp(opType, dims, x, attrs, 0.25);

const close = (a: number[], b: number[], tol: number, what: string) => a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= tol, `${what} [${i}]: ${v} vs ${b[i]}`));

test('per-token KV quantizer: each cache row [b, h, t, :] quantized on its own, asymmetric, S = (max - min) / (2^bits - 1), Z = round(-min / S)', async () => {
  const rng = new Rng(3);
  const [t, d] = [3, 5];
  const x = Array.from({ length: t * d }, () => Math.fround(rng.range(-2, 3)));
  for (const bits of [8, 4, 2]) {
    const { y } = await run('TokenMinMaxQuantize', [1, 1, t, d], x, { bits });
    const expected = [0, 1, 2].flatMap((row) => minMaxQuantize(x.slice(row * d, row * d + d), bits));
    close(y, expected, 1e-6, `${bits} bits`);
    const levels = [0, 1, 2].map((row) => new Set(y.slice(row * d, row * d + d).map((v) => v.toFixed(5))).size);
    assert.ok(levels.every((n) => n <= 2 ** bits), `at most 2^${bits} levels per row`);
  }
});

test('KIVI key quantizer: per channel within groups of G tokens, each group from its own tokens; the unfinished group stays float', async () => {
  // T = 5 tokens, G = 2: groups {0, 1} and {2, 3} quantized per channel; token 4 (an unfinished group) is float.
  const [t, d, g] = [5, 3, 2];
  const x = [0.3, -1.2, 2.0, 1.7, 0.4, -0.6, -0.9, 5.0, 0.05, 0.25, 4.1, -0.33, 1.234, -5.678, 9.1];
  for (const bits of [4, 2]) {
    const { y, dx, w } = await run('KvGroupQuantize', [1, 1, t, d], x.map(Math.fround), { bits, group_size: g });
    const expected = [...x];
    for (const start of [0, 2]) {
      for (let c = 0; c < d; c++) {
        const idx = [start * d + c, (start + 1) * d + c];
        const q = minMaxQuantize(idx.map((i) => Math.fround(x[i])), bits);
        idx.forEach((i, j) => (expected[i] = q[j]));
      }
    }
    close(y, expected, 1e-6, `${bits} bits`);
    close(y.slice(4 * d), x.slice(4 * d).map(Math.fround), 0, 'unfinished group');
    // 2 bits, group {0, 1} channel 1: values -1.2 and 0.4 -> range [-1.2, 0.4], S = 1.6 / 3, Z = round(2.25) = 2.
    if (bits === 2) assert.ok(Math.abs(y[1] - -2 * (1.6 / 3)) < 1e-6 && Math.abs(y[4] - 1 * (1.6 / 3)) < 1e-6, `${y[1]}, ${y[4]}`);
    // Straight-through: no value leaves its group's range, so dx = dy everywhere.
    close(dx, w, 0, 'STE gradient');
  }
});

test('STE through the KV quantizers: autodiff dx equals central finite differences of the downstream function at the quantized point (float64)', async () => {
  // L(x) = sum(w * tanh(Q(x) @ M)); under the STE dL/dx = dL/dy at y = Q(x), which finite differences of y -> L measure.
  const [t, d] = [4, 3];
  const rng = new Rng(11);
  const x = Array.from({ length: t * d }, () => rng.range(-1, 1));
  const m = Array.from({ length: d * 2 }, () => rng.range(-1, 1));
  const w = Array.from({ length: t * 2 }, () => rng.range(0.5, 1.5));
  for (const [op, attrs] of [['TokenMinMaxQuantize', { bits: 4 }], ['KvGroupQuantize', { bits: 2, group_size: 2 }]] as const) {
    const build = (quantize: boolean) => {
      const g = new Graph();
      const b = new GraphBuilder(g);
      const xi = b.input('x', DType.DOUBLE, [1, 1, t, d]);
      const y = quantize ? b.op1(op, [xi], attrs, { domain: QATKIT }) : xi;
      const z = b.op1('Tanh', [b.matmul(y, b.constant(new Tensor(DType.DOUBLE, [d, 2], Float64Array.from(m))))]);
      const loss = b.sumAll(b.mul(z, b.constant(new Tensor(DType.DOUBLE, [1, 1, t, 2], Float64Array.from(w)))));
      b.output(loss);
      const outs = [loss];
      if (quantize) {
        outs.push(b.output(b.identity(y)));
        outs.push(b.output(b.identity(differentiate(g, { loss, wrt: [xi] }).get(xi)!)));
      }
      return { g, outs };
    };
    const feed = (v: ArrayLike<number>) => ({ x: toOrtTensor(new Tensor(DType.DOUBLE, [1, 1, t, d], Float64Array.from(v))) });
    const q = build(true);
    const qs = await Session.create(q.g, { threads: 1 });
    const r = await qs.run(feed(x));
    const yq = Array.from(r[q.outs[1]].data as Float64Array);
    const analytic = Array.from(r[q.outs[2]].data as Float64Array);
    await qs.release();
    const f = build(false);
    const fs = await Session.create(f.g, { threads: 1 });
    const h = 1e-6;
    for (let i = 0; i < yq.length; i++) {
      const plus = [...yq];
      const minus = [...yq];
      plus[i] += h;
      minus[i] -= h;
      const lp = (await fs.run(feed(plus)))[f.outs[0]].data[0] as number;
      const lm = (await fs.run(feed(minus)))[f.outs[0]].data[0] as number;
      const numeric = (lp - lm) / (2 * h);
      assert.ok(Math.abs(numeric - analytic[i]) <= 1e-6 * Math.max(1, Math.abs(numeric)), `${op} x[${i}]: autodiff ${analytic[i]} vs FD ${numeric}`);
    }
    await fs.release();
  }
});

test('KV options are checked: bits 8/4/2, layouts per-token and kivi, refused twice and on graphs without attention', () => {
  assert.throws(() => checkKvCacheQuant({ bits: 3, layout: 'per-token' }), /3 bits; valid: 8, 4, 2/);
  assert.throws(() => checkKvCacheQuant({ bits: 4, layout: 'blocks' as never }), /--kv-layout: 'blocks'; valid: per-token, kivi/);
  const m = withKvCacheQuantization(tiny('gpt', 16), { bits: 4, layout: 'kivi', groupSize: 8 });
  assert.deepEqual(kvCacheQuantOf(m.graph), { bits: 4, layout: 'kivi', groupSize: 8 });
  assert.throws(() => insertKvCacheQuantizers(m.graph, { bits: 8, layout: 'per-token' }), /quantized already \(kv4 KIVI/);
  assert.throws(() => insertKvCacheQuantizers(new Graph(), { bits: 8, layout: 'per-token' }), /no attention found/);
});

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');

for (const [fixture, between] of [['torch_nanogpt', "NanoGpt's scale Mul and masked_fill Where(mask, -inf)"], ['torch_hf_llama', "HF Llama's scale Div, additive mask and softmax(dtype=float32) Casts (keys after repeat_kv)"]]) test(`an imported PyTorch decoder's attention takes the KV quantizers: ${between} sit between q k^T and the Softmax`, async () => {
  const model = importForTraining(path.join(FIXTURES, `${fixture}.onnx`));
  const layers = model.graph.nodes.filter((n) => n.opType === 'Softmax').length;
  assert.ok(layers >= 1);
  const logitsOf = async (m: Model) => {
    const session = await Session.create(m.graph, { threads: 1 });
    const ids = new Tensor(DType.INT64, [2, 16], BigInt64Array.from({ length: 32 }, (_, i) => BigInt((i * 7) % 64)));
    const out = await session.run({ [m.input]: toOrtTensor(ids) });
    await session.release();
    return Array.from(out[m.graph.outputs[0].name].data as Float32Array);
  };
  const float = await logitsOf(model);
  for (const [kv, far] of [[{ bits: 8, layout: 'per-token' }, false], [{ bits: 2, layout: 'per-token' }, true], [{ bits: 2, layout: 'kivi', groupSize: 4 }, true]] as [KvCacheQuant, boolean][]) {
    const q = withKvCacheQuantization(model, kv);
    const quantizers = q.graph.nodes.filter((n) => n.name.startsWith('kv_quant/') && (n.name.endsWith('/key') || n.name.endsWith('/value')));
    assert.equal(quantizers.length, 2 * layers, `${kvDescription(kv)}: a key and a value quantizer per attention`);
    const diff = Math.max(...(await logitsOf(q)).map((v, i) => Math.abs(v - float[i])));
    if (far) assert.ok(diff > 1e-3, `${kvDescription(kv)} moved the logits by only ${diff}`);
    else assert.ok(diff > 0 && diff < 0.05, `kv8 moved the logits by ${diff}`);
  }
});

const VOCAB = 40;
const builders = { gpt, llama };

/** Parameters rescaled to N(0, 0.3^2) so logits vary by more than the tolerance (see test/generate). */
const tiny = (kind: keyof typeof builders, context: number): Model => randomDecoder(kind, VOCAB, context);
const maxAbsDiff = maxLogitDiff;

const CASES: [keyof typeof builders, KvCacheQuant][] = [
  ['gpt', { bits: 4, layout: 'per-token' }],
  ['llama', { bits: 2, layout: 'per-token' }],
  ['gpt', { bits: 2, layout: 'kivi', groupSize: 8 }],
  ['llama', { bits: 4, layout: 'kivi', groupSize: 8 }],
];

for (const [kind, kv] of CASES) {
  test(`${kind}, kv${kv.bits} ${kv.layout}: KV-cache decode logits equal full recompute of the quantized training graph (1e-4) at every step${kv.layout === 'kivi' ? ', across group boundaries' : ''}`, async () => {
    const context = 32;
    const model = withKvCacheQuantization(tiny(kind, context), kv);
    const float = tiny(kind, context);
    const dec = await KvCacheGenerator.fromModel(model);
    const ref = await RecomputeGenerator.fromModel(model);
    const fref = await RecomputeGenerator.fromModel(float);
    const rng = new Rng(5);
    try {
      // Prompt of 5 tokens, 40 steps: groups of 8 complete at lengths 8, 16, 24, 32; the window slides at 32.
      let cached = await dec.start([[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]]);
      let quantizedVsFloat = 0;
      for (let step = 0; step < 40; step++) {
        const full = await ref.start(dec.window());
        const d = maxAbsDiff(cached, full);
        assert.ok(d <= 1e-4, `step ${step} (window ${dec.window()[0].length}): max |diff| ${d}`);
        quantizedVsFloat = Math.max(quantizedVsFloat, maxAbsDiff(full, await fref.start(dec.window())));
        cached = await dec.next([rng.int(VOCAB), rng.int(VOCAB)]);
      }
      assert.ok(dec.slides >= 1, 'the window slid');
      // The quantizers act: quantized logits differ from the float model's by far more than the tolerance.
      assert.ok(quantizedVsFloat > 1e-2, `quantized vs float logits: ${quantizedVsFloat}`);
    } finally {
      await dec.release();
      await ref.release();
      await fref.release();
    }
  });
}

test('KIVI training graph is causal: changing a later token leaves every earlier position\'s logits unchanged, also inside a group', async () => {
  const context = 24;
  const model = withKvCacheQuantization(tiny('gpt', context), { bits: 2, layout: 'kivi', groupSize: 8 });
  const s = await Session.create(model.graph, { threads: 1 });
  const rng = new Rng(9);
  const ids = Array.from({ length: context }, () => rng.int(VOCAB));
  const logits = async (seq: number[]) => {
    const r = await s.run({ [model.input]: toOrtTensor(Tensor.int64([1, context], seq)) });
    return r[model.output].data as Float32Array;
  };
  try {
    const base = await logits(ids);
    // Position 13 sits inside the second group (8..15): a scale from it would leak into positions 8..12 if the
    // group's keys were quantized for queries of that same group.
    for (const changed of [13, 16, 23]) {
      const other = [...ids];
      other[changed] = (other[changed] + 1) % VOCAB;
      const alt = await logits(other);
      const before = changed * VOCAB;
      assert.deepEqual(Array.from(alt.subarray(0, before)), Array.from(base.subarray(0, before)), `positions < ${changed} unchanged`);
      assert.notDeepEqual(Array.from(alt.subarray(before, before + VOCAB)), Array.from(base.subarray(before, before + VOCAB)), `position ${changed} changed`);
    }
  } finally {
    await s.release();
  }
});

test('KIVI keeps the unfinished group in float for keys and values (KIVI\'s residual): the first group\'s logits are the unquantized model\'s, later groups\' are not', async () => {
  const context = 16;
  const float = tiny('gpt', context);
  const kivi = withKvCacheQuantization(float, { bits: 2, layout: 'kivi', groupSize: 8 });
  const perToken = withKvCacheQuantization(float, { bits: 2, layout: 'per-token' });
  const rng = new Rng(4);
  const ids = Tensor.int64([1, context], Array.from({ length: context }, () => rng.int(VOCAB)));
  const logits = async (m: Model) => {
    const s = await Session.create(m.graph, { threads: 1 });
    try {
      return (await s.run({ [m.input]: toOrtTensor(ids) }))[m.output].data as Float32Array;
    } finally {
      await s.release();
    }
  };
  const [f, k, p] = [await logits(float), await logits(kivi), await logits(perToken)];
  const worst = (a: Float32Array, b: Float32Array, from: number, to: number) => Math.max(...Array.from(a.subarray(from * VOCAB, to * VOCAB), (x, i) => Math.abs(x - b[from * VOCAB + i])));
  assert.ok(worst(k, f, 0, 8) < 1e-5, `group 0 reads float keys and values: ${worst(k, f, 0, 8)}`);
  assert.ok(worst(p, f, 0, 8) > 1e-3, 'per-token kv2 changes the same positions (so the check can fail)');
  assert.ok(worst(k, f, 8, 16) > 1e-3, 'group 1 reads group 0 quantized');
});
