import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { tinyModel } from '../helpers/tiny-model';
import { STEP_TIMES_KEY } from '../../src/train/step-times';
import { scratchDir } from '../helpers/scratch.js';

const tmp = () => scratchDir('qatkit-resume-');

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

/** Fields of metrics.json that measure the machine (time, memory) or name the directory, not the training. */
const MACHINE_FIELDS = ['ms_per_step_median', 'tokens_per_second', 'peak_rss_mb', 'run_dir'];

/**
 * metrics.json of the resumed run equals the uninterrupted run's in every other field (losses, accuracies,
 * history, quant health, config, ...), and its step times cover every step of the run: the checkpoint carries one
 * sample per step, so the median is not the last command's alone.
 */
function assertSameMetrics(straight: string, split: string, steps: number): void {
  const read = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'metrics.json'), 'utf8')) as Record<string, unknown>;
  const [a, b] = [read(straight), read(split)];
  for (const k of MACHINE_FIELDS) if (k in a) assert.ok(k in b, `${k} missing after resume`);
  const strip = (m: Record<string, unknown>) => Object.fromEntries(Object.entries(m).filter(([k]) => !MACHINE_FIELDS.includes(k)));
  assert.deepEqual(strip(b), strip(a));
  assert.ok(Number.isFinite(b.ms_per_step_median), 'ms_per_step_median');
  for (const dir of [straight, split]) {
    const times = loadCheckpoint(path.join(dir, 'checkpoint.qat')).metrics?.[STEP_TIMES_KEY] as number[];
    assert.equal(times.length, steps, `${dir}: one step time per step`);
    const sorted = [...times].sort((x, y) => x - y);
    const median = steps % 2 ? sorted[steps >> 1] : (sorted[steps / 2 - 1] + sorted[steps / 2]) / 2;
    assert.equal(read(dir).ms_per_step_median, median, `${dir}: the median of all ${steps} steps`);
  }
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
  assertSameMetrics(straight, split, 6);
});

test('a resumed QAT run across the BN-freeze step is bit-identical too (observer ranges, folded BN statistics)', async () => {
  const config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: tinyModel(), batch: 16, steps: 6, threads: 2, quant: 'w4a4', bnFreezeStep: 3, observerFreezeStep: 5, calibBatches: 1, checkpointEvery: 0 };
  const [straight, split] = [tmp(), tmp()];
  const a = await train(config, straight);
  await train(config, split, { stopAtStep: 2 });
  const b = await train(config, split, { resume: true });
  assertSameState(straight, split);
  assert.equal(b.test_loss, a.test_loss);
  assertSameMetrics(straight, split, 6);
});

test('a resumed language-model run writes the metrics.json of an uninterrupted one (history, validation, step times of all steps)', async () => {
  const config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 16, context: 8, steps: 6, batch: 2, lr: 2e-3, threads: 2, evalEvery: 2, checkpointEvery: 0 };
  const [straight, split] = [tmp(), tmp()];
  await train(config, straight);
  await train(config, split, { stopAtStep: 3 });
  await train(config, split, { resume: true });
  assertSameState(straight, split);
  assertSameMetrics(straight, split, 6);
});
