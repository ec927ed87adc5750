/**
 * `qat inspect` on language-model exports of every format (fp32, int4, matmulnbits, qdq): storage type and bytes
 * per tensor, bytes per tensor kind (weights, scales, zero points, embeddings, norms, other) against closed forms,
 * and the kernel ORT's optimized model runs each layer on (integer or float), with model.json's session config.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import '../../src/ops';
import '../../src/quant';
import { DEFAULT_TRAIN_CONFIG, loadRun, train, TrainConfig } from '../../src/train/run';
import { exportLanguageModelRun } from '../../src/export/export-language-model';
import { LmExportFormat } from '../../src/export/lm-decoder';
import { exactWeightType } from '../../src/export/weight-type';
import { inspectPath } from '../../src/inspect/inspect-path';
import { formatInspectReport } from '../../src/inspect/format-table';
import { inspectJson, INSPECT_SCHEMA } from '../../src/inspect/report-json';
import { InspectReport, LayerRow } from '../../src/inspect/report';
import { TENSOR_KINDS } from '../../src/inspect/tensor-kinds';
import { runCorpusCase } from '../helpers/run-qat';
import { scratchDir } from '../helpers/scratch.js';

const TINY: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 32, context: 16, steps: 4, batch: 4, lr: 3e-3, threads: 1, evalEvery: 0, checkpointEvery: 0, warmupSteps: 1 };
let dir = '';
const runs: Record<string, string> = {};
const files: Record<string, string> = {};
const reports: Record<string, InspectReport> = {};

before(async () => {
  dir = scratchDir('qatkit-inspect-export-');
  runs.fp32 = path.join(dir, 'fp32');
  await train(TINY, runs.fp32);
  for (const preset of ['w4a16-g32', 'w8a8']) {
    runs[preset] = path.join(dir, preset);
    await train({ ...TINY, model: undefined as unknown as string, from: runs.fp32, quant: preset, steps: 2 }, runs[preset]);
  }
  const exports: [string, string, LmExportFormat][] = [['fp32', 'fp32', 'fp32'], ['int4', 'w4a16-g32', 'int4'], ['matmulnbits', 'w4a16-g32', 'matmulnbits'], ['qdq', 'w8a8', 'qdq']];
  for (const [name, run, format] of exports) {
    files[name] = path.join(dir, name, 'model.onnx');
    // Parity is the export's own business (test/export/lm-export.test.ts); a few windows, written regardless.
    await exportLanguageModelRun(loadRun(runs[run]), { from: runs[run], out: files[name], format, threads: 1, noVerify: true, parity: { windows: 4, prompts: 1, newTokens: 2 } });
    reports[name] = await inspectPath(files[name], { threads: 1 });
  }
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const matmuls = (r: InspectReport): LayerRow[] => r.layers.filter((l) => /MatMul/.test(l.op));
const elements = (l: LayerRow) => (l.weight_shape as number[]).reduce((a, b) => a * b, 1);

test('every format: bytes per kind add up to the tensors, each tensor counted once, no file without its kinds', () => {
  for (const [name, r] of Object.entries(reports)) {
    const b = r.bytes_by_kind!;
    assert.deepEqual(Object.keys(b).sort(), [...TENSOR_KINDS, 'total'].sort(), name);
    const sum = TENSOR_KINDS.reduce((s, k) => s + b[k], 0);
    assert.equal(sum, b.total, name);
    assert.equal(r.tensors!.reduce((s, t) => s + t.bytes, 0), b.total, name);
    assert.ok(b.total <= fs.statSync(files[name]).size, `${name}: ${b.total} bytes of tensors in a ${fs.statSync(files[name]).size}-byte file`);
    assert.ok(b.weights > 0 && b.embeddings > 0 && b.norms > 0, `${name}: ${JSON.stringify(b)}`);
  }
  const fp32 = reports.fp32.bytes_by_kind!;
  assert.equal(fp32.scales + fp32.zero_points, 0, 'an fp32 decoder has no scales or zero points');
  // Closed forms: token table [256, 32] and position table [16, 32] in float32; each layer norm gamma+beta [32].
  assert.equal(fp32.embeddings, (256 + 16) * 32 * 4);
  assert.equal(reports.fp32.kind, 'fp32');
  for (const name of ['int4', 'matmulnbits', 'qdq']) assert.equal(reports[name].kind, 'exported', name);
});

test('fp32: every MatMul and Gather on a float kernel, float32 storage of 4 bytes per weight', () => {
  const r = reports.fp32;
  for (const l of r.layers) {
    assert.equal(l.kernel?.integer, false, `${l.name}: ${JSON.stringify(l.kernel)}`);
    assert.equal(l.storage?.dtype, 'float32', l.name);
    if (!l.tied_to && l.op !== 'Gather') assert.equal(l.storage!.weight_bytes, 4 * elements(l), l.name);
  }
});

test('int4: INT4 codes (half a byte each) feeding MatMul, which ORT fuses into MatMulNBits at model.json\'s accuracy level 0', () => {
  const r = reports.int4;
  assert.ok(r.notes.some((n) => /session\.qdq_matmulnbits_accuracy_level=0/.test(n)), r.notes.join('; '));
  for (const l of matmuls(r)) {
    assert.equal(l.storage?.dtype, 'int4', l.name);
    assert.equal(l.storage!.weight_bytes, Math.ceil(elements(l) / 2), l.name);
    assert.deepEqual(l.kernel, { op: 'com.microsoft.MatMulNBits', integer: true, accuracy_level: 0 }, l.name);
    assert.equal(l.weight?.bits, 4, l.name);
    assert.equal(l.weight?.group, 32, l.name);
  }
  // 4-bit codes: an eighth of the fp32 decoder's weight bytes, plus the tied head's own codes (the fp32 head reads
  // the float table, counted as embeddings).
  const head = r.layers.find((l) => l.name === 'lm_head')!;
  assert.equal(head.storage!.weight_bytes, (256 * 32) / 2);
  assert.equal(reports.fp32.bytes_by_kind!.weights, 8 * (r.bytes_by_kind!.weights - head.storage!.weight_bytes));
});

test('matmulnbits: packed uint8 blocks on MatMulNBits (accuracy_level 0), the table on GatherBlockQuantized, both integer kernels', () => {
  const r = reports.matmulnbits;
  for (const l of matmuls(r)) {
    assert.equal(l.op, 'MatMulNBits', l.name);
    assert.equal(l.storage?.dtype, 'uint8', l.name);
    assert.deepEqual(l.kernel, { op: 'com.microsoft.MatMulNBits', integer: true, accuracy_level: 0 }, l.name);
  }
  const table = r.layers.find((l) => l.op === 'GatherBlockQuantized');
  assert.ok(table, r.layers.map((l) => l.op).join());
  assert.equal(table!.kernel?.integer, true);
  const text = formatInspectReport(r);
  assert.match(text.join('\n'), /bytes: weights [\d.]+ KiB, scales [\d.]+ (B|KiB), embeddings/);
  const integer = r.layers.filter((l) => l.kernel?.integer).length;
  assert.ok(text.includes(`ONNX Runtime's optimized model runs ${integer} of ${r.layers.length} layers on integer kernels`), text.join('\n'));
});

test('qdq (w8a8): 8-bit codes (the CPU\'s --weight-type auto) with their zero points on MatMulIntegerToFloat; zero points counted apart from scales', () => {
  const r = reports.qdq;
  for (const l of matmuls(r)) {
    assert.equal(l.op, 'MatMulIntegerToFloat', l.name);
    assert.equal(l.storage?.dtype, exactWeightType().type, l.name);
    assert.equal(l.storage!.weight_bytes, elements(l), l.name);
    assert.equal(l.kernel?.op, 'com.microsoft.MatMulIntegerToFloat', l.name);
    assert.equal(l.kernel?.integer, true, l.name);
    // Read from the node: 8-bit per-channel weight codes, int8 per-token activations quantized at run time.
    assert.equal(l.weight?.bits, 8, l.name);
    assert.equal(l.weight?.granularity, 'per-channel', l.name);
    assert.equal(l.weight?.symmetric, true, l.name);
    assert.deepEqual([l.activation?.bits, l.activation?.granularity, l.activation?.scale_source], [8, 'per-token', 'dynamic'], l.name);
    assert.doesNotMatch(l.name, /MatMulInteger/, 'the readable name is the module, not the rewritten node');
  }
  // The contrib op's shape rule: A [B, T, 32] x B [32, 96] -> [B, T, 96].
  assert.deepEqual(r.layers.find((l) => l.name === 'blocks.0.attn.qkv')!.output_shape, ['B', 'T', 96]);
  const b = r.bytes_by_kind!;
  assert.ok(b.zero_points > 0 && b.scales > 0, JSON.stringify(b));
  for (const t of r.tensors!.filter((x) => x.kind === 'zero_points')) assert.ok(t.dtype === 'uint8' || t.dtype === 'int8', `${t.name}: ${t.dtype}`);
});

test('qat inspect --json: versioned, the same report; the text form through the CLI', async () => {
  const json = JSON.parse(inspectJson(reports.qdq));
  assert.equal(json.schema, INSPECT_SCHEMA);
  assert.equal(json.schema, 'qatkit.inspect/1');
  const cli = await runCorpusCase(['inspect', files.int4, '--json', '--threads', '1']);
  assert.equal(cli.code, 0, cli.stderr);
  const fromCli = JSON.parse(cli.stdout);
  assert.equal(fromCli.schema, INSPECT_SCHEMA);
  assert.deepEqual(fromCli.bytes_by_kind, reports.int4.bytes_by_kind);
  assert.deepEqual(fromCli.layers.map((l: LayerRow) => l.kernel), reports.int4.layers.map((l) => l.kernel));
  const text = await runCorpusCase(['inspect', files.qdq, '--threads', '1']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /zero points \d+ B/);
  assert.match(text.stdout, /MatMulIntegerToFloat integer/);
});
