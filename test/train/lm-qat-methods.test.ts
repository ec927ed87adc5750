import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { checkGradient } from '../../src/autodiff/check';
import { tokenDistillationKl } from '../../src/train/data-free-distill';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { b158LearningRate, languageModelPhases } from '../../src/train/lm-phases';
import { scratchDir } from '../helpers/scratch.js';

const tmp = () => scratchDir('qatkit-lm-methods-');
const TINY: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 32, context: 16, steps: 6, batch: 4, lr: 3e-3, threads: 1, evalEvery: 0, checkpointEvery: 0, warmupSteps: 1 };

let fp32Dir: string | undefined;
/** One tiny fp32 gpt run shared by the tests that fine-tune from it. */
async function fp32Run(): Promise<string> {
  if (fp32Dir) return fp32Dir;
  fp32Dir = path.join(tmp(), 'fp32');
  await train({ ...TINY, steps: 8 }, fp32Dir);
  return fp32Dir;
}

/** Every initializer and optimizer tensor of two runs' checkpoints, bit for bit. */
function assertSameState(a: string, b: string): void {
  const [x, y] = [loadCheckpoint(path.join(a, 'checkpoint.qat')), loadCheckpoint(path.join(b, 'checkpoint.qat'))];
  assert.equal(x.step, y.step);
  assert.deepEqual([...x.model.graph.initializers.keys()].sort(), [...y.model.graph.initializers.keys()].sort());
  for (const [name, t] of x.model.graph.initializers) assert.deepEqual(t.data, y.model.graph.initializers.get(name)!.data, `initializer ${name} differs`);
  assert.deepEqual([...x.optimizerState.keys()].sort(), [...y.optimizerState.keys()].sort());
  for (const [name, t] of x.optimizerState) assert.deepEqual(t.data, y.optimizerState.get(name)!.data, `optimizer state ${name} differs`);
}

/** metrics.json of two runs, machine-measured fields (times, memory, directory) left out. */
function sameMetrics(a: string, b: string): void {
  const read = (d: string) => {
    const m = JSON.parse(fs.readFileSync(path.join(d, 'metrics.json'), 'utf8'));
    for (const k of ['ms_per_step_median', 'tokens_per_second', 'peak_rss_mb', 'run_dir']) delete m[k];
    for (const p of m.phases ?? []) delete p.ms_per_step_median;
    return m;
  };
  assert.deepEqual(read(b), read(a));
}

/** An uninterrupted run and one stopped at `stopAt` then resumed end in the same state and metrics. */
async function assertExactResume(config: TrainConfig, stopAt: number): Promise<{ straight: string; split: string }> {
  const [straight, split] = [path.join(tmp(), 'a'), path.join(tmp(), 'b')];
  await train(config, straight);
  await train(config, split, { stopAtStep: stopAt });
  await train({} as TrainConfig, split, { resume: true });
  assertSameState(straight, split);
  sameMetrics(straight, split);
  return { straight, split };
}

test('token distillation KL over [B, T, V] logits: gradient matches finite differences at T = 1 and T = 2', async () => {
  for (const temperature of [1, 2]) {
    const r = await checkGradient({ name: `token KL T=${temperature}`, inputs: [{ shape: [2, 3, 5] }, { shape: [2, 3, 5], differentiable: false }], build: (b, [s, t]) => tokenDistillationKl(b, s, t, temperature) });
    assert.ok(r.relativeError < 1e-6, JSON.stringify(r));
  }
});

test('--distill on LM QAT: weight 1 trains on KL to the fp32 model alone (near 0 at w8a8, far below the cross-entropy), and resumes exactly', async () => {
  const from = await fp32Run();
  const base = { ...TINY, model: 'lenet', data: 'mnist', from, quant: 'w8a8', steps: 4, lr: 3e-4, weightDecay: 0 } as TrainConfig;
  const plain = await train(base, path.join(tmp(), 'plain'));
  const distilled = await train({ ...base, distill: { weight: 1, temperature: 1 } }, path.join(tmp(), 'distill'));
  // The w8a8 student starts as the teacher up to rounding: its KL is tiny, its cross-entropy is the model's loss (~5 nats).
  assert.ok(distilled.losses[0] < 0.05, `KL at step 1: ${distilled.losses[0]}`);
  assert.ok(plain.losses[0] > 2, `cross-entropy at step 1: ${plain.losses[0]}`);
  await assertExactResume({ ...base, distill: { weight: 0.5, temperature: 2 } }, 2);
});

test('b158 from scratch: lr decays by cosine to 8/15 of the peak in stage 1, drops to 1/3 at the midpoint, decays to 0; weight decay 0 in stage 2', () => {
  const lr = (s: number) => b158LearningRate(1, 0, s, 100);
  assert.equal(lr(0), 1);
  assert.ok(Math.abs(lr(49) - (8 / 15 + (7 / 15) * 0.5 * (1 + Math.cos(Math.PI * 49 / 50)))) < 1e-12);
  assert.ok(lr(49) > 8 / 15 && lr(49) < 0.54);
  assert.ok(Math.abs(lr(50) - 1 / 3) < 1e-12, 'the drop at the midpoint');
  assert.ok(lr(99) < 0.001 && lr(99) > 0);
  for (let s = 1; s < 100; s++) assert.ok(lr(s) <= lr(s - 1) + 1e-15, `non-increasing at ${s}`);
  assert.equal(b158LearningRate(1, 10, 4, 100), 0.5, 'linear warmup first');
  const phases = languageModelPhases({ ...TINY, quant: 'b158', weightDecay: 0.1, steps: 100 }, 100);
  assert.deepEqual(phases.map((p) => [p.start, p.end, p.weightDecay, p.continueOptimizer]), [[0, 50, undefined, true], [50, 100, 0, true]]);
  // Fine-tuning with --from keeps the run's own schedule (one phase).
  assert.equal(languageModelPhases({ ...TINY, quant: 'b158', from: '/x', steps: 100 }, 100).length, 1);
});

test('b158 from scratch runs its two stages (the history shows the lr drop) and resumes exactly across the midpoint', async () => {
  const config: TrainConfig = { ...TINY, quant: 'b158', weightDecay: 0.1, steps: 6 };
  const { straight } = await assertExactResume(config, 2);
  const m = JSON.parse(fs.readFileSync(path.join(straight, 'metrics.json'), 'utf8'));
  const lrs = m.history.map((p: { lr: number }) => p.lr);
  assert.ok(Math.abs(lrs[3] - config.lr / 3) < 1e-12, `stage 2 starts at a third of the peak: ${lrs}`);
  assert.deepEqual(m.phases.map((p: { name: string; start: number; end: number }) => [p.name, p.start, p.end]), [['b158 stage 1', 0, 3], ['b158 stage 2', 3, 6]]);
});

test('LoRA adapters start at zero (the QAT forward unchanged), only A and B are parameters, and the step graph computes no base-weight gradient', async () => {
  const { gpt } = await import('../../src/models/transformers');
  const { prepareLanguageModelQat } = await import('../../src/quant/qat');
  const { presetConfig } = await import('../../src/quant/presets');
  const { addLoraAdapters } = await import('../../src/quant/lora');
  const { buildTrainStep } = await import('../../src/train/step-graph');
  const { evaluateLanguageModel } = await import('../../src/train/evaluate-language-model');
  const { loadTextData } = await import('../../src/data/text');
  const qat = prepareLanguageModelQat(gpt({ vocabSize: 256, layers: 1, heads: 2, dim: 32, context: 16 }), presetConfig('w4a8-g32', 'language-model'), 'w4a8-g32');
  const lora = addLoraAdapters(qat, { rank: 4, seed: 0 });
  // qkv, attention output, MLP fc and proj: four Linears, two adapters each; the tied table takes none.
  assert.equal(lora.quant!.lora!.adapters.length, 4);
  assert.equal(lora.params.length, 8);
  assert.ok(lora.params.every((p) => /lora_[ab]$/.test(p)));
  assert.deepEqual(lora.quant!.lora!.frozen, qat.params);
  const text = loadTextData('moby-dick', 'bytes');
  const val = { ...text.val, tokens: text.val.tokens.subarray(0, 16 * 17) };
  const [a, b] = [await evaluateLanguageModel(qat, val, 16, { threads: 1 }), await evaluateLanguageModel(lora, val, 16, { threads: 1 })];
  assert.equal(b.val_loss, a.val_loss, 'B = 0: the adapted model is the QAT model');
  const opt = { kind: 'adamw' as const, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 };
  // Batch 3 x 16 tokens: no activation [B * T, C] has a weight's shape.
  const full = buildTrainStep(qat, { batchSize: 3, classes: 0, sequenceLength: 16, optimizer: opt });
  const adapted = buildTrainStep(lora, { batchSize: 3, classes: 0, sequenceLength: 16, optimizer: opt });
  assert.deepEqual(adapted.carried.filter((c) => c.kind === 'param').map((c) => c.input).sort(), [...lora.params].sort());
  // Weight-gradient values (2-D, a base weight's shape) exist in the full QAT step and none in the LoRA step.
  const weightShapes = new Set(lora.quant!.lora!.adapters.map((ad) => String(qat.graph.typeOf(ad.weight).shape)));
  const weightGrads = (g: typeof full.graph) => g.nodes.filter((n) => n.name.startsWith('grad/') && ['MatMul', 'Gemm'].includes(n.opType) && n.outputs.some((o) => g.types.has(o) && g.typeOf(o).shape.length === 2 && weightShapes.has(String(g.typeOf(o).shape)))).length;
  assert.ok(weightGrads(full.graph) >= 4, `full QAT: ${weightGrads(full.graph)} weight-gradient values`);
  assert.equal(weightGrads(adapted.graph), 0);
  assert.ok(!adapted.graph.nodes.some((n) => n.outputs.some((o) => /^grad\/.*quant_scale/.test(o))), 'no step-size gradient');
});

test('merging LoRA adapters folds W + (alpha / r) A B into each base weight and makes every QAT parameter trainable again', async () => {
  const { gpt } = await import('../../src/models/transformers');
  const { prepareLanguageModelQat } = await import('../../src/quant/qat');
  const { presetConfig } = await import('../../src/quant/presets');
  const { addLoraAdapters, mergeLoraAdapters } = await import('../../src/quant/lora');
  const { Rng } = await import('../../src/train/rng');
  const qat = prepareLanguageModelQat(gpt({ vocabSize: 256, layers: 1, heads: 2, dim: 32, context: 16 }), presetConfig('w4a16-g32', 'language-model'), 'w4a16-g32');
  const lora = addLoraAdapters(qat, { rank: 2, alpha: 3, seed: 1 });
  const rng = new Rng(5);
  for (const ad of lora.quant!.lora!.adapters) {
    const t = lora.graph.initializers.get(ad.b)!;
    (t.data as Float32Array).forEach((_, i, arr) => (arr[i] = rng.range(-1, 1)));
  }
  const merged = mergeLoraAdapters(lora);
  assert.deepEqual(merged.params, qat.params);
  assert.equal(merged.quant!.lora, undefined);
  assert.equal(merged.graph.nodes.length, qat.graph.nodes.length, 'the adapter branches are gone');
  assert.ok(![...merged.graph.initializers.keys()].some((n) => n.includes('lora')));
  for (const ad of lora.quant!.lora!.adapters) {
    const w = lora.graph.initializers.get(ad.weight)!;
    const [fanIn, fanOut] = w.dims;
    const A = lora.graph.initializers.get(ad.a)!.data as Float32Array;
    const B = lora.graph.initializers.get(ad.b)!.data as Float32Array;
    const got = merged.graph.initializers.get(ad.weight)!.data as Float32Array;
    for (const [i, o] of [[0, 0], [fanIn - 1, fanOut - 1], [3, 7]]) {
      const d = A[i * 2] * B[o] + A[i * 2 + 1] * B[fanOut + o];
      assert.ok(Math.abs(got[i * fanOut + o] - ((w.data as Float32Array)[i * fanOut + o] + 1.5 * d)) < 1e-6, `${ad.weight}[${i}, ${o}]`);
    }
  }
});

test('QAT + LoRA run: adapters then the merged model (full QAT at the trained scales); resumes exactly inside and across the merge; export refuses an unmerged run', async () => {
  const from = await fp32Run();
  const config = { ...TINY, model: 'lenet', data: 'mnist', from, quant: 'w4a8-g32', steps: 6, lr: 1e-3, weightDecay: 0, lora: { rank: 4, mergeSteps: 2 } } as TrainConfig;
  const { straight } = await assertExactResume(config, 2);
  const m = JSON.parse(fs.readFileSync(path.join(straight, 'metrics.json'), 'utf8'));
  assert.deepEqual(m.phases.map((p: { name: string; start: number; end: number }) => [p.name, p.start, p.end]), [['lora', 0, 4], ['lora merged', 4, 6]]);
  const done = loadCheckpoint(path.join(straight, 'checkpoint.qat'));
  assert.equal(done.model.quant!.lora, undefined, 'a finished run holds the merged model');
  assert.ok(!done.model.params.some((p) => p.includes('lora')));
  // Stopped across the merge boundary too.
  const split = path.join(tmp(), 'c');
  await train(config, split, { stopAtStep: 4 });
  const stopped = loadCheckpoint(path.join(split, 'checkpoint.qat'));
  assert.ok(stopped.model.quant!.lora, 'stopped before the merge: adapters apart');
  const { exportLanguageModelRun } = await import('../../src/export/export-language-model');
  await assert.rejects(exportLanguageModelRun(stopped, { from: split, format: 'fp32', threads: 1 } as never), /LoRA adapters not merged yet.*--resume/);
  await train({} as TrainConfig, split, { resume: true });
  assertSameState(straight, split);
});

test('EfficientQAT finds each block\'s parameters and residual output; a Block-AP step model ends at that output and trains only that block', async () => {
  const { gpt } = await import('../../src/models/transformers');
  const { prepareLanguageModelQat } = await import('../../src/quant/qat');
  const { presetConfig } = await import('../../src/quant/presets');
  const { transformerBlocks, blockApModel, stepSizeModel } = await import('../../src/train/efficient-qat');
  const qat = prepareLanguageModelQat(gpt({ vocabSize: 256, layers: 2, heads: 2, dim: 32, context: 16 }), presetConfig('w4a16-g32', 'language-model'), 'w4a16-g32');
  const blocks = transformerBlocks(qat);
  assert.deepEqual(blocks.map((b) => b.index), [0, 1]);
  assert.ok(blocks.every((b) => b.params.every((p) => p.startsWith(`blocks.${b.index}.`))));
  // The stream after block 0 is what block 1's first LayerNorm reads.
  const ln1 = qat.graph.nodes.find((n) => n.opType === 'LayerNormalization' && n.inputs[1] === 'blocks.1.ln_1.weight')!;
  assert.equal(ln1.inputs[0], blocks[0].output);
  const sub = blockApModel(qat, blocks[1]);
  assert.equal(sub.output, blocks[1].output);
  assert.ok(!sub.graph.nodes.some((n) => n.inputs.includes('ln_f.weight')), 'cut before the final norm and head');
  assert.ok(sub.params.some((p) => p.endsWith('quant_scale')) && sub.params.every((p) => p.startsWith('blocks.1.')), sub.params.join());
  const e2e = stepSizeModel(qat);
  assert.ok(e2e.params.length > 0 && e2e.params.every((p) => p.endsWith('/quant_scale')));
});

test('EfficientQAT run: Block-AP block by block (MSE to the fp32 block, only that block changes), then E2E-QP (only step sizes change); resumes exactly', async () => {
  const from = path.join(tmp(), 'fp32-2');
  await train({ ...TINY, layers: 2, steps: 6 }, from);
  const config = { ...TINY, model: 'lenet', data: 'mnist', from, quant: 'w4a16-g32', steps: 6, lr: 1e-3, weightDecay: 0, method: 'efficientqat', blockApSteps: 2 } as TrainConfig;
  const { straight } = await assertExactResume(config, 3);
  const m = JSON.parse(fs.readFileSync(path.join(straight, 'metrics.json'), 'utf8'));
  assert.deepEqual(m.phases.map((p: { name: string; start: number; end: number }) => [p.name, p.start, p.end]), [['efficientqat block-ap 0', 0, 2], ['efficientqat block-ap 1', 2, 4], ['efficientqat e2e-qp', 4, 6]]);
  // Block-AP's loss is the block MSE (small, not ~5 nats of next-token cross-entropy); E2E-QP's is the LM loss.
  const hist = m.history as { train_loss: number }[];
  assert.ok(hist[0].train_loss < 0.5 && hist[4].train_loss > 2, hist.map((p) => p.train_loss).join());
  const at = async (stop: number) => {
    const dir = path.join(tmp(), `stop${stop}`);
    await train(config, dir, { stopAtStep: stop });
    return loadCheckpoint(path.join(dir, 'checkpoint.qat')).model.graph.initializers;
  };
  const fp32 = loadCheckpoint(path.join(from, 'checkpoint.qat')).model.graph.initializers;
  const [after2, after4] = [await at(2), await at(4)];
  const end = loadCheckpoint(path.join(straight, 'checkpoint.qat')).model.graph.initializers;
  const same = (a: Map<string, { data: unknown }>, b: Map<string, { data: unknown }>, n: string) => assert.deepEqual(a.get(n)!.data, b.get(n)!.data, n);
  const differ = (a: Map<string, { data: unknown }>, b: Map<string, { data: unknown }>, n: string) => assert.notDeepEqual(a.get(n)!.data, b.get(n)!.data, n);
  differ(after2, fp32, 'blocks.0.mlp.fc.weight');
  same(after2, fp32, 'blocks.1.mlp.fc.weight');
  differ(after4, after2, 'blocks.1.mlp.fc.weight');
  same(after4, after2, 'blocks.0.mlp.fc.weight');
  for (const n of ['blocks.0.mlp.fc.weight', 'blocks.1.attn.qkv.weight', 'wte.weight']) same(end, after4, n);
  differ(end, after4, 'blocks.1.mlp.fc.weight/quant_scale');
  same(end, fp32, 'wte.weight');
});

test('EfficientQAT on w8a8 trains LSQ step sizes in place of the min/max weight scales; other methods keep the preset', async () => {
  const { languageModelQatConfig } = await import('../../src/train/run-language-model');
  const { stepSizeModel } = await import('../../src/train/efficient-qat');
  const { gpt } = await import('../../src/models/transformers');
  const { prepareLanguageModelQat } = await import('../../src/quant/qat');
  const w8 = (method?: string) => languageModelQatConfig({ ...TINY, quant: 'w8a8', ...(method ? { method } : {}) } as TrainConfig)!;
  assert.deepEqual([w8('efficientqat').weight.method, w8('efficientqat').weight.bits, w8('efficientqat').activation.method], ['lsq', 8, 'absmax']);
  assert.equal(w8().weight.method, 'minmax');
  assert.equal(languageModelQatConfig({ ...TINY, quant: 'b158', method: 'efficientqat' } as TrainConfig)!.weight.method, 'ternary');
  const e2e = stepSizeModel(prepareLanguageModelQat(gpt({ vocabSize: 64, layers: 1, heads: 2, dim: 32, context: 16, seed: 0 }), w8('efficientqat'), 'w8a8'));
  assert.ok(e2e.params.length > 0, 'w8a8 under efficientqat has step sizes to train');
});

test('method flags are refused where they would be ignored, naming the flag and what is needed', async () => {
  const { checkApplicableFlags } = await import('../../src/cli/train-flags');
  const { planTrain } = await import('../../src/train/run');
  const check = (o: Record<string, unknown>) => () => checkApplicableFlags({ data: 'moby-dick', model: 'gpt', ...o }, (k) => k in o);
  assert.throws(check({ loraRank: 4 }), /--lora-rank does not apply without --quant/);
  assert.throws(check({ quant: 'w4a8-g32', loraAlpha: 8 }), /--lora-alpha does not apply without --lora-rank/);
  assert.throws(check({ quant: 'w4a8-g32', blockApSteps: 2 }), /--block-ap-steps does not apply without --method efficientqat/);
  assert.throws(check({ quant: 'w4a8-g32', method: 'efficientqat', loraRank: 4 }), /choose one method/);
  assert.throws(() => checkApplicableFlags({ data: 'mnist', model: 'lenet', quant: 'w4a4', loraRank: 4 }, (k) => ['quant', 'loraRank'].includes(k)), /--lora-rank does not apply to image data/);
  const from = await fp32Run();
  const qat = { ...TINY, model: 'lenet', data: 'mnist', from, quant: 'w4a8-g32', steps: 4 } as TrainConfig;
  await assert.rejects(planTrain({ ...qat, lora: { rank: 4, mergeSteps: 4 } }, path.join(tmp(), 'x')), /--lora-merge-steps 4 must be smaller than --steps 4/);
  await assert.rejects(planTrain({ ...qat, method: 'efficientqat', blockApSteps: 4 }, path.join(tmp(), 'y')), /leave no E2E-QP step within --steps 4/);
  await assert.rejects(planTrain({ ...TINY, lora: { rank: 4 }, quant: 'w4a8-g32' }, path.join(tmp(), 'z')), /--lora-rank needs --from LM_RUN/);
});
