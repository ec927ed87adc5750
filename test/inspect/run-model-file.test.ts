/**
 * Every quantized run saves its fake-quant model as RUN/model.onnx: image QAT, image PTQ (qat quantize), language-
 * model QAT and language-model RTN. Each file holds standard ONNX ops only (no ai.qatkit domain), carries the recipe
 * in metadata, loads in ONNX Runtime from disk, and computes what the run's own evaluation graph computes on the
 * checkpoint (same logits, a few inputs); `qat inspect` reads it as a fake-quant model with the recipe's columns.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import '../../src/quant';
import { loadRun, train, TrainConfig } from '../../src/train/run';
import { quantizeRun } from '../../src/train/ptq-run';
import { buildEvalGraph } from '../../src/train/step-graph';
import { Session } from '../../src/runtime/session';
import { loadModel } from '../../src/onnx/model-io';
import { inspectPath } from '../../src/inspect/inspect-path';
import { FAKE_QUANT_KEY, QUANTIZATION_KEY } from '../../src/inspect/inspect-file';
import { Rng } from '../../src/train/rng';
import { fp32Run, qatRun, tmpDir, tinyLanguageModelConfig } from './helpers';

const LM: TrainConfig = tinyLanguageModelConfig(4);
let dir = '';
const runs: Record<string, string> = {};

before(async () => {
  dir = tmpDir('run-model');
  runs.fp32 = await fp32Run(dir);
  runs.qat = await qatRun(runs.fp32, dir, 'qat', 'w4a4');
  runs.ptq = path.join(dir, 'ptq');
  await quantizeRun({ from: runs.fp32, quant: 'w4a4', calib: 'minmax', calibBatches: 1, threads: 1 }, runs.ptq);
  runs.lmFp32 = path.join(dir, 'lm-fp32');
  await train(LM, runs.lmFp32);
  runs.lmQat = path.join(dir, 'lm-qat');
  await train({ ...LM, model: undefined as unknown as string, from: runs.lmFp32, quant: 'w4a8-g32', steps: 2 }, runs.lmQat);
  runs.lmRtn = path.join(dir, 'lm-rtn');
  await quantizeRun({ from: runs.lmFp32, quant: 'w4a16-g32', calib: 'minmax', calibBatches: 1, threads: 1, ptqMethod: 'rtn' }, runs.lmRtn);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A few inputs of the model's own type and shape: pixels in [0, 1], or token ids below the vocabulary. */
function inputsFor(input: { dtype: number; shape: (number | string)[] }, vocab: number): ort.Tensor[] {
  const rng = new Rng(7);
  return [1, 3].map((batch) => {
    const dims = input.shape.map((d, i) => (i === 0 ? batch : typeof d === 'number' ? d : 16));
    const n = dims.reduce((a, b) => a * b, 1);
    if (vocab) return new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(rng.int(vocab))), dims);
    return new ort.Tensor('float32', Float32Array.from({ length: n }, () => rng.uniform()), dims);
  });
}

async function checkRunModel(run: string, method: 'qat' | 'ptq'): Promise<void> {
  const file = path.join(run, 'model.onnx');
  assert.ok(fs.existsSync(file), `${run} has no model.onnx`);
  const graph = loadModel(file);
  const foreign = graph.nodes.filter((n) => n.domain !== '' && n.domain !== 'ai.onnx');
  assert.deepEqual(foreign.map((n) => `${n.domain}.${n.opType}`), [], 'standard ONNX ops only');
  assert.deepEqual(Object.keys(graph.opsets), [''], JSON.stringify(graph.opsets));
  assert.ok(graph.metadata[FAKE_QUANT_KEY], 'marked as a fake-quant model');
  const recipe = JSON.parse(graph.metadata[QUANTIZATION_KEY]);
  const ckpt = loadRun(run);
  const quant = ckpt.model.quant!;
  assert.equal(recipe.method, method);
  assert.equal(recipe.layers.length, quant.quantizers.length);
  assert.deepEqual(recipe.layers.map((l: { spec: unknown }) => l.spec), quant.quantizers.map((q) => q.spec));

  // ORT loads the file from disk; its outputs equal the run's evaluation graph on the checkpoint.
  const fromFile = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  const reference = await Session.create(buildEvalGraph(ckpt.model), { threads: 1 });
  const input = ckpt.model.graph.inputs.find((v) => v.name === ckpt.model.input)!;
  const vocab = ckpt.model.task === 'language-model' ? 256 : 0;
  for (const x of inputsFor(input, vocab)) {
    const a = (await fromFile.run({ [ckpt.model.input]: x }))[ckpt.model.output].data as Float32Array;
    const b = (await reference.run({ [ckpt.model.input]: x }, [ckpt.model.output]))[ckpt.model.output].data as Float32Array;
    assert.equal(a.length, b.length);
    assert.ok(a.every(Number.isFinite));
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.equal(worst, 0, `${file}: logits differ from the run's eval graph by up to ${worst}`);
  }
  await fromFile.release();
  await reference.release();

  // qat inspect reads it as a fake-quant model, the recipe's bits in its columns.
  const report = await inspectPath(file, { threads: 1 });
  assert.equal(report.kind, 'fake-quant');
  assert.equal(report.quant?.method, method);
  const quantizedLayers = report.layers.filter((l) => l.weight);
  assert.ok(quantizedLayers.length > 0);
  for (const q of quant.quantizers.filter((z) => z.role === 'weight')) {
    const row = report.layers.find((l) => l.node === q.layers[0])!;
    assert.equal(row.weight?.bits, q.spec.method === 'binary' ? 1 : q.spec.bits, row.name);
  }
}

test('image QAT run: model.onnx in standard ops, equal to the run', () => checkRunModel(runs.qat, 'qat'));
test('image PTQ run (qat quantize): model.onnx in standard ops, equal to the run', () => checkRunModel(runs.ptq, 'ptq'));
test('language-model QAT run: model.onnx in standard ops, equal to the run', () => checkRunModel(runs.lmQat, 'qat'));
test('language-model RTN run (qat quantize): model.onnx in standard ops, equal to the run', () => checkRunModel(runs.lmRtn, 'ptq'));
