/**
 * The language-model PTQ methods (src/quant/ptq-methods): AWQ/SmoothQuant scale folding keeps the float function,
 * AWQ's layer-group output error is at or below RTN's, GPTQ beats RTN in validation loss at 3 and 2 bits, a PTQ
 * model's fake-quant forward is QAT's at the same scales bit for bit, the frozen weights sit on their own grid,
 * and the methods run on the zoo gpt/llama and on imported PyTorch decoders. One small gpt (2 blocks, width 64,
 * context 64, 400 steps) is trained briefly on Moby Dick and shared.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import '../../src/ops';
import '../../src/quant';
import { Model } from '../../src/models/model';
import { gpt, llama } from '../../src/models/transformers';
import { importForTraining } from '../../src/models/resolve';
import { Session } from '../../src/runtime/session';
import { presetConfig, QatConfig } from '../../src/quant/presets';
import { ptqConfig, quantizeLanguageModelRtn } from '../../src/quant/ptq';
import { prepareLanguageModelQat } from '../../src/quant/qat';
import { scaleLayout } from '../../src/quant/prepare';
import { fetchValues } from '../../src/export/fetch-values';
import { loadTextData, TokenStream } from '../../src/data/text';
import { evaluateLanguageModel } from '../../src/train/evaluate-language-model';
import { loadRun } from '../../src/train/run';
import { runCorpusCase } from '../helpers/run-qat';
import { applyInputScales, scaleGroups } from '../../src/quant/ptq-methods/input-scales';
import { linearTargets, storedIndex } from '../../src/quant/ptq-methods/layer-targets';
import { fixWeightQuantizers } from '../../src/quant/ptq-methods/fixed-scales';
import { quantizeAtScales, weightGrid } from '../../src/quant/ptq-methods/weight-grid';
import { CalibrationBatch } from '../../src/quant/ptq-methods/layer-inputs';
import { calibrationWindows, quantizeLanguageModelPtq } from '../../src/quant/ptq-methods/language-model-ptq';
import { scratchDir } from '../helpers/scratch.js';

const CONTEXT = 64;
let work = '';
let trained: Model;
let calib: CalibrationBatch[];
const text = loadTextData('moby-dick');
const lmConfig = (preset: string) => presetConfig(preset, 'language-model');

before(async () => {
  work = scratchDir('qatkit-ptq-methods-');
  const run = path.join(work, 'fp32');
  // The command line, so the language-model training defaults apply (the library's are the image ones).
  const r = await runCorpusCase(['train', '--model', 'gpt', '--data', 'moby-dick', '--layers', '2', '--heads', '4', '--dim', '64', '--context', String(CONTEXT), '--batch', '16', '--steps', '400', '--eval-every', '0', '--threads', '1', '--out', run]);
  assert.equal(r.code, 0, r.stderr);
  trained = loadRun(run).model;
  calib = calibrationWindows(trained, text.train, 32, CONTEXT);
});

after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A random-token stream for models without a corpus of their own (imported fixtures). */
function randomStream(vocab: number, n: number, seed: number): TokenStream {
  let a = seed >>> 0;
  const tokens = Int32Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a % vocab;
  });
  return { tokens, bytes: n };
}

/** Values of `names` in `model`'s graph (fake-quant ops lowered) on each batch, concatenated. */
async function fetchOn(model: Model, names: string[], batches: CalibrationBatch[]): Promise<Map<string, Float32Array>> {
  const g = model.graph.clone();
  g.outputs = names.map((name) => ({ name, ...g.typeOf(name) }));
  const session = await Session.create(g, { threads: 1 });
  const parts = new Map<string, Float32Array[]>(names.map((n) => [n, []]));
  for (const feeds of batches) {
    const out = await session.run(feeds, names);
    for (const n of names) parts.get(n)!.push(out[n].data as Float32Array);
  }
  await session.release();
  return new Map([...parts].map(([n, ps]) => {
    const all = new Float32Array(ps.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of ps) (all.set(p, at), (at += p.length));
    return [n, all];
  }));
}

const logits = async (model: Model, batches: CalibrationBatch[]) => (await fetchOn(model, [model.output], batches)).get(model.output)!;

function maxAbsDiff(a: Float32Array, b: Float32Array): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) [diff, scale] = [Math.max(diff, Math.abs(a[i] - b[i])), Math.max(scale, Math.abs(a[i]))];
  return { diff, scale };
}

const tinyZoo = (kind: 'gpt' | 'llama'): Model => (kind === 'gpt' ? gpt : llama)({ vocabSize: 64, layers: 2, heads: 2, dim: 32, context: 16, seed: 3 });
const imported = (name: string): Model => importForTraining(path.join(import.meta.dirname, '..', 'fixtures', `${name}.onnx`), {}, name === 'torch_llama_style' ? { context: 8 } : {});

test('input scales folded into norms, Linears (through SiLU(gate) * up) and explicit Muls leave the float outputs unchanged (1e-5)', async () => {
  for (const [name, model] of [['gpt', tinyZoo('gpt')], ['llama', tinyZoo('llama')], ['torch_nanogpt', imported('torch_nanogpt')], ['torch_llama_style', imported('torch_llama_style')]] as const) {
    const context = model.lm!.context;
    const batches = calibrationWindows(model, randomStream(model.lm!.vocabSize, 400, 1), 4, context);
    const reference = await logits(model, batches);
    const groups = scaleGroups(linearTargets(model, ptqConfig(lmConfig('w4a16-g32'))).targets);
    let seed = 7;
    const scaled = groups.map((group) => ({ group, s: Float64Array.from({ length: group.channels }, () => ((seed = (seed * 48271) % 2147483647), 0.25 * 16 ** (seed / 2147483647))) }));
    for (const explicit of [false, true]) {
      const { model: folded, folds } = applyInputScales(model, scaled, { explicit });
      const { diff, scale } = maxAbsDiff(await logits(folded, batches), reference);
      assert.ok(diff <= 1e-5 * Math.max(1, scale), `${name} (explicit ${explicit}): logits moved by ${diff} (max |logit| ${scale})`);
      if (explicit) assert.ok(folds.includes('explicit'), `${name}: ${folds.join()}`);
      // The scaled weights really changed (a fold that did nothing would pass the check above).
      const changed = groups.flatMap((g) => g.targets).filter((t) => folded.graph.initializers.get(t.tensor)!.data !== model.graph.initializers.get(t.tensor)!.data);
      assert.ok(changed.length > 0, `${name}: no weight was scaled`);
    }
    const folds = applyInputScales(model, scaled, { explicit: false }).folds;
    assert.ok(folds.includes('norm'), `${name}: ${folds.join()}`);
    if (name === 'llama' || name === 'torch_llama_style') assert.ok(folds.includes('linear'), `${name}: the down projection's scale folds into the up projection (${folds.join()})`);
  }
});

test('AWQ and SmoothQuant: the float model with their scales folded computes the fp32 function (1e-5), on the zoo and imported decoders', async () => {
  const cases: [string, Model, string, 'awq' | 'smoothquant'][] = [
    ['gpt (trained)', trained, 'w4a16-g32', 'awq'],
    ['gpt (trained)', trained, 'w8a8', 'smoothquant'],
    ['llama', tinyZoo('llama'), 'w3a16-g32', 'awq'],
    ['llama', tinyZoo('llama'), 'w8a8', 'smoothquant'],
    ['torch_nanogpt', imported('torch_nanogpt'), 'w4a16-g32', 'awq'],
    ['torch_llama_style', imported('torch_llama_style'), 'w8a8', 'smoothquant'],
  ];
  for (const [name, model, preset, method] of cases) {
    const batches = model === trained ? calib.slice(0, 2) : calibrationWindows(model, randomStream(model.lm!.vocabSize, 400, 2), 8, model.lm!.context);
    const r = await quantizeLanguageModelPtq(model, lmConfig(preset), batches, { method, preset, threads: 1 });
    const { diff, scale } = maxAbsDiff(await logits(r.float!, batches), await logits(model, batches));
    assert.ok(diff <= 1e-5 * Math.max(1, scale), `${name} ${method}: logits moved by ${diff}`);
    assert.ok(r.layers.some((l) => l.fold && l.fold !== 'none'), `${name} ${method}: no group was scaled`);
  }
});

test("AWQ's output MSE on each layer group is at or below RTN's (ONNX Runtime, only that group quantized)", async () => {
  const { targets } = linearTargets(trained, ptqConfig(lmConfig('w3a16-g32')));
  const groups = scaleGroups(targets);
  assert.ok(groups.length >= 4, `${groups.length} groups`);
  let better = 0;
  for (const group of groups) {
    const layers = group.targets.map((t) => t.layer);
    // Only this group's Linears are quantized: their inputs are the float model's, so the outputs compare the weights.
    const config: QatConfig = { ...lmConfig('w3a16-g32'), overrides: [...layers.map((match) => ({ match })), { match: '*', skip: true }] };
    const outputs = layers.map((l) => trained.graph.nodes.find((n) => n.name === l)!.outputs[0]);
    const awq = await quantizeLanguageModelPtq(trained, config, calib, { method: 'awq', threads: 1 });
    const rtn = await quantizeLanguageModelPtq(trained, config, calib, { method: 'rtn', threads: 1 });
    const [ref, a, r] = await Promise.all([trained, awq.model, rtn.model].map((m) => fetchOn(m, outputs, calib.slice(0, 8))));
    let [ea, er] = [0, 0];
    for (const o of outputs) {
      const [x, y, z] = [ref.get(o)!, a.get(o)!, r.get(o)!];
      for (let i = 0; i < x.length; i++) (ea += (y[i] - x[i]) ** 2), (er += (z[i] - x[i]) ** 2);
    }
    assert.ok(ea <= er * (1 + 1e-6), `${layers.join('+')}: AWQ ${ea} > RTN ${er}`);
    if (ea < er * 0.99) better++;
  }
  assert.ok(better >= 2, `AWQ improved on ${better} of ${groups.length} groups`);
});

test('GPTQ has a lower validation loss than RTN at 3 and 2 bits (groups of 32) on a briefly trained gpt', async () => {
  const windows = calibrationWindows(trained, text.train, 128, CONTEXT); // the CLI's default
  for (const preset of ['w3a16-g32', 'w2a16-g32']) {
    const gptq = await quantizeLanguageModelPtq(trained, lmConfig(preset), windows, { method: 'gptq', preset, threads: 1 });
    const rtn = await quantizeLanguageModelPtq(trained, lmConfig(preset), calib, { method: 'rtn', preset, threads: 1 });
    const [g, r] = [await evaluateLanguageModel(gptq.model, text.val, CONTEXT, { threads: 1 }), await evaluateLanguageModel(rtn.model, text.val, CONTEXT, { threads: 1 })];
    assert.ok(g.val_loss < r.val_loss, `${preset}: GPTQ ${g.val_loss} vs RTN ${r.val_loss}`);
    // Each layer's own reconstruction error is below RTN's as well.
    for (const l of gptq.layers) assert.ok(l.error! <= l.rtn_error!, `${preset} ${l.tensor}: ${l.error} > ${l.rtn_error}`);
    assert.deepEqual([gptq.model.quant?.method, gptq.model.quant?.calib], ['ptq', 'gptq']);
  }
});

test("a PTQ model's fake-quant forward equals QAT's at the same scales bit for bit (w4a8-g32: per-group weights, per-token activations)", async () => {
  const config = lmConfig('w4a8-g32');
  const qat = prepareLanguageModelQat(trained, config, 'w4a8-g32');
  // Every weight quantizer of a Linear (the position table is read by a Gather only: RTN for every method).
  const readByGatherOnly = (layers: string[]) => layers.every((l) => trained.graph.nodes.find((n) => n.name === l)?.opType === 'Gather');
  const weights = qat.quant!.quantizers.filter((q) => q.role === 'weight' && !readByGatherOnly(q.layers));
  const values = await fetchValues(qat, weights.map((q) => q.scale!), 1);
  const { targets } = linearTargets(trained, ptqConfig(config));
  assert.equal(targets.length, weights.length, 'every weight quantizer of a Linear is a target');
  const fixes = targets.map((t) => {
    const q = weights.find((w) => w.tensor === t.tensor)!;
    const grid = weightGrid(t.spec, t.cols, t.tensor);
    const layout = scaleLayout(trained.graph.initializers.get(t.tensor)!.dims, q.spec);
    const qatScales = values.get(q.scale!)!.data as Float32Array;
    const groups = t.cols / grid.groupSize;
    const scales = Float32Array.from({ length: t.rows * groups }, (_, i) => qatScales[layout.index(storedIndex(t, Math.floor(i / groups), (i % groups) * grid.groupSize))]);
    const w = trained.graph.initializers.get(t.tensor)!;
    const matrix = Float64Array.from({ length: t.rows * t.cols }, (_, i) => (w.data as Float32Array)[storedIndex(t, Math.floor(i / t.cols), i % t.cols)]);
    return { target: t, result: quantizeAtScales(matrix, t.rows, t.cols, grid, scales, new Int32Array(scales.length)) };
  });
  const ptq = fixWeightQuantizers(quantizeLanguageModelRtn(trained, config, 'w4a8-g32'), fixes);
  const [a, b] = [await logits(qat, calib.slice(0, 4)), await logits(ptq, calib.slice(0, 4))];
  assert.ok(a.every((v, i) => Object.is(v, b[i])), 'logits differ');
  // The learned scales are not RTN's, so the comparison is not RTN against RTN.
  const rtn = await logits(quantizeLanguageModelRtn(trained, config, 'w4a8-g32'), calib.slice(0, 4));
  assert.ok(rtn.some((v, i) => v !== a[i]));
});

test('GPTQ and AWQ weights sit on their own grid: FakeQuantize returns the frozen weights unchanged (zoo and imported decoders, act-order too)', async () => {
  const cases: [string, Model, string, 'gptq' | 'awq', boolean][] = [
    ['gpt', trained, 'w4a16-g32', 'gptq', true],
    ['llama', tinyZoo('llama'), 'w8a8', 'gptq', false],
    ['torch_nanogpt', imported('torch_nanogpt'), 'w3a16-g32', 'gptq', false],
    ['torch_llama_style', imported('torch_llama_style'), 'w4a16-g32', 'awq', false],
  ];
  for (const [name, model, preset, method, actOrder] of cases) {
    const batches = model === trained ? calib.slice(0, 4) : calibrationWindows(model, randomStream(model.lm!.vocabSize, 400, 3), 8, model.lm!.context);
    const r = await quantizeLanguageModelPtq(model, lmConfig(preset), batches, { method, preset, actOrder, threads: 1 });
    const fixed = r.model.quant!.quantizers.filter((q) => q.role === 'weight' && q.scale?.endsWith('/ptq_scale'));
    assert.ok(fixed.length >= r.layers.length - 1 && fixed.length > 0, `${name}: ${fixed.length} frozen quantizers`);
    const values = await fetchValues(r.model, fixed.map((q) => q.output), 1);
    for (const q of fixed) assert.deepEqual(values.get(q.output)!.data, r.model.graph.initializers.get(q.tensor)!.data, `${name} ${q.tensor}`);
    const out = await logits(r.model, batches.slice(0, 1));
    assert.ok(out.every(Number.isFinite), name);
  }
});

test('SmoothQuant is refused on weight-only presets naming w8a8; GPTQ/AWQ on b158 name rtn; --act-order only with GPTQ', async () => {
  const batches = calib.slice(0, 1);
  await assert.rejects(quantizeLanguageModelPtq(trained, lmConfig('w4a16-g32'), batches, { method: 'smoothquant', preset: 'w4a16-g32' }), /--method smoothquant: .*applies to w8a8.*'w4a16-g32' has 4-bit weights and float activations: use --quant w8a8/);
  await assert.rejects(quantizeLanguageModelPtq(trained, lmConfig('b158'), batches, { method: 'gptq', preset: 'b158' }), /--method gptq: 'b158' has ternary weights.*use --method rtn/);
  await assert.rejects(quantizeLanguageModelPtq(trained, lmConfig('w4a16-g32'), batches, { method: 'awq', actOrder: true }), /--act-order applies to --method gptq only/);
  assert.throws(() => calibrationWindows(trained, text.train, 0, CONTEXT), /--calib-windows must be an integer in 1\.\.4096, got 0/);
});

