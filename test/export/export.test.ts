import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../../src/data';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { lenet } from '../../src/models/zoo';
import { decodeModel, encodeModel, saveModel } from '../../src/onnx/model-io';
import { Session } from '../../src/runtime/session';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { evaluateModel } from '../../src/train/evaluate';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { evaluateOnnxFile } from '../../src/export/evaluate-file';
import { exportRun } from '../../src/export/export-run';
import { exactWeightType } from '../../src/export/weight-type';
import { assertParity, checkParity } from '../../src/export/parity';
import { exportQdq, ExportResult } from '../../src/export/qdq';
import { Model } from '../../src/models/model';
import { presetConfig } from '../../src/quant/presets';
import { scratchDir } from '../helpers/scratch.js';

const tmp = scratchDir('qat-export-');
const runs: Record<string, { dir: string; model: Model }> = {};
const test10k = () => loadDataset('mnist').test;

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Short QAT runs from scratch (30 steps): enough to have trained scales, observers and folded BN. */
before(async () => {
  for (const quant of ['w8a8', 'w4a8', 'ternary']) {
    const dir = path.join(tmp, quant);
    await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', quant, steps: 30, batch: 32 }, dir);
    runs[quant] = { dir, model: loadCheckpoint(path.join(dir, 'checkpoint.qat')).model };
  }
  // ParetoQ's stretched elastic quantizer: 2-bit weights on half-step levels (first and last layers at 8 bits).
  const seq = path.join(tmp, 'seq');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', quantConfig: { ...presetConfig('w2a8'), weight: { bits: 2, method: 'seq', granularity: 'per-channel' } }, steps: 30, batch: 32 }, seq);
  runs.seq = { dir: seq, model: loadCheckpoint(path.join(seq, 'checkpoint.qat')).model };
});

async function optimizedOps(graph: Graph): Promise<string[]> {
  const file = path.join(tmp, `optimized-${graph.name}.onnx`);
  const s = await Session.create(graph, { optimizedModelFilePath: file });
  await s.release();
  return decodeModel(fs.readFileSync(file)).nodes.map((n) => (n.domain ? `${n.domain}.` : '') + n.opType);
}

function weightInitializers(r: ExportResult): { name: string; dtype: DType; size: number }[] {
  return [...r.graph.initializers].filter(([, t]) => t.size >= 250).map(([name, t]) => ({ name, dtype: t.dtype, size: t.size }));
}

test('qdq (w8a8): integer weights and int32 biases, no BN / custom ops / observers, metadata; ORT fuses QLinearConv and QGemm', async () => {
  const r = await exportQdq(runs.w8a8.model, { format: 'qdq' });
  const ops = r.graph.nodes.map((n) => n.opType);
  assert.ok(!ops.includes('BatchNormalization'));
  assert.ok(r.graph.nodes.every((n) => n.domain === ''));
  assert.equal(r.graph.opsets[''], 17);
  // Every large initializer is 8-bit codes: no float weights are left in the file.
  const big = weightInitializers(r);
  assert.equal(big.length, 4);
  assert.ok(big.every((w) => w.dtype === DType.UINT8 || w.dtype === DType.INT8), JSON.stringify(big));
  const biases = [...r.graph.initializers].filter(([name]) => name.endsWith('/bias_int32'));
  assert.equal(biases.length, 4);
  assert.ok(biases.every(([, t]) => t.dtype === DType.INT32));
  assert.equal(r.weightBytes.float32 / r.weightBytes.stored, 4);
  // Input still takes [0, 1] pixels: the normalisation nodes are kept in front of the first QuantizeLinear.
  assert.deepEqual(ops.slice(0, 2), ['Sub', 'Mul']);
  const meta = r.graph.metadata;
  assert.equal(JSON.parse(meta['qatkit.input']).name, 'input');
  assert.deepEqual(JSON.parse(meta['qatkit.output']).shape, ['N', 10]);
  assert.equal(JSON.parse(meta['qatkit.quantization']).preset, 'w8a8');
  const optimized = await optimizedOps(r.graph);
  assert.equal(optimized.filter((o) => o === 'com.microsoft.QLinearConv').length, 2, optimized.join(' '));
  assert.ok(optimized.filter((o) => /QGemm|QLinearMatMul|MatMulInteger/.test(o)).length >= 2, optimized.join(' '));
  assert.ok(!optimized.includes('Conv') && !optimized.includes('Gemm'), optimized.join(' '));
  // --weight-type int8: the standard signed form (for VNNI / ARM targets), same values.
  const signed = await exportQdq(runs.w8a8.model, { weightType: 'int8' });
  assert.ok(weightInitializers(signed).every((w) => w.dtype === DType.INT8));
});

test('parity (w8a8): the exported model agrees with the fake-quant model on >= 99.9% of the MNIST test set', async () => {
  const model = runs.w8a8.model;
  const r = await exportQdq(model);
  const data = test10k();
  const p = await checkParity(model, r.graph, data);
  assert.equal(p.samples, 10000);
  assert.ok(p.argmax_agreement >= 0.999, JSON.stringify(p));
  assert.ok(p.accuracy_difference_points <= 0.1, JSON.stringify(p));
  assert.ok(p.max_abs_logit_difference < 0.05, JSON.stringify(p));
  // The fake-quant side is what evaluateModel measures.
  assert.equal(p.qat_accuracy, (await evaluateModel(model, data)).accuracy);
  assert.doesNotThrow(() => assertParity(p));
});

test('assertParity refuses with the numbers and the way out named', () => {
  const bad = { samples: 100, argmax_agreement: 0.95, qat_accuracy: 0.9, exported_accuracy: 0.85, accuracy_difference_points: 5, max_abs_logit_difference: 1.5 };
  assert.throws(() => assertParity(bad), /argmax agreement 95\.00% < 99\.9%.*accuracy differs by 5\.00 points.*--no-verify/);
  // A reason, when the exporter knows one (activations below 8 bits), goes before the way out.
  assert.throws(() => assertParity(bad, undefined, 'With 4-bit activations, codes cascade'), /logit difference\| 1\.50\)\. With 4-bit activations, codes cascade\. Use --no-verify/);
});

test('int4 (w4a8): INT4 weight initializers with opset-21 DequantizeLinear, file about half of qdq, parity', async () => {
  const model = runs.w4a8.model;
  const [int4, qdq] = [await exportQdq(model, { format: 'int4' }), await exportQdq(model, { format: 'qdq' })];
  assert.equal(int4.graph.opsets[''], 21);
  const big = weightInitializers(int4);
  // conv1 and fc0 are 4-bit; the first and last layers stay 8-bit (firstLastBits).
  assert.deepEqual(big.filter((w) => w.dtype === DType.INT4).map((w) => w.name).sort(), ['conv1.weight/folded/int4', 'fc0.weight/int4']);
  assert.ok(int4.weightBytes.float32 / int4.weightBytes.stored >= 7, JSON.stringify(int4.weightBytes));
  const ratio = encodeModel(int4.graph).byteLength / encodeModel(qdq.graph).byteLength;
  assert.ok(ratio < 0.55, `int4 file is ${ratio.toFixed(3)} of the qdq file`);
  const p = await checkParity(model, int4.graph, test10k(), { limit: 3000 });
  assert.ok(p.argmax_agreement >= 0.998 && p.accuracy_difference_points <= 0.2, JSON.stringify(p));
  // The INT4 initializers are widened to int8 by a Cast that ORT folds: every layer on an integer kernel.
  const optimized = await optimizedOps(int4.graph);
  assert.equal(optimized.filter((o) => o === 'com.microsoft.QLinearConv').length, 2, optimized.join(' '));
  assert.ok(!optimized.some((o) => o === 'Conv' || o === 'Gemm' || o === 'DequantizeLinear'), optimized.join(' '));
});

test('packed (ternary): 5 codes per byte, unpacked in the graph (ORT folds it and still fuses QLinearConv), parity', async () => {
  const model = runs.ternary.model;
  const r = await exportQdq(model, { format: 'packed' });
  const packed = [...r.graph.initializers].filter(([name]) => name.endsWith('/packed'));
  assert.deepEqual(packed.map(([n]) => n).sort(), ['conv1.weight/folded/packed', 'fc0.weight/packed']);
  const fc0 = r.graph.initializers.get('fc0.weight/packed')!;
  assert.equal(fc0.dtype, DType.UINT8);
  assert.equal(fc0.size, Math.ceil((128 * 3136) / 5));
  assert.ok(r.weightBytes.float32 / r.weightBytes.stored >= 14, JSON.stringify(r.weightBytes));
  const optimized = await optimizedOps(r.graph);
  assert.ok(optimized.includes('com.microsoft.QLinearConv'), optimized.join(' '));
  const p = await checkParity(model, r.graph, test10k(), { limit: 3000 });
  assert.ok(p.argmax_agreement >= 0.998 && p.accuracy_difference_points <= 0.2, JSON.stringify(p));
});

test('SEQ 2-bit weights (ParetoQ): odd codes 2q + 1 at s / 2 in qdq and int4, four levels packed 4 per byte; parity each', async () => {
  const model = runs.seq.model;
  for (const format of ['qdq', 'int4', 'packed'] as const) {
    const r = await exportQdq(model, { format });
    const p = await checkParity(model, r.graph, test10k(), { limit: 2000 });
    assert.ok(p.argmax_agreement >= 0.998 && p.accuracy_difference_points <= 0.2, `${format}: ${JSON.stringify(p)}`);
    if (format !== 'packed') continue;
    const fc0 = r.graph.initializers.get('fc0.weight/packed')!;
    assert.equal(fc0.size, Math.ceil((128 * 3136) / 4));
  }
});

test('exportRun writes the model and the JSON report; evaluateOnnxFile reproduces the parity accuracy from the file', async () => {
  const out = path.join(tmp, 'w8a8.onnx');
  const json = path.join(tmp, 'w8a8.json');
  const report = await exportRun({ from: runs.w8a8.dir, out, json, format: 'qdq', limit: 2000 });
  const written = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.equal(written.parity.samples, 2000);
  assert.equal(written.verified, true);
  assert.equal(written.file_bytes, fs.statSync(out).size);
  // --weight-type auto (the default) picks the storage this CPU runs exactly, says why, and stores the codes so.
  const auto = exactWeightType();
  assert.deepEqual([written.weight_type, written.weight_type_reason], [auto.type, auto.reason]);
  const initializers = decodeModel(fs.readFileSync(out)).initializers;
  const stored = initializers.get('fc0.weight/int8') ?? initializers.get('fc0.weight/uint8');
  assert.equal(stored?.dtype, auto.type === 'int8' ? DType.INT8 : DType.UINT8);
  assert.equal(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp')).length, 0);
  // The integer reference evaluator ran against ORT's integer kernels on the first test images.
  const integer = written.integer_reference;
  assert.equal(integer.samples, 32, JSON.stringify(integer));
  assert.equal(integer.first_mismatch, null);
  assert.deepEqual(integer.layers.map((l: { op: string }) => l.op).filter((op: string) => op === 'Conv' || op === 'Gemm'), ['Conv', 'Conv', 'Gemm']);
  assert.ok(integer.off_by_one / integer.elements < 1e-3 && integer.argmax_agreement === 1, JSON.stringify(integer));
  const evaluated = await evaluateOnnxFile(out, test10k(), { limit: 2000 });
  assert.equal(evaluated.test_accuracy, report.parity.exported_accuracy);
});

test('evaluateOnnxFile on an fp32 model file matches evaluateModel', async () => {
  const model = lenet({ input: { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] }, seed: 3 });
  const file = path.join(tmp, 'fp32.onnx');
  saveModel(model.graph, file);
  const data = test10k();
  const [a, b] = [await evaluateOnnxFile(file, data, { limit: 500 }), await evaluateModel(model, data, { limit: 500 })];
  assert.equal(a.test_accuracy, b.accuracy);
  assert.deepEqual(a.predictions, b.predictions);
});

test('CLI: qat export --format packed and qat eval --json (test_accuracy as a fraction)', () => {
  const out = path.join(tmp, 'cli-ternary.onnx');
  const evalJson = path.join(tmp, 'cli-eval.json');
  const cli = path.resolve('bin/qat.mjs');
  const log = execFileSync(process.execPath, [cli, 'export', '--from', runs.ternary.dir, '--format', 'packed', '--out', out, '--limit', '500', '--no-verify'], { encoding: 'utf8' });
  assert.match(log, /packed: .*agreement/);
  assert.doesNotMatch(log, /integer reference/, 'packed models are not run by the int8 integer evaluator');
  execFileSync(process.execPath, [cli, 'eval', '--model', out, '--data', 'mnist', '--limit', '500', '--json', evalJson], { encoding: 'utf8' });
  const r = JSON.parse(fs.readFileSync(evalJson, 'utf8'));
  assert.equal(r.samples, 500);
  assert.ok(r.test_accuracy > 0.2 && r.test_accuracy <= 1, JSON.stringify(r));
  assert.throws(() => execFileSync(process.execPath, [cli, 'export', '--from', runs.ternary.dir, '--format', 'fp16', '--out', out], { stdio: 'pipe' }), /--format must be one of qdq, int4, packed/);
});
