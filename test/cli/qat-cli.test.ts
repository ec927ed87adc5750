import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
const dir = scratchDir('qatkit-qatcli-');
const fp32 = path.join(dir, 'fp32');

test('qat train --from RUN --quant w4a4 --distill writes quant, method, test_accuracy and fp32_accuracy', () => {
  const a = qat('train', '--model', 'mlp', '--steps', '30', '--batch', '64', '--out', fp32);
  assert.equal(a.status, 0, a.stderr);
  const json = path.join(dir, 'qat.json');
  const r = qat('train', '--from', fp32, '--quant', 'w4a4', '--distill', '--steps', '10', '--batch', '64', '--lr', '2e-4', '--out', path.join(dir, 'qat'), '--json', json);
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.equal(m.quant, 'w4a4');
  assert.equal(m.method, 'qat');
  for (const k of ['test_accuracy', 'fp32_accuracy']) assert.ok(m[k] > 0.3 && m[k] <= 1, `${k} = ${m[k]}`);
  assert.ok(m.oscillating_fraction && typeof m.oscillating_fraction === 'object');
});

test('qat train refuses --distill without --from, an unknown preset, and a malformed --quant-config', () => {
  assert.match(qat('train', '--model', 'mlp', '--quant', 'w8a8', '--distill', '--steps', '1').stderr, /--distill needs --from RUN_DIR/);
  assert.match(qat('train', '--quant', 'w5a5').stderr, /--quant must be one of w8a8, w4a8, w4a4, w3a3, w2a2, w2a8, ternary, binary, w4a16-g32, w4a8-g32, w3a16-g32, w2a16-g32, b158, got 'w5a5'/);
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ activation: { granularity: 'per-row' } }));
  assert.match(qat('train', '--model', 'mlp', '--quant-config', bad, '--steps', '1').stderr, /bad\.json: activation\.granularity: must be one of per-tensor, per-channel, per-group, per-token, got "per-row"/);
});

test('qat sensitivity prints per-layer drops and writes a mixed-precision suggestion', () => {
  const suggest = path.join(dir, 'suggest.json');
  const r = qat('sensitivity', '--from', fp32, '--bits', '2', '--limit', '500', '--suggest', suggest);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /fc1 .*drop/);
  const s = JSON.parse(fs.readFileSync(suggest, 'utf8'));
  assert.equal(s.preset, 'w2a2');
  assert.ok(Array.isArray(s.overrides));
});
