import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import '../../src/quant';
import { lenet } from '../../src/models/zoo';
import { Model } from '../../src/models/model';
import { Tensor } from '../../src/ir/tensor';
import { Rng } from '../../src/train/rng';
import { Session } from '../../src/runtime/session';
import { foldBatchNormForQat } from '../../src/quant/fold-batchnorm';
import { planQuantization } from '../../src/quant/prepare';
import { prepareQat } from '../../src/quant/qat';
import { presetConfig } from '../../src/quant/presets';
import { parseQuantConfig } from '../../src/quant/config-file';
import { importForTraining } from '../../src/models/resolve';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { scratchDir } from '../helpers/scratch.js';

const input = { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] };
const rng = new Rng(3);
const images = Float32Array.from({ length: 16 * 784 }, () => rng.uniform());
const calib = { images, count: 16, sampleShape: [1, 28, 28] };

/** lenet with non-trivial BN parameters and running statistics. */
function lenetWithBn(): Model {
  const m = lenet({ input, seed: 1 });
  const r = new Rng(9);
  for (const name of [...m.params, ...m.runningStats]) {
    if (!name.includes('bn')) continue;
    const t = m.graph.initializers.get(name)!;
    const v = Float32Array.from(t.data as Float32Array, () => (name.endsWith('running_var') || name.endsWith('weight') ? r.range(0.5, 2) : r.range(-0.5, 0.5)));
    m.graph.initializers.set(name, new Tensor(t.dtype, t.dims, v));
  }
  return m;
}

async function logits(model: Model, x: Float32Array, n: number): Promise<Float32Array> {
  const s = await Session.create(model.graph, { threads: 1 });
  const r = await s.run({ [model.input]: new ort.Tensor('float32', x, [n, 1, 28, 28]) }, [model.output]);
  return r[model.output].data as Float32Array;
}

test('BN folding for QAT: in eval mode the folded graph equals Conv + BN within 1e-5', async () => {
  const m = lenetWithBn();
  const folded = { ...m, graph: m.graph.clone() };
  const convs = foldBatchNormForQat(folded.graph);
  assert.equal(convs.length, 2);
  const a = await logits(m, images, 16);
  const b = await logits(folded, images, 16);
  const scale = Math.max(...Array.from(a, Math.abs));
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= 1e-5 * Math.max(1, scale), `logit ${i}: ${v} vs ${b[i]}`));
});

test('w8a8 places per-channel int8 weights on every Conv/Gemm and uint8 activations at their inputs', () => {
  const plan = planQuantization(lenetWithBn(), presetConfig('w8a8'));
  assert.deepEqual(plan.weights.map((w) => [w.node.opType, w.spec.bits, w.spec.granularity.kind, w.spec.method]), [
    ['Conv', 8, 'per-channel', 'minmax'],
    ['Conv', 8, 'per-channel', 'minmax'],
    ['Gemm', 8, 'per-channel', 'minmax'],
    ['Gemm', 8, 'per-channel', 'minmax'],
  ]);
  assert.ok(plan.weights.every((w) => w.spec.narrowRange && w.spec.signed));
  assert.equal(plan.activations.size, 4);
  for (const { spec } of plan.activations.values()) assert.deepEqual([spec.bits, spec.signed, spec.symmetric], [8, false, false]);
  // Weights of folded convs are quantized after folding (the integer model's weights).
  assert.ok(plan.weights[0].tensor.endsWith('/folded'));
});

test('w4a4 keeps the first and last layers at 8 bits; inner layers learn 4-bit scales (LSQ)', () => {
  const plan = planQuantization(lenetWithBn(), presetConfig('w4a4'));
  assert.deepEqual(plan.weights.map((w) => `${w.spec.bits}${w.spec.method}`), ['8minmax', '4lsq', '4lsq', '8minmax']);
  const acts = [...plan.activations.values()].map((a) => `${a.spec.bits}${a.spec.method}${a.spec.signed ? 's' : 'u'}`);
  assert.deepEqual(acts, ['8minmaxu', '4lsqu', '4lsqu', '8minmaxu']);
});

test('per-layer overrides by pattern: mixed precision and skipped layers', () => {
  const config = parseQuantConfig({ preset: 'w4a8', firstLastBits: null, overrides: [{ match: 'conv*', weight: { bits: 8, method: 'minmax' } }, { match: 'fc1', skip: true }] }, 'test');
  const plan = planQuantization(lenetWithBn(), config);
  assert.deepEqual(plan.weights.map((w) => `${w.node.name}:${w.spec.bits}`), ['conv0:8', 'conv1:8', 'fc0:4']);
});

test('a bad quant config names the key and the valid values', () => {
  assert.throws(() => parseQuantConfig({ weight: { bits: 9 } }, 'q.json'), /q\.json: weight\.bits: must be 2\.\.8 or 16 \(1 for binary\), got 9/);
  assert.throws(() => parseQuantConfig({ weight: { method: 'magic' } }, 'q.json'), /weight\.method: must be one of minmax, lsq, .*got "magic"/);
  assert.throws(() => parseQuantConfig({ wieght: {} }, 'q.json'), /wieght: unknown key; did you mean 'weight'\? \(valid keys: preset, weight/);
  assert.throws(() => presetConfig('w5a5'), /--quant: unknown preset 'w5a5'; valid: w8a8, w4a8/);
});

test('prepareQat on an imported PyTorch model quantizes its Conv and Gemm layers', async () => {
  const fixture = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/torch_cnn.onnx');
  const m = importForTraining(fixture);
  const q = await prepareQat(m, presetConfig('w4a8'), calib, 'w4a8', 1);
  const weights = q.quant!.quantizers.filter((z) => z.role === 'weight');
  assert.equal(weights.length, 4);
  assert.equal(q.quant!.folded.length, 2);
  const out = await logits(q, images.subarray(0, 4 * 784), 4);
  assert.ok(out.every(Number.isFinite));
});

test('w8a8 fake quantization at the calibrated scales stays close to fp32 (sanity of the whole graph)', async () => {
  const m = lenetWithBn();
  const q = await prepareQat(m, presetConfig('w8a8'), calib, 'w8a8', 1);
  const a = await logits(m, images, 16);
  const b = await logits(q, images, 16);
  const scale = Math.max(...Array.from(a, Math.abs));
  let worst = 0;
  a.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[i]))));
  assert.ok(worst < 0.05 * scale, `max logit difference ${worst} vs logit scale ${scale}`);
  assert.ok(worst > 0, 'fake quantization changed nothing');
});

test('QAT phases: observers move before their freeze step and stay fixed after; BN statistics freeze too; resume is exact', async () => {
  const tmp = () => scratchDir('qatkit-qat-');
  const config = { ...DEFAULT_TRAIN_CONFIG, model: 'lenet', quant: 'w8a8', batch: 16, steps: 8, bnFreezeStep: 4, observerFreezeStep: 6, calibBatches: 1 };
  const dirA = tmp();
  await train(config, dirA, { stopAtStep: 6 });
  const at6 = loadCheckpoint(path.join(dirA, 'checkpoint.qat'));
  const resumed = await train(config, dirA, { resume: true });
  const at8 = loadCheckpoint(path.join(dirA, 'checkpoint.qat'));
  const obs = at8.model.observerStats!;
  for (const name of obs) assert.deepEqual(Array.from(at8.model.graph.initializers.get(name)!.data as Float32Array), Array.from(at6.model.graph.initializers.get(name)!.data as Float32Array), `${name} moved after freeze`);
  for (const name of at8.model.runningStats) assert.deepEqual(Array.from(at8.model.graph.initializers.get(name)!.data as Float32Array), Array.from(at6.model.graph.initializers.get(name)!.data as Float32Array), `${name} moved after BN freeze`);
  const dirB = tmp();
  const straight = await train(config, dirB);
  assert.deepEqual(resumed.losses, straight.losses.slice(6));
  assert.equal(at8.model.observerStats!.length, 8);
  // Before the freeze the observers moved: a run stopped at step 2 has other ranges than at step 6.
  const dirC = tmp();
  await train(config, dirC, { stopAtStep: 2 });
  const at2 = loadCheckpoint(path.join(dirC, 'checkpoint.qat'));
  const moved = obs.filter((name) => (at2.model.graph.initializers.get(name)!.data as Float32Array)[0] !== (at6.model.graph.initializers.get(name)!.data as Float32Array)[0]);
  assert.ok(moved.length >= 3, `observers that moved between steps 2 and 6: ${moved}`);
});

const methodCases: [string, Record<string, unknown>][] = [
  ['LSQ+ activations (learned zero point)', { preset: 'w4a4', activation: { method: 'lsq+', symmetric: false } }],
  ['PACT activations', { preset: 'w4a4', activation: { method: 'pact' } }],
  ['dynamic per-token absmax activations (BitLinear)', { preset: 'ternary', activation: { method: 'absmax', granularity: 'per-token' } }],
  ['per-group LSQ weights (group 32)', { preset: 'w4a8', weight: { granularity: 'per-group', groupSize: 32 } }],
  ['per-group min/max weights (group 16)', { preset: 'w4a8', weight: { method: 'minmax', granularity: 'per-group', groupSize: 16 } }],
  ['per-tensor min/max weights', { preset: 'w8a8', weight: { granularity: 'per-tensor' } }],
];
for (const [name, raw] of methodCases) {
  test(`QAT trains with ${name}`, async () => {
    const config = parseQuantConfig(raw, 'test');
    const r = await train({ ...DEFAULT_TRAIN_CONFIG, model: 'mlp', quant: 'custom', quantConfig: config, steps: 4, batch: 16, calibBatches: 1 }, scratchDir('qatkit-m-'));
    assert.ok(r.losses.every(Number.isFinite), `losses ${r.losses}`);
    assert.ok(r.test_accuracy > 0.1);
  });
}

test('per-group scales: one per group along the reduction axis and per output row', async () => {
  const config = parseQuantConfig({ preset: 'w4a8', firstLastBits: null, weight: { granularity: 'per-group', groupSize: 32 } }, 'test');
  const m = lenetWithBn();
  const q = await prepareQat(m, config, calib, 'custom', 1);
  const fc0 = q.quant!.quantizers.find((z) => z.role === 'weight' && z.layers[0] === 'fc0')!;
  assert.deepEqual(q.graph.initializers.get(fc0.learned[0])!.dims, [128, 3136 / 32]);
  assert.deepEqual(q.graph.typeOf(fc0.scale!).shape, [128, 3136 / 32], 'the quantizer uses |s| of the learned step size');
});

test('learned step sizes act through |s|: a step size pushed below zero quantizes as its magnitude', async () => {
  const q = await prepareQat(lenetWithBn(), presetConfig('w4a4'), calib, 'w4a4', 1);
  const fc0 = q.quant!.quantizers.find((z) => z.role === 'weight' && z.layers[0] === 'fc0')!;
  const raw = fc0.learned[0];
  const flipped = q.graph.clone();
  const t = q.graph.initializers.get(raw)!;
  flipped.initializers.set(raw, new Tensor(t.dtype, t.dims, (t.data as Float32Array).map((v, i) => (i % 3 === 0 ? -v : v))));
  const run = async (g: typeof q.graph) => {
    const s = await Session.create(g, { threads: 1 });
    const out = await s.run({ [q.input]: new ort.Tensor('float32', images.slice(0, 4 * 784), [4, 1, 28, 28]) });
    await s.release();
    return Array.from(out[q.output].data as Float32Array);
  };
  assert.deepEqual(await run(flipped), await run(q.graph));
});
