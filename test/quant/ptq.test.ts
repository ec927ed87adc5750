import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadDataset } from '../../src/data';
import { Model } from '../../src/models/model';
import { collectActivationStats } from '../../src/quant/calibrate';
import { createObserver, TensorRange } from '../../src/quant/observers';
import { planQuantization } from '../../src/quant/prepare';
import { presetConfig, QatConfig } from '../../src/quant/presets';
import { calibrateActivationRanges, CALIB_KINDS, ptqConfig, quantizePostTraining } from '../../src/quant/ptq';
import { prepareQat } from '../../src/quant/qat';
import { Session } from '../../src/runtime/session';
import { loadCheckpoint, saveCheckpoint } from '../../src/train/checkpoint';
import { evaluateModel } from '../../src/train/evaluate';
import { DEFAULT_TRAIN_CONFIG, loadRun, train } from '../../src/train/run';
import { buildEvalGraph } from '../../src/train/step-graph';
import { scratchDir } from '../helpers/scratch.js';

const TEST_IMAGES = 1000;
const data = loadDataset('mnist');
/** Two calibration batches of 128 training images: enough for stable ranges, fast. */
const calib = (kind: (typeof CALIB_KINDS)[number]) => ({ kind, images: data.train.images, count: 256, sampleShape: data.train.shape });
const tmp = () => scratchDir('qatkit-ptq-');

// LeNet (two Conv+BN pairs: exercises BN folding) trained in fp32 for 60 steps: ~90% on MNIST.
let fp32: Model;
let fp32Logits: Float32Array;
before(async () => {
  const dir = tmp();
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', steps: 60, batch: 32, threads: 2 }, dir);
  fp32 = loadRun(dir).model;
  fp32Logits = await logits(fp32);
});

async function logits(model: Model): Promise<Float32Array> {
  const session = await Session.create(buildEvalGraph(model), { threads: 2 });
  const per = data.test.shape.reduce((a, b) => a * b, 1);
  try {
    const x = new ort.Tensor('float32', data.test.images.subarray(0, TEST_IMAGES * per), [TEST_IMAGES, ...data.test.shape]);
    return (await session.run({ [model.input]: x }, [model.output]))[model.output].data as Float32Array;
  } finally {
    await session.release();
  }
}

const meanSquaredDiff = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length;
const evaluate = (model: Model) => evaluateModel(model, data.test, { limit: TEST_IMAGES });
const observerRange = (model: Model, tensor: string): TensorRange => {
  const q = model.quant!.quantizers.find((x) => x.tensor === tensor && x.role === 'activation')!;
  const value = (name: string) => model.graph.initializers.get(name)!.toNumbers()[0];
  return { min: value(q.observer!.min), max: value(q.observer!.max) };
};

test('ptqConfig replaces learned scales (lsq, lsq+, pact) by minmax, in overrides too; binary/ternary stay', () => {
  const w4a4: QatConfig = { ...presetConfig('w4a4'), overrides: [{ match: 'fc*', activation: { method: 'pact' }, weight: { bits: 3 } }] };
  const c = ptqConfig(w4a4);
  assert.deepEqual([c.weight.method, c.weight.bits, c.activation.method, c.activation.bits], ['minmax', 4, 'minmax', 4]);
  assert.deepEqual(c.overrides[0], { match: 'fc*', activation: { method: 'minmax' }, weight: { bits: 3 } });
  assert.equal(ptqConfig(presetConfig('binary')).weight.method, 'binary');
  assert.equal(ptqConfig(presetConfig('ternary')).weight.method, 'ternary');
  assert.equal(w4a4.weight.method, 'lsq', 'the input config is not modified');
});

test('(a) PTQ w8a8 minmax keeps accuracy within 2 points of fp32; the model is marked ptq and survives a checkpoint', async () => {
  const model = await quantizePostTraining(fp32, 'w8a8', calib('minmax'));
  const [f, q] = [await evaluate(fp32), await evaluate(model)];
  assert.ok(f.accuracy > 0.8, `fp32 accuracy ${f.accuracy}`);
  assert.ok(Math.abs(q.accuracy - f.accuracy) <= 0.02, `fp32 ${f.accuracy}, PTQ w8a8 ${q.accuracy}`);
  assert.equal(model.quant!.method, 'ptq');
  assert.equal(model.quant!.calib, 'minmax');
  assert.equal(model.quant!.preset, 'w8a8');
  assert.equal(model.quant!.folded.length, 2, 'both Conv+BN pairs of LeNet are folded');
  assert.ok(model.quant!.quantizers.every((x) => x.learned.length === 0), 'no learned scales');
  const file = path.join(tmp(), 'checkpoint.qat');
  saveCheckpoint(file, { model, optimizerState: new Map(), step: 0, rng: { seed: 0, step: 0 }, config: {} });
  const loaded = loadCheckpoint(file).model;
  assert.deepEqual(loaded.quant, model.quant);
  assert.deepEqual((await evaluate(loaded)).predictions, q.predictions);
});

test('BN folding is exact in eval mode: a 16-bit PTQ model predicts as the fp32 model does', async () => {
  const base = presetConfig('w8a8');
  const config: QatConfig = { ...base, firstLastBits: null, weight: { ...base.weight, bits: 16 }, activation: { ...base.activation, bits: 16 } };
  const model = await quantizePostTraining(fp32, config, calib('minmax'));
  assert.equal(model.quant!.preset, 'custom');
  assert.ok(meanSquaredDiff(await logits(model), fp32Logits) < 1e-5);
});

test('(b) every calibration kind runs; percentile, mse and kl ranges lie inside the minmax range, percentile and kl strictly for some tensor', async () => {
  const plan = planQuantization(fp32, ptqConfig(presetConfig('w8a8')));
  const ranges = new Map<string, Map<string, TensorRange>>();
  for (const kind of CALIB_KINDS) ranges.set(kind, (await calibrateActivationRanges(fp32, plan, calib(kind))).ranges);
  const minmax = ranges.get('minmax')!;
  assert.equal(minmax.size, plan.activations.size);
  const stats = await collectActivationStats(plan.graph, fp32.input, [...plan.activations.keys()], data.train.images, 256, data.train.shape);
  for (const [t, r] of minmax) assert.deepEqual(r, { min: stats.get(t)!.min, max: stats.get(t)!.max }, `minmax range of ${t}`);
  const eps = 1e-6;
  for (const kind of ['percentile', 'mse', 'kl']) {
    for (const [t, mm] of minmax) {
      const r = ranges.get(kind)!.get(t)!;
      assert.ok(r.min >= Math.min(mm.min, 0) - eps && r.max <= mm.max + eps && r.max > 0, `${kind} range of ${t}: [${r.min}, ${r.max}] vs minmax [${mm.min}, ${mm.max}]`);
    }
  }
  for (const kind of ['percentile', 'kl']) {
    const narrower = [...minmax].some(([t, mm]) => ranges.get(kind)!.get(t)!.max < mm.max - 1e-3);
    assert.ok(narrower, `${kind} clips some tensor's range`);
  }
  for (const kind of CALIB_KINDS) {
    const model = await quantizePostTraining(fp32, 'w8a8', calib(kind));
    const acc = (await evaluate(model)).accuracy;
    assert.ok(acc > 0.8, `PTQ w8a8 ${kind}: accuracy ${acc}`);
  }
});

test('(c) PTQ at w4a4 strays further from fp32 than at w8a8, and w2a2 loses accuracy', async () => {
  const w8a8 = await quantizePostTraining(fp32, 'w8a8', calib('minmax'));
  const w4a4 = await quantizePostTraining(fp32, 'w4a4', calib('minmax'));
  const w2a2 = await quantizePostTraining(fp32, 'w2a2', calib('minmax'));
  const e8 = meanSquaredDiff(await logits(w8a8), fp32Logits);
  const e4 = meanSquaredDiff(await logits(w4a4), fp32Logits);
  assert.ok(e4 > 4 * e8, `logit MSE vs fp32: w4a4 ${e4}, w8a8 ${e8}`);
  const [a8, a2] = [(await evaluate(w8a8)).accuracy, (await evaluate(w2a2)).accuracy];
  assert.ok(a2 < a8, `accuracy w2a2 ${a2} vs w8a8 ${a8}`);
});

test('(d) activation observers are frozen at the calibration observer ranges (percentile), and evaluation does not move them', async () => {
  const model = await quantizePostTraining(fp32, 'w4a4', calib('percentile'));
  const plan = planQuantization(fp32, ptqConfig(presetConfig('w4a4')));
  const observers = new Map([...plan.activations].map(([t, { spec }]) => [t, createObserver('percentile', { spec })]));
  await collectActivationStats(plan.graph, fp32.input, [...plan.activations.keys()], data.train.images, 256, data.train.shape, {
    batchSize: 128,
    onBatch: (values) => observers.forEach((o, t) => o.observe(values.get(t)!)),
  });
  const activations = model.quant!.quantizers.filter((q) => q.role === 'activation');
  assert.equal(activations.length, observers.size);
  for (const [t, o] of observers) {
    const expected = o.range() as TensorRange;
    const got = observerRange(model, t);
    assert.ok(Math.abs(got.min - expected.min) < 1e-6 && Math.abs(got.max - expected.max) < 1e-6, `${t}: ${JSON.stringify(got)} vs ${JSON.stringify(expected)}`);
  }
  await evaluate(model);
  for (const [t, o] of observers) assert.ok(Math.abs(observerRange(model, t).max - (o.range() as TensorRange).max) < 1e-6);
  const specs = new Set(activations.map((q) => `${q.spec.method}/${q.spec.bits}`));
  assert.ok([...specs].every((s) => s.startsWith('minmax/')), [...specs].join(', '));
});

test('(e) like for like: PTQ and QAT-prepared models quantize the same tensors with the same bits (w4a4, w8a8)', async () => {
  for (const preset of ['w4a4', 'w8a8']) {
    const ptq = await quantizePostTraining(fp32, preset, calib('minmax'));
    const qat = await prepareQat(fp32, presetConfig(preset), calib('minmax'), preset);
    const placement = (m: Model) => m.quant!.quantizers.map((q) => `${q.role} ${q.tensor} ${q.spec.bits} bits -> ${q.layers.join(',')}`).sort();
    assert.deepEqual(placement(ptq), placement(qat), preset);
    assert.deepEqual(ptq.quant!.folded, qat.quant!.folded);
    if (preset === 'w8a8') {
      // No learned scales in the preset: identical specs and the same graph ops, only the observer ranges differ.
      assert.deepEqual(ptq.quant!.quantizers.map((q) => q.spec), qat.quant!.quantizers.map((q) => q.spec));
      const ops = (m: Model) => m.graph.nodes.map((n) => n.opType).sort();
      assert.deepEqual(ops(ptq), ops(qat));
    } else {
      assert.ok(qat.quant!.quantizers.some((q) => q.spec.method === 'lsq'));
      assert.ok(ptq.quant!.quantizers.every((q) => q.spec.method === 'minmax'));
    }
  }
});

test('PTQ refuses a model that is already quantization-aware, and a bad calibration kind names --calib and the choices', async () => {
  const model = await quantizePostTraining(fp32, 'w8a8', calib('minmax'));
  await assert.rejects(quantizePostTraining(model, 'w8a8', calib('minmax')), /already quantization-aware.*PTQ needs the fp32 model/);
  await assert.rejects(quantizePostTraining(fp32, 'w8a8', { ...calib('minmax'), kind: 'entropy' as never }), /--calib: invalid value 'entropy'; valid: minmax, percentile, mse, kl/);
  await assert.rejects(quantizePostTraining(fp32, 'w5a5', calib('minmax')), /--quant: unknown preset 'w5a5'; valid: w8a8/);
});
