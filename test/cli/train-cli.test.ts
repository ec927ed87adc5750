import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });

test('qat train --steps writes the JSON metrics the issue lists, accuracy as a fraction', () => {
  const dir = scratchDir('qatkit-cli-');
  const json = path.join(dir, 'm.json');
  const r = qat('train', '--model', 'mlp', '--data', 'mnist', '--steps', '20', '--batch', '64', '--out', path.join(dir, 'run'), '--json', json);
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(fs.readFileSync(json, 'utf8'));
  for (const k of ['model', 'data', 'epochs', 'steps', 'batch', 'seed', 'threads', 'test_accuracy', 'train_loss_last', 'ms_per_step_median', 'peak_rss_mb']) assert.ok(k in m, `missing ${k}`);
  assert.equal(m.steps, 20);
  assert.ok(m.test_accuracy > 0.5 && m.test_accuracy <= 1);
  assert.match(r.stdout, /test accuracy/);
});

test('a wrong flag value names the flag and the valid choices', () => {
  const bad = qat('train', '--data', 'cifar');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--data must be one of mnist, fashion-mnist, moby-dick, sotu or a path ending in \.txt, got 'cifar'/);
  const opt = qat('train', '--optimizer', 'rmsprop');
  assert.match(opt.stderr, /--optimizer must be one of adamw, adam, sgd/);
  const model = qat('train', '--model', 'vgg', '--steps', '1');
  assert.notEqual(model.status, 0);
  assert.match(model.stderr, /unknown model 'vgg'; choose one of mlp, lenet, resnet8, mobilenet/);
  const steps = qat('train', '--steps', 'x');
  assert.match(steps.stderr, /--steps must be a decimal integer >= 1, got 'x'/);
});

test('qat train --resume keeps the saved run length unless --epochs/--steps are given again', () => {
  const dir = scratchDir('qatkit-cli-');
  const run = path.join(dir, 'run');
  assert.equal(qat('train', '--model', 'mlp', '--steps', '6', '--batch', '32', '--out', run).status, 0);
  const json = path.join(dir, 'r.json');
  const r = qat('train', '--out', run, '--resume', '--json', json);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(fs.readFileSync(json, 'utf8')).steps, 6);
  const more = qat('train', '--out', run, '--resume', '--steps', '8', '--json', json);
  assert.equal(more.status, 0, more.stderr);
  assert.equal(JSON.parse(fs.readFileSync(json, 'utf8')).steps, 8);
});
