import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import { gpt, llama, swigluHidden } from '../../src/models/transformers';
import { Model, parameterCount } from '../../src/models/model';
import { Session } from '../../src/runtime/session';
import { Trainer } from '../../src/train/trainer';
import { defaultOptimizer } from '../../src/train/optimizer';
import { Rng } from '../../src/train/rng';
import { DEFAULT_TRAIN_CONFIG, train, TrainConfig } from '../../src/train/run';
import { differentiate } from '../../src/autodiff/grad';
import { scratchDir } from '../helpers/scratch.js';

const tiny = { vocabSize: 32, layers: 2, heads: 2, dim: 16, context: 8 };
const tmp = () => scratchDir('qatkit-lm-');

function tokens(rows: number, length: number, seed: number, vocab = tiny.vocabSize): BigInt64Array {
  const rng = new Rng(seed);
  return BigInt64Array.from({ length: rows * length }, () => BigInt(rng.int(vocab)));
}

async function logits(model: Model, ids: BigInt64Array, rows: number, length: number): Promise<Float32Array> {
  const session = await Session.create(model.graph, { threads: 1 });
  const out = await session.run({ [model.input]: new ort.Tensor('int64', ids, [rows, length]) }, [model.output]);
  await session.release();
  return out[model.output].data as Float32Array;
}

test('the default gpt has 0.84M parameters with the byte vocabulary, its head tied to the token embedding', () => {
  const m = gpt({ vocabSize: 256 });
  assert.equal(parameterCount(m), 842496);
  assert.ok(!m.params.some((p) => p.includes('lm_head')), 'a tied head adds no parameter');
  assert.equal(m.graph.nodes.filter((n) => n.inputs.includes('wte.weight')).length, 2, 'the table feeds the Gather and the head');
});

test('llama has a SwiGLU hidden width of 8/3 x width rounded up to 32, no biases, and an untied head', () => {
  assert.equal(swigluHidden(128), 352);
  const m = llama({ vocabSize: 256 });
  assert.ok(m.params.includes('lm_head.weight'));
  assert.ok(!m.params.some((p) => p.endsWith('.bias')));
  assert.deepEqual(m.graph.initializers.get('layers.0.mlp.gate_proj.weight')!.dims, [128, 352]);
});

for (const build of [gpt, llama]) {
  test(`${build.name}: one graph runs at any batch and length, and position t never sees tokens after t`, async () => {
    const m = build(tiny);
    const ids = tokens(2, 6, 1);
    const full = await logits(m, ids, 2, 6);
    // Change the last token of each row: the logits of the first five positions must not move.
    const changed = BigInt64Array.from(ids);
    changed[5] = (changed[5] + 1n) % 32n;
    changed[11] = (changed[11] + 1n) % 32n;
    const other = await logits(m, changed, 2, 6);
    const v = tiny.vocabSize;
    for (let row = 0; row < 2; row++) {
      for (let i = 0; i < 5 * v; i++) assert.ok(Math.abs(full[row * 6 * v + i] - other[row * 6 * v + i]) < 1e-6, `row ${row} value ${i}`);
    }
    const shorter = await logits(m, ids.subarray(0, 3), 1, 3);
    for (let i = 0; i < 3 * v; i++) assert.ok(Math.abs(shorter[i] - full[i]) < 1e-5, 'a prefix gives the same logits');
  });
}

test('the tied embedding is one parameter whose gradient sums the lookup and the head', () => {
  const m = gpt(tiny);
  const g = m.graph.clone();
  const grads = differentiate(g, { loss: sumOfLogits(g, m.output), wrt: ['wte.weight'] });
  const dTable = grads.get('wte.weight')!;
  const producers = g.producers();
  // Both paths reach the table: an accumulation node (Add or Sum) combines them.
  const producer = producers.get(dTable)!;
  assert.ok(['Add', 'Sum'].includes(producer.opType), `the gradient is accumulated (got ${producer.opType})`);
});

function sumOfLogits(g: Model['graph'], output: string): string {
  const name = 'sum_of_logits';
  g.nodes.push({ opType: 'ReduceSum', domain: '', name, inputs: [output], outputs: [name], attrs: { keepdims: { kind: 'int', value: 0 } } });
  g.types.set(name, { dtype: 1, shape: [] });
  return name;
}

test('training steps lower the loss on a repeated batch', async () => {
  const m = gpt(tiny);
  const trainer = await Trainer.create(m, { batchSize: 4, classes: 0, sequenceLength: 8, optimizer: { ...defaultOptimizer('adamw'), beta2: 0.95 }, threads: 1 });
  const ids = tokens(4, 9, 3);
  for (let r = 0; r < 4; r++) for (let t = 0; t < 8; t++) {
    trainer.batchTokens[r * 8 + t] = ids[r * 9 + t];
    trainer.batchLabels[r * 8 + t] = ids[r * 9 + t + 1];
  }
  const first = await trainer.trainStep(3e-3);
  let last = first;
  for (let i = 0; i < 15; i++) last = await trainer.trainStep(3e-3);
  await trainer.release();
  assert.ok(Math.abs(first.loss - Math.log(32)) < 0.3, `initial loss ${first.loss} near ln(vocab)`);
  assert.ok(last.loss < first.loss - 0.5, `loss ${first.loss} -> ${last.loss}`);
});

test('gradient accumulation over two micro-batches equals one step on both batches together', async () => {
  const opt = { ...defaultOptimizer('adamw'), beta2: 0.95 };
  const ids = tokens(4, 9, 5);
  const fill = (trainer: Trainer, rows: number[]) => rows.forEach((r, k) => {
    for (let t = 0; t < 8; t++) {
      trainer.batchTokens[k * 8 + t] = ids[r * 9 + t];
      trainer.batchLabels[k * 8 + t] = ids[r * 9 + t + 1];
    }
  });
  const whole = await Trainer.create(gpt(tiny), { batchSize: 4, classes: 0, sequenceLength: 8, optimizer: opt, threads: 1 });
  fill(whole, [0, 1, 2, 3]);
  await whole.trainStep(1e-2);
  const split = await Trainer.create(gpt(tiny), { batchSize: 2, classes: 0, sequenceLength: 8, optimizer: opt, threads: 1, accumulate: 2 });
  fill(split, [0, 1]);
  const before = split.values('param');
  await split.trainStep(1e-2, false);
  assert.equal(split.stepCount, 0, 'a micro-batch that does not apply leaves the step count');
  for (const [name, t] of split.values('param')) assert.deepEqual(t.data, before.get(name)!.data, `${name} unchanged before the update`);
  fill(split, [2, 3]);
  await split.trainStep(1e-2, true);
  assert.equal(split.stepCount, 1);
  const a = whole.values('param');
  let worst = 0;
  for (const [name, t] of split.values('param')) {
    const ref = a.get(name)!.data as Float32Array;
    (t.data as Float32Array).forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref[i]))));
  }
  await whole.release();
  await split.release();
  assert.ok(worst < 1e-5, `parameters differ by ${worst}`);
});

test('a language-model run resumes with losses identical to an uninterrupted run', async () => {
  const text = path.join(tmp(), 'corpus.txt');
  fs.writeFileSync(text, 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse. '.repeat(20));
  const config: TrainConfig = {
    ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: text, layers: 1, heads: 2, dim: 16, context: 16, steps: 6, batch: 4,
    lr: 3e-3, warmupSteps: 2, evalEvery: 0, threads: 1,
  };
  const straight = await train(config, tmp());
  const dir = tmp();
  const first = await train(config, dir, { stopAtStep: 3 });
  const resumed = await train(config, dir, { resume: true });
  assert.deepEqual([...first.losses, ...resumed.losses], straight.losses);
  assert.equal(resumed.task, 'language-model');
  const metrics = JSON.parse(fs.readFileSync(path.join(dir, 'metrics.json'), 'utf8'));
  assert.ok(metrics.val_perplexity > 1 && Math.abs(metrics.val_perplexity - Math.exp(metrics.val_loss)) < 1e-9);
  assert.ok(fs.existsSync(path.join(dir, 'model.onnx')));
});
