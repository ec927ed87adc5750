import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { tinyModel } from '../helpers/tiny-model';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'qatkit-resume-'));

/** Every initializer (parameters, BN running statistics, observer ranges) and optimizer tensor, bit for bit. */
function assertSameState(a: string, b: string): void {
  const [x, y] = [loadCheckpoint(path.join(a, 'checkpoint.qat')), loadCheckpoint(path.join(b, 'checkpoint.qat'))];
  assert.equal(x.step, y.step);
  for (const [name, t] of x.model.graph.initializers) {
    const u = y.model.graph.initializers.get(name);
    assert.ok(u, name);
    assert.deepEqual(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), Buffer.from(u!.data.buffer, u!.data.byteOffset, u!.data.byteLength), `initializer ${name} differs`);
  }
  for (const [name, t] of x.optimizerState) assert.deepEqual(t.data, y.optimizerState.get(name)!.data, `optimizer state ${name} differs`);
}

// A model built in TypeScript (BN momentum 0.9 held as a double) is where the drift of issue 14 came from.
test('a resumed fp32 run ends with the same parameters, Adam state, BN running statistics and test loss as an uninterrupted one', async () => {
  const config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: tinyModel(), batch: 16, steps: 6, threads: 2, checkpointEvery: 0 };
  const [straight, split] = [tmp(), tmp()];
  const a = await train(config, straight);
  await train(config, split, { stopAtStep: 4 });
  const b = await train(config, split, { resume: true });
  assertSameState(straight, split);
  assert.equal(b.test_loss, a.test_loss);
  assert.equal(b.test_accuracy, a.test_accuracy);
  assert.equal(b.train_loss_last, a.train_loss_last);
});

test('a resumed QAT run across the BN-freeze step is bit-identical too (observer ranges, folded BN statistics)', async () => {
  const config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: tinyModel(), batch: 16, steps: 6, threads: 2, quant: 'w4a4', bnFreezeStep: 3, observerFreezeStep: 5, calibBatches: 1, checkpointEvery: 0 };
  const [straight, split] = [tmp(), tmp()];
  const a = await train(config, straight);
  await train(config, split, { stopAtStep: 2 });
  const b = await train(config, split, { resume: true });
  assertSameState(straight, split);
  assert.equal(b.test_loss, a.test_loss);
});
