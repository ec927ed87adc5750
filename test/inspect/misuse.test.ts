/**
 * Misuse gets a one-line refusal naming the run and what to pass instead, never a silent wrong answer:
 * `qat sensitivity --from` a run that is already quantized (QAT or PTQ) or a language-model run, and an LM
 * export in a format its quantizers cannot take (the refusal names the format that can).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import '../../src/ops';
import '../../src/quant';
import { train, TrainConfig } from '../../src/train/run';
import { quantizeRun } from '../../src/train/ptq-run';
import { runCorpusCase } from '../helpers/run-qat';
import { loadRun } from '../../src/train/run';
import { modelReport } from '../../src/inspect/inspect-model';
import { fp32Run, PER_GROUP_CONFIG, qatRun, tmpDir, tinyLanguageModelConfig } from './helpers';

const LM: TrainConfig = tinyLanguageModelConfig(2);
let dir = '';
const runs: Record<string, string> = {};

before(async () => {
  dir = tmpDir('misuse');
  runs.fp32 = await fp32Run(dir);
  runs.qat = await qatRun(runs.fp32, dir, 'qat', 'w4a4');
  // Trains (BitLinear-style absmax inputs are dynamic) but no image export format stores a dynamic scale.
  runs.absmax = await qatRun(runs.fp32, dir, 'absmax', { ...PER_GROUP_CONFIG, weight: { bits: 4, method: 'lsq', granularity: 'per-channel' }, activation: { bits: 8, method: 'absmax', granularity: 'per-tensor' } });
  runs.ptq = path.join(dir, 'ptq');
  await quantizeRun({ from: runs.fp32, quant: 'w4a4', calib: 'minmax', calibBatches: 1, threads: 1 }, runs.ptq);
  runs.lm = path.join(dir, 'lm');
  await train(LM, runs.lm);
  runs.lmW4 = path.join(dir, 'lm-w4');
  await train({ ...LM, model: undefined as unknown as string, from: runs.lm, quant: 'w4a16-g32' }, runs.lmW4);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const oneLine = (stderr: string) => {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.doesNotMatch(stderr, /\bat .*\.ts:\d+/, 'no stack trace');
  return lines[0];
};

test('qat sensitivity --from a QAT run: refused, naming the run and its fp32 source; nothing written beside it', async () => {
  const r = await runCorpusCase(['sensitivity', '--from', runs.qat, '--limit', '10']);
  assert.equal(r.code, 1);
  const line = oneLine(r.stderr);
  assert.ok(line.includes(runs.qat) && line.includes('already quantized') && line.includes(`--from ${path.resolve(runs.fp32)}`), line);
  assert.ok(!fs.existsSync(path.join(runs.qat, 'sensitivity.json')));
});

test('qat sensitivity --from a PTQ run (qat quantize): refused the same way', async () => {
  const r = await runCorpusCase(['sensitivity', '--from', runs.ptq, '--limit', '10']);
  assert.equal(r.code, 1);
  const line = oneLine(r.stderr);
  assert.match(line, /already quantized \(ptq w4a4\)/);
  assert.ok(line.includes(`--from ${runs.fp32}`), line);
});

test('qat sensitivity --from a language-model run: refused (it measures image classifiers)', async () => {
  const r = await runCorpusCase(['sensitivity', '--from', runs.lm, '--limit', '10']);
  assert.equal(r.code, 1);
  assert.match(oneLine(r.stderr), /language-model run/);
});

test('qat export --format qdq of a weight-only LM run: refused, naming the format that takes it; no file written', async () => {
  const out = path.join(dir, 'w4-qdq.onnx');
  const r = await runCorpusCase(['export', '--from', runs.lmW4, '--format', 'qdq', '--out', out]);
  assert.equal(r.code, 1);
  assert.match(oneLine(r.stderr), /--format matmulnbits/);
  assert.ok(!fs.existsSync(out));
});

test('qat export of an image run with dynamic (absmax) activations: refused in one line naming the formats and what to retrain with', async () => {
  for (const format of ['qdq', 'int4']) {
    const out = path.join(dir, `absmax-${format}.onnx`);
    const r = await runCorpusCase(['export', '--from', runs.absmax, '--format', format, '--out', out]);
    assert.equal(r.code, 1, r.stdout);
    const line = oneLine(r.stderr);
    assert.match(line, /method 'absmax', which has no static scale; none of the image export formats \(qdq, int4, packed\) takes it/);
    assert.match(line, /activation\.method minmax, lsq, lsq\+ or pact/);
    assert.ok(!fs.existsSync(out));
  }
  // The layer table qat train prints says so before training: every layer with a dynamic input scale.
  const rows = modelReport(loadRun(runs.absmax).model).layers.filter((l) => l.activation?.method === 'absmax');
  assert.ok(rows.length > 0);
  for (const l of rows) assert.match(l.note ?? '', /no image export format \(qdq, int4, packed\) takes it/, l.name);
});
