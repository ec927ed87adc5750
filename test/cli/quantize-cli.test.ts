import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultPtqDir } from '../../src/train/ptq-run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });

let dir: string;
let fromRun: string;
before(async () => {
  dir = scratchDir('qatkit-quantize-cli-');
  fromRun = path.join(dir, 'fp32');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'mlp', steps: 20, batch: 64, threads: 2 }, fromRun);
});

test('qat quantize writes the JSON fields, metrics.json and a step-0 PTQ checkpoint; accuracies are fractions', () => {
  const json = path.join(dir, 'ptq.json');
  const out = path.join(dir, 'ptq');
  const r = qat('quantize', '--from', fromRun, '--quant', 'w8a8', '--calib', 'percentile', '--calib-batches', '1', '--out', out, '--json', json);
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(fs.readFileSync(json, 'utf8'));
  for (const k of ['quant', 'method', 'calib', 'test_accuracy', 'fp32_accuracy', 'data', 'model']) assert.ok(k in m, `missing ${k}`);
  assert.deepEqual([m.quant, m.method, m.calib, m.data, m.model, m.calib_images], ['w8a8', 'ptq', 'percentile', 'mnist', 'mlp', 128]);
  assert.ok(m.fp32_accuracy > 0.5 && m.fp32_accuracy <= 1, `fp32 ${m.fp32_accuracy}`);
  assert.ok(Math.abs(m.test_accuracy - m.fp32_accuracy) < 0.03, `PTQ ${m.test_accuracy} vs fp32 ${m.fp32_accuracy}`);
  assert.match(r.stdout, /test accuracy/);
  const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
  assert.equal(metrics.test_accuracy, m.test_accuracy);
  assert.equal(metrics.config.calib, 'percentile');
  const ckpt = loadCheckpoint(path.join(out, 'checkpoint.qat'));
  assert.equal(ckpt.step, 0);
  assert.deepEqual([ckpt.model.quant?.method, ckpt.model.quant?.preset, ckpt.model.quant?.calib], ['ptq', 'w8a8', 'percentile']);
  assert.equal(ckpt.config.method, 'ptq');
  assert.equal(ckpt.config.data, 'mnist');

  // A quantized run is no PTQ source.
  const again = qat('quantize', '--from', out, '--quant', 'w8a8');
  assert.notEqual(again.status, 0);
  assert.match(again.stderr, /--from: .* is a quantization-aware run \(ptq w8a8\); PTQ needs an fp32 run/);
});

test('a wrong qat quantize flag value names the flag and the valid choices', () => {
  const calib = qat('quantize', '--from', 'x', '--quant', 'w8a8', '--calib', 'entropy');
  assert.notEqual(calib.status, 0);
  assert.match(calib.stderr, /--calib must be one of minmax, percentile, mse, kl, got 'entropy'/);
  const preset = qat('quantize', '--from', 'x', '--quant', 'w5a5');
  assert.match(preset.stderr, /--quant must be one of w8a8, w4a8, w4a4/);
  const missing = qat('quantize', '--from', 'x');
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /--quant is required unless --quant-config is given; valid presets: w8a8/);
  const batches = qat('quantize', '--from', 'x', '--quant', 'w8a8', '--calib-batches', '0');
  assert.match(batches.stderr, /--calib-batches must be a decimal integer >= 1, got '0'/);
});

test('the default output directory is <from>-ptq-<preset>-<calib>', () => {
  assert.equal(defaultPtqDir({ from: 'runs/lenet/', quant: 'w4a4', calib: 'kl' }), path.normalize('runs/lenet-ptq-w4a4-kl'));
});
