import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig, TrainingInterruptedError } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tmp = () => scratchDir('qatkit-rundir-');
const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'mlp', steps: 4, batch: 32, threads: 2, checkpointEvery: 0 };

/** Name -> SHA-256 of every file in a directory. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(fs.readdirSync(dir).sort().map((f) => [f, createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex')]));
}

/** A pid no process has (a child that already exited). */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}

test('a new run into a directory that holds a run is refused and leaves that run as it was', async () => {
  const dir = tmp();
  await train({ ...base, steps: 2 }, dir);
  const before = snapshot(dir);
  await assert.rejects(train(base, dir), /--out .*: already holds a run \(checkpoint\.qat\); continue it with --resume, or choose a new directory \(nothing was written\)/);
  assert.deepEqual(snapshot(dir), before);
});

test('a run that fails before its first checkpoint removes the directory it created', async () => {
  const dir = path.join(tmp(), 'new-run');
  await assert.rejects(train({ ...base, optimizer: 'sgd', lr: 1e30, schedule: 'constant' }, dir), /loss became .* No checkpoint was written yet.*nothing was kept/);
  assert.equal(fs.existsSync(dir), false);
});

test('a run that fails before its first checkpoint in an empty directory leaves it empty', async () => {
  const dir = tmp();
  await assert.rejects(train({ ...base, optimizer: 'sgd', lr: 1e30, schedule: 'constant' }, dir), /loss became/);
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('a model whose input does not fit the data is refused before anything is written', async () => {
  const dir = path.join(tmp(), 'run');
  await assert.rejects(train({ ...base, model: path.join(root, 'test/fixtures/torch_mlp_opset13.onnx') }, dir), /input '.*' has shape \[N, 6\]; mnist gives images \[N, 1, 28, 28\]/);
  assert.equal(fs.existsSync(dir), false);
});

test('--out equal to --from is refused: a QAT run cannot overwrite the fp32 run it starts from', async () => {
  const dir = tmp();
  await train({ ...base, steps: 2 }, dir);
  const before = snapshot(dir);
  await assert.rejects(train({ ...base, quant: 'w8a8', from: dir }, dir), /--from .* is the run directory itself/);
  await assert.rejects(train({ ...base, quant: 'w8a8', from: path.join(dir, '.') }, path.join(dir, '..', path.basename(dir))), /is the run directory itself/);
  assert.deepEqual(snapshot(dir), before);
});

test('resuming a finished run changes nothing and returns its metrics', async () => {
  const dir = tmp();
  const first = await train(base, dir);
  const before = snapshot(dir);
  const again = await train(base, dir, { resume: true });
  assert.deepEqual(snapshot(dir), before);
  assert.equal(again.steps, 4);
  assert.equal(again.test_accuracy, first.test_accuracy);
  assert.equal(again.train_loss_last, first.train_loss_last);
});

test('temp files of an interrupted checkpoint write are removed when the run is opened again', async () => {
  const dir = tmp();
  await train({ ...base, steps: 2 }, dir);
  const stray = path.join(dir, `.checkpoint.qat.${deadPid()}.1700000000000000.tmp`);
  fs.writeFileSync(stray, 'half a checkpoint');
  await train({ ...base, steps: 3 }, dir, { resume: true });
  assert.equal(fs.existsSync(stray), false);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['checkpoint.qat', 'metrics.json', 'model.onnx']);
});

test('a second writer is refused while the lock holder lives; a stale lock (dead pid) is taken over', async () => {
  const dir = tmp();
  await train({ ...base, steps: 2 }, dir);
  fs.writeFileSync(path.join(dir, '.qat.lock'), `${process.pid}\n`);
  await assert.rejects(train({ ...base, steps: 3 }, dir, { resume: true }), new RegExp(`in use by process ${process.pid} \\(this process\\) \\(lock file .*\\.qat\\.lock\\)`));
  fs.writeFileSync(path.join(dir, '.qat.lock'), `${deadPid()}\n`);
  const r = await train({ ...base, steps: 3 }, dir, { resume: true });
  assert.equal(r.steps, 3);
  assert.equal(fs.existsSync(path.join(dir, '.qat.lock')), false, 'the lock is released at the end');
});

test('two runs writing the same directory at once: the second is refused', async () => {
  const dir = path.join(tmp(), 'run');
  const [a, b] = await Promise.allSettled([train(base, dir), train(base, dir)]);
  const refused = [a, b].filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  assert.equal(refused.length, 1);
  assert.match(String(refused[0].reason.message), /in use by process|already holds a run/);
  assert.equal(loadCheckpoint(path.join(dir, 'checkpoint.qat')).step, 4);
});

test('--checkpoint-every N writes a checkpoint every N steps besides epoch ends', async () => {
  const dir = tmp();
  const seen: number[] = [];
  await train({ ...base, steps: 5, checkpointEvery: 2 }, dir, {
    hooks: { onStep: (s) => seen.push(fs.existsSync(path.join(dir, 'checkpoint.qat')) ? loadCheckpoint(path.join(dir, 'checkpoint.qat')).step : 0) },
  });
  // Read at the start of each next step's hook: the checkpoint of step 2 is there from step 3 on.
  assert.deepEqual(seen, [0, 0, 2, 2, 4]);
});

test('an abort (SIGINT/SIGTERM in the CLI) stops with a checkpoint; --resume then ends as an uninterrupted run', async () => {
  const straight = await train({ ...base, steps: 6 }, tmp());
  const dir = tmp();
  const controller = new AbortController();
  await assert.rejects(
    train({ ...base, steps: 6 }, dir, { signal: controller.signal, hooks: { onStep: (s) => s.step === 3 && controller.abort() } }),
    (e: Error) => e instanceof TrainingInterruptedError && /interrupted at step 3 of 6; checkpoint saved in .*checkpoint\.qat: continue with qat train --out .* --resume/.test(e.message),
  );
  assert.equal(loadCheckpoint(path.join(dir, 'checkpoint.qat')).step, 3);
  const resumed = await train({ ...base, steps: 6 }, dir, { resume: true });
  assert.deepEqual(resumed.losses, straight.losses.slice(3));
  assert.equal(resumed.test_loss, straight.test_loss);
  assert.equal(resumed.train_loss_last, straight.train_loss_last);
});

test('a QAT run resumes after its fp32 source run moved (the source is needed only to distill), keeping fp32_accuracy', async () => {
  const tiny = path.join(root, 'test/fixtures/malformed/onnx/base-valid.onnx');
  const source = path.join(tmp(), 'fp32');
  await train({ ...base, model: tiny, steps: 2, batch: 16 }, source);
  const dir = tmp();
  const config: TrainConfig = { ...base, steps: 4, batch: 16, from: source, quant: 'w8a8', calibBatches: 1 };
  const first = await train(config, dir, { stopAtStep: 2 });
  fs.renameSync(source, `${source}-moved`);
  const resumed = await train({ ...base, steps: 4 }, dir, { resume: true });
  assert.equal(resumed.steps, 4);
  assert.equal(resumed.fp32_accuracy, first.fp32_accuracy);
});
