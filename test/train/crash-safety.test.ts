/**
 * kill -9 at random moments of a real `qat train` (seeded, so a failure replays): before the first checkpoint,
 * while a checkpoint is being written (the temp file seen on disk), and at random steps, twice in one run. After
 * each kill the last complete checkpoint loads; each --resume cleans the stale lock and temp files; the run that
 * was killed and resumed ends with the final loss, test metrics, parameters and BN statistics of an uninterrupted
 * run (same --threads). The model is the corpus's tiny CNN (conv bias + BN), so checkpoints are small and frequent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { Rng } from '../../src/train/rng';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const model = path.join(root, 'test/fixtures/malformed/onnx/base-valid.onnx');
const trainArgs = ['--model', model, '--steps', '400', '--batch', '64', '--threads', '2', '--checkpoint-every', '1'];
const env = { ...process.env, CI: '1' };
const qatSync = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env });
const TEMP = /^\.checkpoint\.qat\.\d+\.\d+\.tmp$/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `qat train ARGS`, waits for `when` to say so, then SIGKILLs it; returns what the kill interrupted. */
async function killWhen(args: string[], dir: string, when: (dir: string, startedMs: number) => boolean): Promise<{ killed: boolean; tempSeen: boolean }> {
  const child = spawn(process.execPath, [path.join(root, 'bin/qat.mjs'), 'train', ...args], { cwd: root, env, stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const t0 = Date.now();
  let done = false;
  void exited.then(() => (done = true));
  let tempSeen = false;
  while (!done) {
    const names = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    tempSeen = names.some((n) => TEMP.test(n));
    if (when(dir, Date.now() - t0)) {
      // Freeze the run first, so the files checked are the ones the kill interrupts (a checkpoint write seen a
      // moment ago may have finished since); if the moment has passed, let it go on and wait for the next one.
      child.kill('SIGSTOP');
      if (!when(dir, Date.now() - t0)) {
        child.kill('SIGCONT');
        await sleep(0);
        continue;
      }
      tempSeen = fs.existsSync(dir) && fs.readdirSync(dir).some((n) => TEMP.test(n));
      child.kill('SIGKILL');
      await exited;
      return { killed: true, tempSeen };
    }
    if (Date.now() - t0 > 120000) throw new Error('the run did not reach the kill point in 120 s');
    await sleep(0);
  }
  return { killed: false, tempSeen };
}

const checkpointStep = (dir: string) => {
  try {
    return loadCheckpoint(path.join(dir, 'checkpoint.qat')).step;
  } catch {
    return -1;
  }
};

test('kill -9 at random points (before the first checkpoint, mid-checkpoint, mid-run twice): resumed, the run ends as an uninterrupted one', async () => {
  const rng = new Rng(Number(process.env.QATKIT_KILL_SEED ?? 9));
  const work = scratchDir('qatkit-kill-');
  const straight = path.join(work, 'straight');
  assert.equal(qatSync('train', ...trainArgs, '--out', straight).status, 0);

  // 1. Killed before its first checkpoint: a new run into the same directory starts cleanly (stale lock ignored).
  const run = path.join(work, 'run');
  const early = await killWhen([...trainArgs, '--out', run], run, (dir) => fs.existsSync(path.join(dir, '.qat.lock')) && !fs.existsSync(path.join(dir, 'checkpoint.qat')));
  assert.ok(early.killed, 'killed before the first checkpoint');

  // 2. Killed while a checkpoint is being written: the temp file is there, the previous checkpoint still loads.
  const mid = await killWhen([...trainArgs, '--out', run], run, (dir) => checkpointStep(dir) >= 5 && fs.readdirSync(dir).some((n) => TEMP.test(n)));
  assert.ok(mid.killed && mid.tempSeen, 'killed with a checkpoint write in progress');
  const afterMid = checkpointStep(run);
  assert.ok(afterMid >= 5, `the last complete checkpoint loads (step ${afterMid})`);

  // 3. Resumed, then killed again at a random later step.
  const target = afterMid + 20 + rng.int(200);
  const again = await killWhen(['--out', run, '--resume'], run, (dir) => checkpointStep(dir) >= target);
  assert.ok(again.killed, `killed again at step >= ${target}`);
  assert.ok(checkpointStep(run) >= target);

  // 4. Resumed to the end: the stale lock and temp files go, and the result is the uninterrupted run's.
  const finish = qatSync('train', '--out', run, '--resume');
  assert.equal(finish.status, 0, finish.stderr);
  assert.deepEqual(fs.readdirSync(run).sort(), ['checkpoint.qat', 'metrics.json', 'model.onnx']);
  const [a, b] = [path.join(straight, 'metrics.json'), path.join(run, 'metrics.json')].map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
  for (const k of ['steps', 'train_loss_last', 'test_loss', 'test_accuracy']) assert.equal(b[k], a[k], k);
  const [x, y] = [loadCheckpoint(path.join(straight, 'checkpoint.qat')), loadCheckpoint(path.join(run, 'checkpoint.qat'))];
  for (const [name, t] of x.model.graph.initializers) assert.deepEqual(y.model.graph.initializers.get(name)!.data, t.data, name);
  for (const [name, t] of x.optimizerState) assert.deepEqual(y.optimizerState.get(name)!.data, t.data, name);
  fs.rmSync(work, { recursive: true, force: true });
});
