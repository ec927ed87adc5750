// Imported PyTorch decoders export as integer models of their own graph (src/export/lm-recompute.ts), generating
// by full recompute: test/fixtures/torch_hf_gpt2.onnx (GPT-2's Conv1D Gemms, torch.where mask, tied F.linear head).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import '../../src/ops';
import '../../src/quant';
import { loadRun } from '../../src/train/run';
import { decodeModel } from '../../src/onnx/model-io';
import { exportLanguageModelRun } from '../../src/export/export-language-model';
import { LmExportFormat } from '../../src/export/lm-decoder';
import { DType } from '../../src/ir/dtype';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
const FIXTURE = path.join(root, 'test/fixtures/torch_hf_gpt2.onnx');
const PARITY = { windows: 64, prompts: 8, newTokens: 16 };
let dir = '';
const runs: Record<string, string> = {};

before(() => {
  dir = scratchDir('qatkit-lm-recompute-');
  runs.fp32 = path.join(dir, 'fp32');
  let r = qat('train', '--model', FIXTURE, '--data', 'moby-dick', '--context', '32', '--batch', '8', '--steps', '30', '--eval-every', '0', '--out', runs.fp32);
  assert.equal(r.status, 0, r.stderr);
  for (const preset of ['w4a8-g32', 'w8a8']) {
    runs[preset] = path.join(dir, preset);
    r = qat('train', '--from', runs.fp32, '--quant', preset, '--steps', '6', '--batch', '8', '--eval-every', '0', '--out', runs[preset]);
    assert.equal(r.status, 0, r.stderr);
  }
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

const exportOf = (run: string, format: LmExportFormat) =>
  exportLanguageModelRun(loadRun(runs[run]), { from: runs[run], out: path.join(dir, `${run}-${format}`, 'model.onnx'), format, parity: PARITY });

for (const [run, format, kernel] of [['w4a8-g32', 'int4', 'DequantizeLinear -> MatMul'], ['w4a8-g32', 'matmulnbits', 'MatMulNBits'], ['w8a8', 'qdq', 'MatMulIntegerToFloat']] as const) {
  test(`imported HF GPT-2 ${run} exports as ${format}: every Linear (Conv1D Gemm, tied head) on ${kernel}, no float copy of a weight, equal to the fake-quant model`, async () => {
    const r = await exportOf(run, format);
    assert.equal(r.generation, 'full-recompute');
    assert.equal(r.kv_cache, undefined);
    assert.ok(r.parity.passed, r.parity.failures.join('; '));
    assert.ok(r.parity.perplexity_relative_difference < 1e-4 && r.parity.top1_agreement > 0.999, JSON.stringify(r.parity));
    assert.ok(r.integer_reference?.passed, JSON.stringify(r.integer_reference));
    const linears = r.weights.flatMap((w) => w.kernels).filter((k) => !/Gather/.test(k));
    assert.equal(linears.length, 9, JSON.stringify(r.weights)); // 2 blocks x 4 Conv1D + the tied head
    assert.ok(linears.every((k) => k.startsWith(kernel)), JSON.stringify(linears));
    if (format !== 'qdq') assert.equal(r.fusion?.matmul_nbits, 9, JSON.stringify(r.fusion));
    assert.deepEqual(r.fusion?.float_matmuls ?? [], []);
    // The tied table is one quantized weight read by its Gather and the head.
    const wte = r.weights.find((w) => w.tensor === 'wte.weight')!;
    assert.equal(wte.layers.length, 2);
    const g = decodeModel(fs.readFileSync(r.out));
    const floats = [...g.initializers.values()].filter((t) => t.dtype === DType.FLOAT && t.size >= 32 * 32);
    assert.deepEqual(floats.map((t) => t.dims), [], 'no float matrix left in the file');
    assert.ok(r.size_ratio_vs_fp32 > 1.8, String(r.size_ratio_vs_fp32));
    assert.equal(g.metadata['qatkit.generation'], 'full-recompute');
    // The model's x.size() readers do not keep a float fake-quant alive beside the integer codes: one Round per
    // activation quantizer a float MatMul still reads (int4, matmulnbits at accuracy_level 0), none for qdq.
    const rounds = g.nodes.filter((n) => n.opType === 'Round').length;
    assert.equal(rounds, format === 'qdq' ? 0 : r.activations.length, JSON.stringify(r.activations));
  });
}

test('the exported imported model generates by full recompute and evaluates to the perplexity the export measured', async () => {
  const r = await exportOf('w8a8', 'qdq');
  const gen = qat('generate', '--model', r.out, '--prompt', 'Call me', '--tokens', '8', '--temperature', '0');
  assert.equal(gen.status, 0, gen.stderr);
  assert.match(gen.stdout + gen.stderr, /full recompute/);
  const json = path.join(dir, 'eval.json');
  const ev = qat('eval', '--model', r.out, '--data', 'moby-dick', '--json', json);
  assert.equal(ev.status, 0, ev.stderr);
  const m = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.ok(Math.abs(m.val_perplexity - r.parity.exported_val_perplexity) / r.parity.exported_val_perplexity < 1e-4, `${m.val_perplexity} vs ${r.parity.exported_val_perplexity}`);
});

test('an imported model refuses --attention fused with a one-line reason', async () => {
  await assert.rejects(
    exportLanguageModelRun(loadRun(runs['w4a8-g32']), { from: runs['w4a8-g32'], out: path.join(dir, 'fused.onnx'), format: 'matmulnbits', attention: 'fused' }),
    /--attention fused: .* imported model whose attention is its own ops/,
  );
  assert.equal(fs.existsSync(path.join(dir, 'fused.onnx')), false);
});

/** A fixture trained `steps` fp32 steps on moby-dick at context 32, then QAT at `preset`: the QAT run directory. */
function qatRunOf(fixture: string, preset: string, steps: number, qatSteps: number): string {
  const [fp32, quant] = [path.join(dir, `${fixture}-fp32`), path.join(dir, `${fixture}-${preset}`)];
  let r = qat('train', '--model', path.join(root, `test/fixtures/${fixture}.onnx`), '--data', 'moby-dick', '--context', '32', '--batch', '8', '--steps', String(steps), '--eval-every', '0', '--out', fp32);
  assert.equal(r.status, 0, r.stderr);
  r = qat('train', '--from', fp32, '--quant', preset, '--steps', String(qatSteps), '--batch', '8', '--eval-every', '0', '--out', quant);
  assert.equal(r.status, 0, r.stderr);
  return quant;
}

/** Exports `run` as `format` and checks the file against the fake-quant model. */
async function exportedEqual(run: string, format: LmExportFormat) {
  const report = await exportLanguageModelRun(loadRun(run), { from: run, out: path.join(`${run}-${format}`, 'model.onnx'), format, parity: PARITY });
  assert.ok(report.parity.passed, report.parity.failures.join('; '));
  assert.ok(report.parity.perplexity_relative_difference < 1e-4 && report.parity.top1_agreement > 0.999, JSON.stringify(report.parity));
  return report;
}

test('imported HF Llama (grouped-query attention, If-squeezed rotary caches) QATs at w4a8-g32 and exports as matmulnbits equal to the fake-quant model', async () => {
  const report = await exportedEqual(qatRunOf('torch_hf_llama', 'w4a8-g32', 20, 4), 'matmulnbits');
  // q, k, v, o, gate, up, down in 2 layers and the head on MatMulNBits; the rotary caches are no weights.
  assert.equal(report.fusion?.matmul_nbits, 15, JSON.stringify(report.fusion));
  assert.deepEqual(report.fusion?.float_matmuls ?? [], []);
  assert.equal(report.weights.some((w) => w.tensor.startsWith('onnx::')), false, JSON.stringify(report.weights.map((w) => w.tensor)));
});

test('a decoder that takes an attention_mask (position_ids from its cumsum) saves its QAT run and exports as int4 equal to the fake-quant model', async () => {
  const report = await exportedEqual(qatRunOf('torch_llama_mask', 'w4a16-g32', 10, 3), 'int4');
  const g = decodeModel(fs.readFileSync(report.out));
  assert.deepEqual(g.inputs.map((v) => v.name).sort(), ['attention_mask', 'input_ids']);
});
