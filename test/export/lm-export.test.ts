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
import { exportLanguageModelRun, LmExportReport } from '../../src/export/export-language-model';
import { LmExportFormat } from '../../src/export/lm-decoder';
import { checkLanguageModelParity } from '../../src/export/lm-parity';
import { readLanguageModelJson } from '../../src/generate/model-json';
import { loadTextData } from '../../src/data/text';
import { Graph } from '../../src/ir/graph';
import { DType } from '../../src/ir/dtype';
import { exactWeightType } from '../../src/export/weight-type';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

const CONTEXT = 32;
/** Small parity counts: the bounds are the export's own; only the sample sizes shrink. */
const PARITY = { windows: 64, prompts: 8, newTokens: 16 };
let dir = '';
const runs: Record<string, string> = {};

before(() => {
  dir = scratchDir('qatkit-lm-export-');
  runs.fp32 = path.join(dir, 'fp32');
  const tiny = ['--layers', '1', '--heads', '2', '--dim', '32', '--batch', '8', '--eval-every', '0'];
  let r = qat('train', '--model', 'gpt', '--data', 'moby-dick', '--steps', '40', '--context', String(CONTEXT), ...tiny, '--out', runs.fp32);
  assert.equal(r.status, 0, r.stderr);
  for (const preset of ['w4a16-g32', 'w3a16-g32', 'b158', 'w8a8']) {
    runs[preset] = path.join(dir, preset);
    r = qat('train', '--from', runs.fp32, '--quant', preset, '--steps', '8', '--batch', '8', '--eval-every', '0', '--out', runs[preset]);
    assert.equal(r.status, 0, r.stderr);
  }
  // w4a8 with the int8 activations MatMulNBits computes at accuracy_level 4: per token, per block of the weight
  // group (16 here: the tiny model's heads are 16 wide, and the attention output is quantized per head).
  const blocked = path.join(dir, 'w4a8-blocked.json');
  fs.writeFileSync(blocked, JSON.stringify({ preset: 'w4a8-g32', weight: { groupSize: 16 }, activation: { groupSize: 16 } }));
  runs.w4a8blocked = path.join(dir, 'w4a8-blocked');
  r = qat('train', '--from', runs.fp32, '--quant-config', blocked, '--steps', '8', '--batch', '8', '--eval-every', '0', '--out', runs.w4a8blocked);
  assert.equal(r.status, 0, r.stderr);
  // ParetoQ's stretched elastic quantizer at 2 bits (half-integer levels).
  const seq = path.join(dir, 'w2-seq.json');
  fs.writeFileSync(seq, JSON.stringify({ preset: 'w2a16-g32', weight: { method: 'seq' } }));
  runs.seq = path.join(dir, 'w2-seq');
  r = qat('train', '--from', runs.fp32, '--quant-config', seq, '--steps', '8', '--batch', '8', '--eval-every', '0', '--out', runs.seq);
  assert.equal(r.status, 0, r.stderr);
  // BitNet's own form: one absmean scale per tensor (the b158 preset takes one per output channel).
  const b158PerTensor = path.join(dir, 'b158-per-tensor.json');
  fs.writeFileSync(b158PerTensor, JSON.stringify({ preset: 'b158', weight: { granularity: 'per-tensor' } }));
  runs.b158PerTensor = path.join(dir, 'b158-per-tensor');
  r = qat('train', '--from', runs.fp32, '--quant-config', b158PerTensor, '--steps', '8', '--batch', '8', '--eval-every', '0', '--out', runs.b158PerTensor);
  assert.equal(r.status, 0, r.stderr);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

const exportRun = (run: string, format: LmExportFormat, name: string, extra: object = {}): Promise<LmExportReport> =>
  exportLanguageModelRun(loadRun(runs[run]), { from: runs[run], out: path.join(dir, name, 'model.onnx'), json: path.join(dir, name, 'export.json'), format, threads: 1, parity: PARITY, ...extra });

const nodesOf = (file: string): Graph => decodeModel(fs.readFileSync(file));

test('fp32 export: KV-cache decoder in the inference form with model.json; qat generate --model and qat eval --model match the run', async () => {
  const r = await exportRun('fp32', 'fp32', 'fp32');
  const g = nodesOf(r.out);
  const inputs = g.inputs.map((v) => v.name);
  assert.ok(['input_ids', 'position_ids', 'attention_mask', 'past_key_values.0.key', 'past_key_values.0.value'].every((n) => inputs.includes(n)), inputs.join());
  assert.deepEqual(g.inputs.find((v) => v.name === 'past_key_values.0.key')!.shape, ['B', 2, 'P', 16]);
  assert.ok(g.outputs.some((v) => v.name === 'present.0.value'));
  const json = readLanguageModelJson(r.out)!;
  assert.equal(json.context, CONTEXT);
  assert.equal(json.layers, 1);
  assert.equal(json.kvCache?.pastKey, 'past_key_values.{i}.key');
  assert.equal(r.parity.reference, 'fp32');
  assert.ok(r.parity.passed, r.parity.failures.join('; '));
  // Same greedy tokens from the exported file (KV cache, model.json only) as from the run directory.
  const fromRun = qat('generate', '--from', runs.fp32, '--prompt', 'Call me Ishmael', '--tokens', '24', '--temperature', '0', '--json', path.join(dir, 'g-run.json'));
  const fromFile = qat('generate', '--model', r.out, '--prompt', 'Call me Ishmael', '--tokens', '24', '--temperature', '0', '--json', path.join(dir, 'g-file.json'));
  assert.equal(fromRun.status, 0, fromRun.stderr);
  assert.equal(fromFile.status, 0, fromFile.stderr);
  assert.deepEqual(readJson(path.join(dir, 'g-file.json')).ids, readJson(path.join(dir, 'g-run.json')).ids);
  const evalRun = qat('eval', '--from', runs.fp32, '--json', path.join(dir, 'e-run.json'));
  const evalFile = qat('eval', '--model', r.out, '--data', 'moby-dick', '--json', path.join(dir, 'e-file.json'));
  assert.equal(evalFile.status, 0, evalFile.stderr);
  assert.equal(evalRun.status, 0, evalRun.stderr);
  const [a, b] = [readJson(path.join(dir, 'e-run.json')).val_perplexity, readJson(path.join(dir, 'e-file.json')).val_perplexity];
  assert.ok(Math.abs(a - b) / a < 1e-5, `${a} vs ${b}`);
});

test('matmulnbits (w4a16-g32): com.microsoft MatMulNBits bits 4, block 32, accuracy_level 0 for every weight MatMul; equal to the fake-quant model', async () => {
  const r = await exportRun('w4a16-g32', 'matmulnbits', 'w4-nbits');
  const g = nodesOf(r.out);
  // A weight-only run's decoder computes attention with one GroupQueryAttention per layer (lm-decoder.ts chooseAttention).
  assert.equal(r.attention.used, 'fused', JSON.stringify(r.attention));
  assert.equal(g.nodes.filter((n) => n.opType === 'GroupQueryAttention').length, 1);
  const nbits = g.nodes.filter((n) => n.opType === 'MatMulNBits');
  // qkv, attention output, MLP fc and proj, and the tied LM head.
  assert.equal(nbits.length, 5);
  for (const n of nbits) {
    assert.equal(n.domain, 'com.microsoft');
    assert.equal(n.attrs.bits.value, 4);
    assert.equal(n.attrs.block_size.value, 32);
    assert.equal(n.attrs.accuracy_level.value, 0);
  }
  assert.ok(!g.nodes.some((n) => n.opType === 'MatMul' && g.initializers.has(n.inputs[1])), 'no float weight MatMul left');
  assert.equal(r.fusion!.matmul_nbits, 5);
  assert.deepEqual(r.fusion!.float_matmuls, []);
  assert.equal(r.parity.reference, 'fake-quant');
  assert.ok(r.parity.passed, r.parity.failures.join('; '));
  assert.ok(r.parity.perplexity_relative_difference < 1e-4, String(r.parity.perplexity_relative_difference));
  assert.ok(r.file_bytes < r.fp32_file_bytes);
  // The tied table is looked up from the head's own 4-bit codes and scales (stored once): GatherBlockQuantized over
  // a Reshape of the head's MatMulNBits B, with its scales per 32 channels.
  const gather = g.nodes.filter((n) => n.opType === 'GatherBlockQuantized');
  assert.equal(gather.length, 1);
  const head = nbits.find((n) => n.inputs[1].startsWith('wte.weight'))!;
  const rows = g.nodes.find((n) => n.outputs[0] === gather[0].inputs[0])!;
  assert.deepEqual([rows.opType, rows.inputs[0], gather[0].inputs[2]], ['Reshape', head.inputs[1], head.inputs[2]]);
  assert.equal(g.initializers.get(head.inputs[1])!.dtype, DType.UINT8);
  assert.deepEqual([gather[0].attrs.block_size.value, gather[0].attrs.bits.value], [32, 4]);
  assert.match(r.embeddings, /GatherBlockQuantized \(uint8, 4-bit codes shared with the head's MatMulNBits\)/);
  // Bytes per tensor kind: MatMul weights as 4-bit codes (8x fewer bytes than float32), the table's once (counted as
  // embeddings, with the Reshape's int64 [2] shape), plus one float32 scale per 32 codes: 5 bits per quantized weight.
  const { exported, fp32 } = r.tensor_bytes;
  const tableBytes = (256 * 32) / 2;
  const codes = 2 * (exported.weights + tableBytes);
  // The position table: int8 rows with one scale per position, looked up through a standard DequantizeLinear.
  const positions = g.nodes.find((n) => n.opType === 'DequantizeLinear' && g.initializers.get(n.inputs[0])?.dtype === DType.INT8)!;
  assert.deepEqual(g.initializers.get(positions.inputs[0])!.dims, [CONTEXT, 32]);
  assert.deepEqual(g.initializers.get(positions.inputs[1])!.dims, [CONTEXT]);
  assert.equal(g.nodes.find((n) => n.inputs[0] === positions.outputs[0])!.opType, 'Gather');
  assert.equal(exported.embeddings, tableBytes + 16 + CONTEXT * 32, JSON.stringify(r.tensor_bytes));
  assert.equal(fp32.embeddings, 4 * (256 + CONTEXT) * 32); // float32 token and position tables
  // The fp32 file stores the tied table once (an embedding), and so does the export (in the head's MatMulNBits).
  assert.equal(fp32.weights / exported.weights, 8, JSON.stringify(r.tensor_bytes));
  assert.equal((8 * (exported.weights + tableBytes + exported.scales - 4 * CONTEXT)) / codes, 5, JSON.stringify(r.tensor_bytes));
  assert.equal(exported.norms, fp32.norms);
});

test('w4a8 trained with per-token-per-block int8 activations: MatMulNBits accuracy_level 4 computes them (no quantizer nodes left), with fused attention; equal to the fake-quant model', async () => {
  const r = await exportRun('w4a8blocked', 'matmulnbits', 'w4a8-level4');
  const g = nodesOf(r.out);
  const nbits = g.nodes.filter((n) => n.opType === 'MatMulNBits');
  assert.equal(nbits.length, 5);
  assert.ok(nbits.every((n) => n.attrs.accuracy_level.value === 4), nbits.map((n) => `${n.name}:${n.attrs.accuracy_level.value}`).join(' '));
  assert.deepEqual([r.accuracy_level, r.fusion!.accuracy_levels], [4, [4]]);
  assert.equal(g.nodes.filter((n) => n.opType === 'ReduceMax' || n.opType === 'Round').length, 0, 'no activation quantizer ops');
  assert.ok(r.activations.length === 5 && r.activations.every((a) => /in MatMulNBits \(accuracy_level 4\)/.test(a.spec)), JSON.stringify(r.activations));
  // The attention output's per-head quantizer is the kernel's too, so nothing blocks the fused attention.
  assert.equal(r.attention.used, 'fused', JSON.stringify(r.attention));
  assert.ok(r.parity.passed, r.parity.failures.join('; '));
});

test('--embeddings float keeps the table in float32 (the head still reads its own int4 codes)', async () => {
  const r = await exportRun('w4a16-g32', 'matmulnbits', 'w4-nbits-float-emb', { embeddings: 'float' });
  const g = nodesOf(r.out);
  assert.equal(r.embeddings, 'float');
  assert.ok(!g.nodes.some((n) => n.opType === 'GatherBlockQuantized'));
  const table = g.nodes.find((n) => n.opType === 'Gather' && g.initializers.get(n.inputs[0])?.dims[0] === 256)!;
  assert.equal(g.initializers.get(table.inputs[0])!.dtype, DType.FLOAT);
  assert.ok(r.tensor_bytes.exported.embeddings >= 256 * 32 * 4, JSON.stringify(r.tensor_bytes));
  assert.ok(r.parity.passed, r.parity.failures.join('; '));
});

test('qdq (w8a8): every weight MatMul is MatMulIntegerToFloat over uint8 codes with per-token scales, equal to the fake-quant model', async () => {
  const r = await exportRun('w8a8', 'qdq', 'w8-qdq', { weightType: 'uint8' });
  assert.equal(r.weight_type, 'uint8');
  const g = nodesOf(r.out);
  const integer = g.nodes.filter((n) => n.opType === 'MatMulIntegerToFloat');
  assert.equal(integer.length, 5);
  for (const n of integer) {
    assert.equal(g.initializers.get(n.inputs[1])!.dtype, DType.UINT8);
    assert.equal(g.initializers.get(n.inputs[5])!.data[0], 128);
    assert.equal(g.initializers.get(n.inputs[3])!.dims.length, 1, 'one weight scale per output feature');
    assert.ok(!g.initializers.has(n.inputs[2]), 'activation scales are computed per token');
  }
  assert.ok(!g.nodes.some((n) => n.domain === 'ai.qatkit'));
  assert.equal(r.embeddings, 'DequantizeLinear (int8) -> Gather');
  assert.equal(r.fusion!.integer_matmuls, 5);
  assert.deepEqual(r.fusion!.float_matmuls, []);
  assert.ok(r.parity.passed, r.parity.failures.join('; '));
  assert.ok(r.parity.perplexity_relative_difference < 1e-4, String(r.parity.perplexity_relative_difference));
  assert.ok(r.parity.top1_agreement > 0.999, String(r.parity.top1_agreement));
  assert.ok(r.weights.every((w) => w.kernels.every((k) => k.startsWith('MatMulIntegerToFloat') || k.includes('Gather'))), JSON.stringify(r.weights));
});

test('qdq --weight-type: auto follows the CPU; int8 codes (zero point 0, u8s8 kernels) hold the same values and, where u8s8 is exact, the same perplexity', async () => {
  const auto = exactWeightType();
  const r = await exportRun('w8a8', 'qdq', 'w8-qdq-auto');
  assert.equal(r.weight_type, auto.type);
  assert.equal(r.weight_type_reason, auto.reason);
  // int8 storage: without VNNI/AMX ORT's u8s8 kernel saturates, so parity is checked only where it is exact.
  const s = await exportRun('w8a8', 'qdq', 'w8-qdq-int8', { weightType: 'int8', noVerify: auto.type !== 'int8' });
  const u = nodesOf(path.join(dir, 'w8-qdq', 'model.onnx'));
  const g = nodesOf(s.out);
  const integer = g.nodes.filter((n) => n.opType === 'MatMulIntegerToFloat');
  assert.equal(integer.length, 5);
  const uIntegers = u.nodes.filter((n) => n.opType === 'MatMulIntegerToFloat');
  for (const [i, n] of integer.entries()) {
    const codes = g.initializers.get(n.inputs[1])!;
    assert.equal(codes.dtype, DType.INT8);
    assert.equal(g.initializers.get(n.inputs[5])!.dtype, DType.INT8);
    assert.equal(g.initializers.get(n.inputs[5])!.data[0], 0);
    const shifted = u.initializers.get(uIntegers[i].inputs[1])!.data as Uint8Array;
    assert.ok((codes.data as Int8Array).every((c, j) => c === shifted[j] - 128), `weight codes of '${n.name}' differ from the uint8 file's`);
  }
  assert.ok(s.weights.every((w) => w.kernels.every((k) => k === 'MatMulIntegerToFloat (u8s8)' || k.includes('Gather'))), JSON.stringify(s.weights));
  if (auto.type === 'int8') {
    assert.ok(s.parity.passed, s.parity.failures.join('; '));
    assert.ok(s.parity.perplexity_relative_difference < 1e-4, String(s.parity.perplexity_relative_difference));
  }
});

test('qdq runs ternary (b158) codes as int8 too; a weight-only run is refused naming matmulnbits', async () => {
  const b = await exportRun('b158', 'qdq', 'b158-qdq');
  assert.equal(nodesOf(b.out).nodes.filter((n) => n.opType === 'MatMulIntegerToFloat').length, 5);
  assert.ok(b.parity.passed, b.parity.failures.join('; '));
  await assert.rejects(exportRun('w4a16-g32', 'qdq', 'w4-qdq'), /no 8-bit per-token activation quantizer.*--format matmulnbits/);
});

test('int4 (w4a16-g32): INT4 DequantizeLinear (axis 0, block_size 32, opset 21) with one consumer each, a tied head with its own; ORT fuses all into MatMulNBits at the level model.json sets', async () => {
  const r = await exportRun('w4a16-g32', 'int4', 'w4-int4');
  const g = nodesOf(r.out);
  assert.equal(r.attention.used, 'ops', JSON.stringify(r.attention));
  assert.equal(g.opsets[''], 21);
  assert.ok(g.nodes.every((n) => n.domain === ''), 'standard ONNX only');
  const dq = g.nodes.filter((n) => n.opType === 'DequantizeLinear' && g.initializers.get(n.inputs[0])!.dtype !== DType.INT8);
  // The position table is int8 rows (per-axis DequantizeLinear -> Gather), the one 8-bit tensor of the file.
  const positions = g.nodes.filter((n) => n.opType === 'DequantizeLinear' && g.initializers.get(n.inputs[0])!.dtype === DType.INT8);
  assert.deepEqual(positions.map((n) => [g.initializers.get(n.inputs[0])!.dims, n.attrs.axis?.value]), [[[CONTEXT, 32], 0]]);
  for (const n of dq) {
    assert.equal(n.attrs.block_size.value, 32);
    assert.equal(g.initializers.get(n.inputs[0])!.dtype, 22 /* INT4 */);
    assert.equal(g.nodes.filter((m) => m.inputs.includes(n.outputs[0])).length, 1, `${n.name} has one consumer`);
  }
  // Four MatMul weights and the tied table twice (embedding Gather along axis 1, head MatMul along axis 0).
  assert.equal(dq.length, 6);
  const consumers = dq.map((n) => g.nodes.find((m) => m.inputs.includes(n.outputs[0]))!.opType).sort();
  assert.deepEqual(consumers, ['Gather', 'MatMul', 'MatMul', 'MatMul', 'MatMul', 'MatMul']);
  assert.equal(r.fusion!.matmul_nbits, 5);
  assert.deepEqual(r.fusion!.accuracy_levels, [0]);
  assert.deepEqual(readLanguageModelJson(r.out)!.sessionConfig, { 'session.qdq_matmulnbits_accuracy_level': '0' });
  assert.ok(r.parity.passed, r.parity.failures.join('; '));
  assert.ok(r.size_ratio_vs_fp32 > 2, String(r.size_ratio_vs_fp32));
});

test('w3a16-g32 ships 3-bit codes in 4-bit MatMulNBits blocks; b158 as bits 2 (codes 1, 2, 3 around zero point 2); both equal to their fake-quant models', async () => {
  const w3 = await exportRun('w3a16-g32', 'matmulnbits', 'w3-nbits');
  const [positions, rest] = [w3.weights.filter((w) => w.tensor === 'wpe.weight'), w3.weights.filter((w) => w.tensor !== 'wpe.weight')];
  assert.ok(rest.length === 5 && rest.every((w) => w.bits === 3 && w.storage_bits === 4), JSON.stringify(w3.weights));
  assert.deepEqual(positions.map((w) => [w.bits, w.storage_bits, w.granularity]), [[8, 8, 'channel']]);
  assert.ok(w3.parity.passed, w3.parity.failures.join('; '));
  const b = await exportRun('b158', 'matmulnbits', 'b158-nbits');
  assert.ok(b.parity.passed, b.parity.failures.join('; '));
  // 2-bit weights run on ORT's LUT kernel where the parity check passed on it; model.json carries the option.
  assert.deepEqual([b.lut_gemm.eligible, b.lut_gemm.used, b.lut_gemm.mode], [true, true, 'auto'], JSON.stringify(b.lut_gemm));
  assert.deepEqual(b.session_config, { 'mlas.use_lut_gemm': '1' });
  assert.deepEqual(readLanguageModelJson(b.out)!.sessionConfig, { 'mlas.use_lut_gemm': '1' });
  assert.deepEqual(w3.session_config, {});
  assert.equal(w3.lut_gemm.eligible, false);
  const exact = await exportRun('b158', 'matmulnbits', 'b158-nbits-exact', { lutGemm: 'off' });
  assert.ok(exact.parity.passed && !exact.lut_gemm.used, JSON.stringify(exact.lut_gemm));
  assert.equal(readLanguageModelJson(exact.out)!.sessionConfig, undefined);
  const g = nodesOf(b.out);
  const n = g.nodes.find((x) => x.opType === 'MatMulNBits' && x.name.startsWith('blocks.0.mlp.fc'))!;
  assert.equal(n.attrs.bits.value, 2);
  const packed = g.initializers.get(n.inputs[1])!.data as Uint8Array;
  const codes = new Set<number>();
  for (const byte of packed) for (let j = 0; j < 4; j++) codes.add((byte >> (2 * j)) & 3);
  assert.deepEqual([...codes].sort(), [1, 2, 3]);
  // BitLinear inputs carry their RMSNorm; the head (not a BitLinear in BitNet) reads int8 rows with a plain int8 input.
  const [headInput, bitLinearInputs] = [b.activations.filter((a) => a.layers.some((l) => l.startsWith('lm_head'))), b.activations.filter((a) => !a.layers.some((l) => l.startsWith('lm_head')))];
  assert.ok(bitLinearInputs.length > 0 && bitLinearInputs.every((a) => a.spec.includes('RMSNorm')), JSON.stringify(b.activations));
  assert.ok(headInput.length === 1 && !headInput[0].spec.includes('RMSNorm'), JSON.stringify(headInput));
  assert.deepEqual(b.weights.filter((w) => w.tensor === 'wte.weight').map((w) => [w.bits, w.storage_bits]), [[8, 8]]);
});

test('SEQ (ParetoQ 2-bit): its levels (q + 1/2) s ship as odd 4-bit codes 2q + 1 at s / 2, in MatMulNBits and in INT4 DequantizeLinear; equal to the fake-quant model', async () => {
  for (const format of ['matmulnbits', 'int4'] as const) {
    const r = await exportRun('seq', format, `seq-${format}`);
    const rest = r.weights.filter((w) => w.tensor !== 'wpe.weight');
    assert.ok(rest.length === 5 && rest.every((w) => w.bits === 2 && w.storage_bits === 4 && /seq/.test(w.grid ?? '')), JSON.stringify(r.weights));
    assert.ok(r.parity.passed, r.parity.failures.join('; '));
    assert.ok(r.integer_reference?.passed, JSON.stringify(r.integer_reference));
    if (format !== 'matmulnbits') continue;
    const g = nodesOf(r.out);
    const n = g.nodes.find((x) => x.opType === 'MatMulNBits' && x.name.startsWith('blocks.0.mlp.fc'))!;
    assert.equal(n.attrs.bits.value, 4);
    const codes = new Set<number>();
    for (const byte of g.initializers.get(n.inputs[1])!.data as Uint8Array) for (const u of [byte & 15, byte >> 4]) codes.add(u - 8);
    assert.ok([...codes].every((q) => [-3, -1, 1, 3].includes(q)), `codes ${[...codes]}`);
  }
});

test('--block-size sets the MatMulNBits blocks of ternary weights (same codes, each scale stored once per tensor or per row); a grouped run keeps its group', async () => {
  const wide = await exportRun('b158', 'matmulnbits', 'b158-nbits-widest');
  const narrow = await exportRun('b158', 'matmulnbits', 'b158-nbits-16', { blockSize: 16 });
  const blocks = (r: LmExportReport) => nodesOf(r.out).nodes.filter((n) => n.opType === 'MatMulNBits').map((n) => n.attrs.block_size.value);
  assert.ok(blocks(narrow).every((b) => b === 16), String(blocks(narrow)));
  // By default each layer takes the widest block dividing its input width (32, and 128 for the MLP's projection).
  assert.deepEqual([...new Set(blocks(wide))].sort(), [128, 32]);
  assert.equal(narrow.tensor_bytes.exported.weights, wide.tensor_bytes.exported.weights);
  // A per-channel scale is stored once per row (Expand of [N, 1]) and a per-tensor one once (ConstantOfShape) at
  // any block size; ORT folds both to the [N, blocks] scales MatMulNBits reads. The int8 head is per row.
  const scaleSources = (file: string) => {
    const g = nodesOf(file);
    const producers = g.producers();
    return g.nodes.filter((n) => n.opType === 'MatMulNBits').map((n) => [n.name.split('/')[0], producers.get(n.inputs[2])?.opType ?? 'initializer']);
  };
  const perRow = scaleSources(narrow.out);
  assert.ok(perRow.length > 1 && perRow.every(([, op]) => op === 'Expand'), JSON.stringify(perRow));
  const perTensor = await exportRun('b158PerTensor', 'matmulnbits', 'b158-per-tensor-nbits-16', { blockSize: 16 });
  const once = scaleSources(perTensor.out);
  assert.ok(once.every(([layer, op]) => op === (layer.startsWith('lm_head') ? 'Expand' : 'ConstantOfShape')), JSON.stringify(once));
  assert.ok(perTensor.tensor_bytes.exported.scales < narrow.tensor_bytes.exported.scales, JSON.stringify([perTensor.tensor_bytes, narrow.tensor_bytes]));
  // The same scales at both block sizes, up to each Expand's int64[2] target shape (shared where shapes repeat).
  assert.ok(Math.abs(narrow.tensor_bytes.exported.scales - wide.tensor_bytes.exported.scales) <= 16 * perRow.length, JSON.stringify([narrow.tensor_bytes, wide.tensor_bytes]));
  assert.ok(narrow.parity.passed, narrow.parity.failures.join('; '));
  assert.ok(perTensor.parity.passed, perTensor.parity.failures.join('; '));
  await assert.rejects(exportRun('w4a16-g32', 'matmulnbits', 'w4-nbits-128', { blockSize: 64 }), /--block-size 64: weight '[^']+' was trained in groups of 32/);
  const r = qat('export', '--from', runs.b158, '--format', 'matmulnbits', '--block-size', '48', '--out', path.join(dir, 'x.onnx'));
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--block-size must be one of 16, 32, 64, 128, 256, got '48'/);
});

test('the parity check fails a file that is not the run model: the fp32 file against the w4a16 fake-quant model', async () => {
  const text = loadTextData('moby-dick', 'bytes');
  const file = path.join(dir, 'fp32', 'model.onnx');
  const model = loadRun(runs['w3a16-g32']).model;
  const p = await checkLanguageModelParity(model, file, text.val, CONTEXT, readLanguageModelJson(file)!, { threads: 1, ...PARITY });
  assert.equal(p.passed, false);
  assert.ok(p.failures.some((f) => f.includes('val_perplexity')), p.failures.join('; '));
});

test('qat export --from LM_RUN refuses an image format and an fp32 run as int4, naming the valid choices', () => {
  const a = qat('export', '--from', runs.fp32, '--format', 'packed', '--out', path.join(dir, 'x.onnx'));
  assert.notEqual(a.status, 0);
  assert.match(a.stderr, /fp32, int4, matmulnbits, qdq/);
  const b = qat('export', '--from', runs.fp32, '--format', 'int4', '--out', path.join(dir, 'x.onnx'));
  assert.notEqual(b.status, 0);
  assert.match(b.stderr, /no quantized weights/);
  assert.ok(!fs.existsSync(path.join(dir, 'x.onnx')));
});

test('every export JSON written above records its proof: val perplexity of the file against the run model and training, top-1 agreement, greedy common prefix, the integer reference layer by layer', () => {
  const reports = fs.readdirSync(dir).map((d) => path.join(dir, d, 'export.json')).filter((f) => fs.existsSync(f));
  const formats = new Set<string>();
  for (const file of reports) {
    const r = readJson(file) as LmExportReport;
    formats.add(r.format);
    const p = r.parity;
    assert.ok(p.passed && p.failures.length === 0, `${file}: ${p.failures}`);
    assert.ok(p.exported_val_perplexity > 1 && p.reference_val_perplexity > 1, file);
    assert.ok(p.perplexity_relative_difference <= 0.005, `${file}: ${p.perplexity_relative_difference}`);
    assert.ok(p.top1_agreement >= 0.99 && p.top1_positions === PARITY.windows * CONTEXT, `${file}: ${p.top1_agreement} over ${p.top1_positions}`);
    assert.equal(p.greedy.prompts, PARITY.prompts);
    assert.ok(p.greedy.mean_common_prefix >= 0.75 * PARITY.newTokens, `${file}: ${p.greedy.mean_common_prefix}`);
    // Training's own figure (the run's metrics.json), not only the re-measured reference.
    assert.equal(typeof r.training_val_perplexity, 'number', file);
    assert.ok(r.exported_vs_training_relative_difference! <= 0.005, `${file}: file ${p.exported_val_perplexity} vs training ${r.training_val_perplexity}`);
    // Every integer layer recomputed from its codes in TypeScript reproduces ORT's output (not for fp32: none).
    const ir = r.integer_reference;
    if (r.format === 'fp32') assert.equal(ir, undefined);
    else {
      assert.ok(ir && ir.passed && !ir.first_mismatch, `${file}: ${JSON.stringify(ir)}`);
      const expected = { int4: 'MatMul', matmulnbits: 'MatMulNBits', qdq: 'MatMulIntegerToFloat' }[r.format as 'int4' | 'matmulnbits' | 'qdq'];
      assert.ok((ir.layers[expected] ?? 0) >= 5, `${file}: ${JSON.stringify(ir.layers)}`);
      if (r.format === 'qdq') assert.ok(ir.layers.QuantizeLinear > 0 && ir.worst_code_difference <= 1, file);
      assert.ok(ir.worst_relative_difference < 2e-3, `${file}: ${ir.worst_relative_difference}`);
    }
  }
  assert.deepEqual([...formats].sort(), ['fp32', 'int4', 'matmulnbits', 'qdq']);
});
