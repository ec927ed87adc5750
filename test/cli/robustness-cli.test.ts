import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const env = { ...process.env, CI: '1' };
const bin = path.join(root, 'bin/qat.mjs');
const qat = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', env });
const tiny = path.join(root, 'test/fixtures/malformed/onnx/base-valid.onnx');
const tmp = () => scratchDir('qatkit-robust-cli-');

test('the qat process exits 2 on a usage error and 1 on a refused input, with one line on stderr and no stack trace', () => {
  const usage = qat('train', '--steps', '1e3');
  assert.equal(usage.status, 2);
  assert.equal(usage.stderr.trim().split('\n').length, 1);
  assert.match(usage.stderr, /^qat: .*--steps must be a decimal integer >= 1, got '1e3'/);
  const nan = path.join(root, 'test/fixtures/malformed/onnx/nan-weight.onnx');
  const refused = qat('eval', '--model', nan, '--limit', '8');
  assert.equal(refused.status, 1);
  assert.equal(refused.stderr.trim().split('\n').length, 1);
  assert.match(refused.stderr, /nan-weight\.onnx: initializer 'fc0\.weight' holds NaN at index 17/);
  assert.doesNotMatch(refused.stderr, /\n\s+at /);
});

test('a node name with escape sequences reaches the terminal escaped', () => {
  const r = qat('eval', '--model', path.join(root, 'test/fixtures/malformed/onnx/escape-sequence-name.onnx'), '--limit', '8');
  assert.equal(r.status, 1);
  assert.ok(!r.stderr.includes('\u001b') && !r.stderr.includes('\u0007'), JSON.stringify(r.stderr));
  assert.match(r.stderr, /node '\\e\[2J\\e\[1;1Hqat: training complete; \\x07' \(Conv\)/);
  assert.equal(r.stderr.trim().split('\n').length, 1, 'the name cannot fake a second line');
});

test('--dry-run checks every input and writes nothing', () => {
  const dir = path.join(tmp(), 'run');
  const r = qat('train', '--model', tiny, '--steps', '5', '--batch', '16', '--out', dir, '--dry-run');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^dry run: classification run .* would train steps 1\.\.5 into .*; every input checked, nothing written/);
  assert.equal(fs.existsSync(dir), false);
});

test('SIGTERM stops training with a checkpoint and exit code 143 naming the run; the resumed run reports accuracy of its own batch', async () => {
  const dir = path.join(tmp(), 'run');
  const child = spawn(process.execPath, [bin, 'train', '--model', tiny, '--steps', '3000', '--batch', '512', '--checkpoint-every', '20', '--out', dir], { cwd: root, env });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const t0 = Date.now();
  while (!fs.existsSync(path.join(dir, 'checkpoint.qat'))) {
    if (Date.now() - t0 > 60000) throw new Error('no checkpoint after 60 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGTERM');
  assert.equal(await exited, 143);
  assert.match(stderr, /SIGTERM: stopping after this step to write a checkpoint/);
  assert.match(stderr, new RegExp(`qat: training interrupted at step \\d+ of 3000; checkpoint saved in ${dir.replace(/[/.]/g, '\\$&')}/checkpoint\\.qat: continue with qat train --out .* --resume`));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['checkpoint.qat'], 'lock released, no temp file');
  // The resumed run divides the correct count by its batch (512), not by the command line's default (128: accuracies up to 4 before issue 14).
  const resumed = qat('train', '--out', dir, '--resume', '--steps', String(Number(/at step (\d+)/.exec(stderr)![1]) + 40));
  assert.equal(resumed.status, 0, resumed.stderr);
  const accuracies = [...resumed.stderr.matchAll(/ acc ([0-9.]+)/g)].map((m) => Number(m[1]));
  assert.ok(accuracies.length > 0 && accuracies.every((a) => a >= 0 && a <= 1), resumed.stderr);
});
