import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { scratchDir } from '../helpers/scratch.js';

const tmp = () => scratchDir('qatkit-train-');
const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'mlp', steps: 6, batch: 32, threads: 2, schedule: 'cosine', warmupSteps: 2 };

test('the same seed and thread count give identical losses', async () => {
  const a = await train(base, tmp());
  const b = await train(base, tmp());
  assert.equal(a.losses.length, 6);
  assert.deepEqual(a.losses, b.losses);
});

test('a different seed gives different losses', async () => {
  const a = await train(base, tmp());
  const b = await train({ ...base, seed: 1 }, tmp());
  assert.notDeepEqual(a.losses, b.losses);
});

test('resuming from a checkpoint continues with losses identical to an uninterrupted run (adamw, lenet with BN)', async () => {
  const config: TrainConfig = { ...base, model: 'lenet', batch: 16, steps: 6 };
  const straight = await train(config, tmp());
  const dir = tmp();
  const first = await train(config, dir, { stopAtStep: 3 });
  const resumed = await train(config, dir, { resume: true });
  assert.deepEqual([...first.losses, ...resumed.losses], straight.losses);
  assert.equal(loadCheckpoint(path.join(dir, 'checkpoint.qat')).step, 6);
});

test('resuming with SGD momentum state is exact too', async () => {
  const config: TrainConfig = { ...base, optimizer: 'sgd', lr: 0.05, steps: 5 };
  const straight = await train(config, tmp());
  const dir = tmp();
  const first = await train(config, dir, { stopAtStep: 2 });
  const resumed = await train(config, dir, { resume: true });
  assert.deepEqual([...first.losses, ...resumed.losses], straight.losses);
});

test('a run writes checkpoint.qat, model.onnx and metrics.json; the checkpoint holds params, optimizer state, step, rng and config', async () => {
  const dir = tmp();
  const r = await train({ ...base, steps: 4 }, dir);
  for (const f of ['checkpoint.qat', 'model.onnx', 'metrics.json']) assert.ok(fs.existsSync(path.join(dir, f)), f);
  const ckpt = loadCheckpoint(path.join(dir, 'checkpoint.qat'));
  assert.equal(ckpt.step, 4);
  assert.deepEqual(ckpt.rng, { seed: 0, step: 4 });
  assert.equal((ckpt.config as any).model, 'mlp');
  assert.equal(ckpt.optimizerState.size, 2 * ckpt.model.params.length);
  const metrics = JSON.parse(fs.readFileSync(path.join(dir, 'metrics.json'), 'utf8'));
  for (const k of ['model', 'data', 'epochs', 'steps', 'batch', 'seed', 'threads', 'test_accuracy', 'train_loss_last', 'ms_per_step_median', 'peak_rss_mb']) assert.ok(k in metrics, k);
  assert.ok(r.test_accuracy > 0.3 && r.test_accuracy <= 1, `accuracy ${r.test_accuracy}`);
  assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')).length, 0);
});

test('a diverging run stops with the step number, names the last good checkpoint and keeps it', async () => {
  const dir = tmp();
  await assert.rejects(
    train({ ...base, optimizer: 'sgd', lr: 1e30, steps: 6, schedule: 'constant', checkpointEvery: 1 }, dir),
    (e: Error) => /loss became (NaN|Infinity|-Infinity) at step \d+/.test(e.message) && /Last good checkpoint: .*checkpoint\.qat/.test(e.message),
  );
  assert.ok(loadCheckpoint(path.join(dir, 'checkpoint.qat')).step >= 1);
});

test('--resume without a checkpoint is refused with the path', async () => {
  const dir = tmp();
  await assert.rejects(train(base, dir, { resume: true }), /no checkpoint at .*checkpoint\.qat/);
});

test('distillation: a student identical to its teacher has zero KL; the loss mixes CE and KL by the weight', async () => {
  const teacherDir = tmp();
  await train({ ...base, steps: 3 }, teacherDir);
  const pure = await train({ ...base, steps: 1, from: teacherDir, distill: { weight: 1, temperature: 2 } }, tmp());
  assert.ok(Math.abs(pure.losses[0]) < 1e-6, `KL of identical models: ${pure.losses[0]}`);
  const none = await train({ ...base, steps: 1, from: teacherDir, distill: { weight: 0, temperature: 2 } }, tmp());
  const plain = await train({ ...base, steps: 1, from: teacherDir }, tmp());
  assert.ok(Math.abs(none.losses[0] - plain.losses[0]) < 1e-6);
});
