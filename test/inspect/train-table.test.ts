/**
 * `qat train --quant` prints the compact layer table (src/inspect/format-table.ts) before training starts, for
 * image and language-model runs, in --dry-run too; fp32 runs print none. The dry run's table comes from the
 * quantization plan alone, the real run's from the prepared model: both must print the same rows.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
let dir = '';

before(() => {
  dir = scratchDir('qatkit-train-table-');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The table's lines in stdout: from its header ('layer  op ...') to the first line that is not a row. */
function tableOf(stdout: string): { summary: string; header: string; rows: Map<string, string> } {
  const lines = stdout.split('\n');
  const at = lines.findIndex((l) => /^layer\s+op\s+params\s+weight\s+input/.test(l));
  assert.ok(at > 0, `no layer table in:\n${stdout}`);
  const rows = new Map<string, string>();
  for (const l of lines.slice(at + 1)) {
    const m = /^(\S+)\s+(Conv|Gemm|MatMul|Gather)\s/.exec(l);
    if (!m) break;
    rows.set(m[1], l);
  }
  return { summary: lines[at - 1], header: lines[at], rows };
}

test('image QAT: --dry-run prints the table (first/last layers at 8 bits with the reason, an override named); the run prints the same table; fp32 prints none', () => {
  // (A real fp32 run printing none is checked on the language model below.)
  const r = qat('train', '--model', 'lenet', '--data', 'mnist', '--steps', '2', '--dry-run', '--out', path.join(dir, 'fp32-dry'));
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /^layer\s+op/m, 'an fp32 dry run prints no layer table');

  const config = path.join(dir, 'cfg.json');
  fs.writeFileSync(config, JSON.stringify({ preset: 'w4a4', weight: { bits: 4, method: 'lsq', granularity: 'per-channel' }, activation: { bits: 4, method: 'lsq' }, firstLastBits: 8, foldBatchNorm: true, observerMomentum: 0.01, overrides: [{ match: 'fc0', weight: { bits: 2 } }] }));
  const out = path.join(dir, 'qat');
  // QAT from scratch (no --from: no fp32 evaluation first), 2 steps, one calibration batch.
  const qatArgs = ['train', '--model', 'lenet', '--data', 'mnist', '--quant-config', config, '--steps', '2', '--batch', '16', '--calib-batches', '1', '--threads', '1', '--out', out];
  const dry = qat(...qatArgs, '--dry-run');
  assert.equal(dry.status, 0, dry.stderr);
  assert.ok(!fs.existsSync(out), 'a dry run writes nothing');
  const planned = tableOf(dry.stdout);
  assert.deepEqual([...planned.rows.keys()], ['conv0', 'conv1', 'fc0', 'fc1']);
  assert.match(planned.rows.get('conv0')!, /8b minmax channel .*first layer: kept at 8 bits \(firstLastBits\)/);
  assert.match(planned.rows.get('fc1')!, /8b minmax channel .*last layer: kept at 8 bits \(firstLastBits\)/);
  assert.match(planned.rows.get('conv1')!, /4b lsq channel learned\s+4b lsq tensor/);
  assert.doesNotMatch(planned.rows.get('conv1')!, /first|last|override/);
  assert.match(planned.rows.get('fc0')!, /2b lsq channel .*override 'fc0'/);
  assert.match(planned.summary, /weights 4b, inputs 4b, first\/last layers 8b/);

  const run = qat(...qatArgs);
  assert.equal(run.status, 0, run.stderr);
  const trained = tableOf(run.stdout);
  assert.deepEqual(trained, planned, 'the run prints the table its dry run printed');
  // Before training: the table comes ahead of the result line.
  assert.ok(run.stdout.indexOf(trained.header) < run.stdout.indexOf('test accuracy'), run.stdout);
});

test('language-model QAT: the table (embedding, attention and MLP MatMuls, tied head) in --dry-run and before training; fp32 LM runs print none', () => {
  const fp32 = path.join(dir, 'lm-fp32');
  const tiny = ['--layers', '1', '--heads', '2', '--dim', '32', '--context', '16', '--batch', '4', '--eval-every', '0', '--threads', '1'];
  let r = qat('train', '--model', 'gpt', '--data', 'moby-dick', '--steps', '2', ...tiny, '--out', fp32);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /^layer\s+op/m);
  const out = path.join(dir, 'lm-qat');
  const qatArgs = ['train', '--from', fp32, '--quant', 'w4a8-g32', '--steps', '2', '--batch', '4', '--eval-every', '0', '--threads', '1', '--out', out];
  const dry = qat(...qatArgs, '--dry-run');
  assert.equal(dry.status, 0, dry.stderr);
  assert.ok(!fs.existsSync(out));
  const planned = tableOf(dry.stdout);
  const ops = [...planned.rows.values()].map((l) => l.split(/\s+/)[1]);
  assert.ok(ops.includes('Gather') && ops.filter((o) => o === 'MatMul').length >= 5, dry.stdout);
  const matmuls = [...planned.rows.values()].filter((l) => / MatMul /.test(l));
  for (const l of matmuls) assert.match(l, /4b lsq group32 /, l);
  assert.ok(matmuls.some((l) => /8b absmax token/.test(l)), dry.stdout);
  r = qat(...qatArgs);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(tableOf(r.stdout), planned);
  assert.ok(r.stdout.indexOf(planned.header) < r.stdout.indexOf('val_loss'), r.stdout);
});
