import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Attr, Graph, Node } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { importForTraining } from '../../src/models/resolve';
import { classifyInitializers, importModel, importNotes, originalParameterName, tiedWeights } from '../../src/onnx/import';
import { saveModel } from '../../src/onnx/model-io';
import { Session } from '../../src/runtime/session';
import { Rng } from '../../src/train/rng';
import { Trainer } from '../../src/train/trainer';
import { scratchDir } from '../helpers/scratch.js';

// The fixtures of bench/peers/export_import_fixtures.py: what torch.onnx.export (PyTorch 1.13) writes for CNNs
// and transformers, with shapes computed at run time, and the logits PyTorch computed for a stored input.

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');
const fixture = (name: string) => path.join(FIXTURES, `${name}.onnx`);

interface Expected {
  input_name: string;
  input_dtype: 'float32' | 'int64';
  input_shape: number[];
  input: number[];
  logits_shape: number[];
  logits: number[];
  vocab_size?: number;
  context?: number;
  attention_mask?: boolean;
}
const expectedOf = (name: string): Expected => JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}_expected.json`), 'utf8'));

const temps: string[] = [];
after(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const CNNS = ['torch_cnn_view', 'torch_cnn_train_bn15', 'torch_cnn_train_bn13', 'torch_vit_style', 'torch_cnn_norms', 'torch_cnn_upsample', 'torch_rnn'];
const SEQUENCE_MODELS = ['torch_mha_causal', 'torch_nanogpt', 'torch_encoder_lm', 'torch_llama_style', 'torch_hf_gpt2', 'torch_hf_llama', 'torch_gptj', 'torch_t5_lm', 'torch_llama_mask'];
const LANGUAGE_MODELS = ['torch_nanogpt', 'torch_encoder_lm', 'torch_llama_style', 'torch_hf_gpt2', 'torch_hf_llama', 'torch_gptj', 'torch_t5_lm', 'torch_llama_mask'];
// Positions only relative or rotary from T: nothing in the file says how many the model takes.
const NO_POSITION_TABLE = ['torch_llama_style', 'torch_t5_lm', 'torch_llama_mask'];

function inputTensor(e: Expected, rows: number, length?: number): ort.Tensor {
  // The first `rows` samples; for sequences the first `length` positions of each.
  const [n, t, ...rest] = e.input_shape;
  const inner = rest.reduce((p, q) => p * q, 1);
  const keep = length ?? t;
  const values: number[] = [];
  for (let r = 0; r < rows; r++) {
    if (e.input_shape.length === 4 || length === undefined) values.push(...e.input.slice((r * e.input.length) / n, ((r + 1) * e.input.length) / n));
    else values.push(...e.input.slice(r * t * inner, (r * t + keep) * inner));
  }
  const dims = length === undefined ? [rows, ...e.input_shape.slice(1)] : [rows, keep, ...rest];
  return e.input_dtype === 'int64' ? new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), dims) : new ort.Tensor('float32', Float32Array.from(values), dims);
}

/** PyTorch's logits for the first `rows` samples (and the first `length` positions of a sequence). */
function expectedLogits(e: Expected, rows: number, length?: number): number[] {
  const [n, t] = e.logits_shape;
  const per = e.logits.length / n;
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    const row = e.logits.slice(r * per, (r + 1) * per);
    out.push(...(length === undefined ? row : row.slice(0, (per / t) * length)));
  }
  return out;
}

async function run(g: Graph, feeds: Record<string, ort.Tensor>): Promise<{ dims: readonly number[]; data: number[] }> {
  // An HF attention_mask (torch_llama_mask): all ones, as the fixture's logits were computed.
  const ids = feeds.input_ids;
  if (ids && g.inputs.some((v) => v.name === 'attention_mask')) feeds = { ...feeds, attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.data.length).fill(1n), ids.dims) };
  const session = await Session.create(g, { threads: 1 });
  try {
    const out = (await session.run(feeds))[g.outputs[0].name];
    return { dims: out.dims, data: Array.from(out.data as Float32Array) };
  } finally {
    await session.release();
  }
}

function assertClose(actual: number[], expected: number[], tolerance: number): void {
  assert.equal(actual.length, expected.length);
  const worst = Math.max(...actual.map((a, i) => Math.abs(a - expected[i])));
  assert.ok(worst <= tolerance, `max |difference| ${worst} > ${tolerance}`);
}

// ---------------- every fixture imports and computes PyTorch's logits ----------------

for (const name of [...CNNS, ...SEQUENCE_MODELS]) {
  test(`${name}: imports with symbolic dims, and ONNX Runtime gives PyTorch's logits within 1e-4`, async () => {
    const e = expectedOf(name);
    const g = importModel(fixture(name));
    assert.ok(g.outputs[0].shape.slice(0, -1).every((d) => typeof d === 'string'), `output [${g.outputs[0].shape}] keeps symbolic dims`);
    const out = await run(g, { [e.input_name]: inputTensor(e, e.input_shape[0]) });
    assert.deepEqual(out.dims, e.logits_shape);
    assertClose(out.data, e.logits, 1e-4);
    // The same graph runs at other sizes: one sample, and (causal sequence models) a prefix of the sequence.
    const length = SEQUENCE_MODELS.includes(name) ? e.input_shape[1] - 2 : undefined;
    const part = await run(g, { [e.input_name]: inputTensor(e, 1, length) });
    assertClose(part.data, expectedLogits(e, 1, length), 1e-4);
  });

  test(`${name}: with the input shape fixed, every shape computation folds into constants`, async () => {
    const e = expectedOf(name);
    const mask: Record<string, number[]> = e.attention_mask ? { attention_mask: e.input_shape } : {};
    const g = importModel(fixture(name), { inputShapes: { [e.input_name]: e.input_shape, ...mask } });
    // What the attention mask's values feed (position_ids from its cumsum, rotary angles) is run-time work.
    const fromMask = new Set(e.attention_mask ? ['attention_mask'] : []);
    for (const n of g.nodes) if (n.inputs.some((i) => fromMask.has(i))) n.outputs.forEach((o) => fromMask.add(o));
    const shapeOps = ['Shape', 'ConstantOfShape', 'Range', 'Trilu', 'Cos', 'Sin'];
    // T5's buckets cast log(0) = -inf to int64 (undefined in ONNX, so not folded; torch.where discards it): the
    // cast and what reads it stay for ONNX Runtime.
    const runtime = name === 'torch_t5_lm' ? /^\/attention\.\d\/(Cast_2|Add|Min_1|Where)$/ : /^$/;
    const left = g.nodes.filter((n) => !runtime.test(n.name) && !n.outputs.some((o) => fromMask.has(o)) && (shapeOps.includes(n.opType) || n.outputs.some((o) => [DType.INT64, DType.BOOL].includes(g.typeOf(o).dtype))));
    assert.deepEqual(left.map((n) => `${n.name} (${n.opType})`), []);
    for (const n of g.nodes.filter((m) => ['Reshape', 'Expand', 'Tile'].includes(m.opType))) assert.ok(g.initializers.has(n.inputs[1]), `${n.name} reads a constant shape`);
    assert.deepEqual(g.outputs[0].shape, e.logits_shape);
    const out = await run(g, { [e.input_name]: inputTensor(e, e.input_shape[0]) });
    assertClose(out.data, e.logits, 1e-4);
  });
}

// ---------------- training ----------------

/** A fixed random batch: images in [0, 1] and class labels, or token windows and next-token targets. */
function fillBatch(trainer: Trainer, rng: Rng, vocab = 10): void {
  if (trainer.model.task === 'language-model') {
    const ids = trainer.batchTokens;
    for (let i = 0; i < ids.length; i++) ids[i] = BigInt(Math.floor(rng.uniform() * vocab));
    const labels = trainer.batchLabels;
    for (let i = 0; i < labels.length; i++) labels[i] = BigInt(Math.floor(rng.uniform() * vocab));
  } else {
    const x = trainer.batchImages;
    for (let i = 0; i < x.length; i++) x[i] = rng.uniform();
    const labels = trainer.batchLabels;
    for (let i = 0; i < labels.length; i++) labels[i] = BigInt(i % 10);
  }
}

for (const name of [...CNNS, ...LANGUAGE_MODELS]) {
  test(`${name}: importForTraining gives a model whose training step lowers the loss on a fixed batch`, async () => {
    const model = importForTraining(fixture(name), {}, NO_POSITION_TABLE.includes(name) ? { context: 8 } : {});
    const lm = model.task === 'language-model';
    const trainer = await Trainer.create(model, {
      batchSize: 4,
      classes: 10,
      sequenceLength: lm ? 8 : undefined,
      optimizer: { kind: 'adamw' },
      threads: 1,
    });
    // The step graph has the batch (and sequence) fixed: no shape computation of the model is left for run time.
    const forward = new Set(model.graph.nodes.map((n) => n.name));
    assert.deepEqual(trainer.step.graph.nodes.filter((n) => n.opType === 'Shape' && forward.has(n.name)).map((n) => n.name), []);
    fillBatch(trainer, new Rng(1), lm ? model.lm!.vocabSize : 10);
    const losses: number[] = [];
    for (let s = 0; s < 8; s++) losses.push((await trainer.trainStep(3e-3)).loss);
    assert.ok(losses[7] < losses[0] * 0.9, `loss ${losses[0]} -> ${losses[7]}`);
  });
}

test('training-mode BatchNormalization imports as inference BN: running statistics are running statistics, the rest parameters', () => {
  for (const name of ['torch_cnn_train_bn15', 'torch_cnn_train_bn13']) {
    const model = importForTraining(fixture(name));
    assert.deepEqual([...model.runningStats].sort(), ['bn1.running_mean', 'bn1.running_var', 'bn2.running_mean', 'bn2.running_var']);
    assert.deepEqual([...model.params].sort(), ['bn1.bias', 'bn1.weight', 'bn2.bias', 'bn2.weight', 'conv1.weight', 'conv2.weight', 'fc.bias', 'fc.weight']);
    for (const n of model.graph.nodes.filter((m) => m.opType === 'BatchNormalization')) {
      assert.deepEqual([n.outputs.length, n.attrs.training_mode], [1, undefined]);
    }
    const dropout = model.graph.nodes.find((n) => n.opType === 'Dropout')!;
    assert.equal(dropout.inputs.length <= 2, true, 'Dropout has no training_mode input');
    assert.equal(importNotes(model.graph).length, 3);
  }
});

test('nn.MultiheadAttention with a causal mask trains: differentiate() and SGD steps on ONNX Runtime lower a squared error', async () => {
  const e = expectedOf('torch_mha_causal');
  const g = importModel(fixture('torch_mha_causal'), { inputShapes: { input: e.input_shape } });
  const params = classifyInitializers(g).params;
  assert.deepEqual([...params].sort(), ['attn.in_proj_bias', 'attn.out_proj.bias', 'attn.out_proj.weight', 'attn.weight', 'head.bias', 'head.weight']);
  const b = new GraphBuilder(g, 'loss/');
  const target = b.input('target', DType.FLOAT, e.logits_shape);
  const diff = b.sub(g.outputs[0].name, target);
  const loss = b.op1('ReduceMean', [b.mul(diff, diff)], { keepdims: 0 });
  const weights = params.map((p) => g.initializers.get(p)!);
  for (const p of params) g.initializers.delete(p);
  params.forEach((p, i) => b.input(p, DType.FLOAT, weights[i].dims));
  const grads = differentiate(g, { loss, wrt: params });
  g.outputs = [];
  b.output(loss);
  for (const p of params) b.output(grads.get(p)!);
  const session = await Session.create(g, { threads: 1 });
  const targetValues = Float32Array.from(e.logits, (v, i) => v + Math.sin(i));
  const values = weights.map((w) => Float32Array.from(w.data as Float32Array));
  const losses: number[] = [];
  for (let s = 0; s < 5; s++) {
    const feeds: Record<string, ort.Tensor> = { input: inputTensor(e, e.input_shape[0]), target: new ort.Tensor('float32', targetValues, e.logits_shape) };
    params.forEach((p, i) => (feeds[p] = new ort.Tensor('float32', values[i], weights[i].dims)));
    const out = await session.run(feeds);
    losses.push((out[loss].data as Float32Array)[0]);
    params.forEach((p, i) => {
      const gr = out[grads.get(p)!].data as Float32Array;
      for (let k = 0; k < gr.length; k++) values[i][k] -= 0.05 * gr[k];
    });
  }
  await session.release();
  assert.ok(losses[4] < losses[0] * 0.9, `loss ${losses}`);
});

// ---------------- language models: what importForTraining reports ----------------

test('the nanoGPT fixture is a language model: vocabulary from the logits, context from the position table', () => {
  const model = importForTraining(fixture('torch_nanogpt'));
  assert.equal(model.task, 'language-model');
  assert.equal(model.input, 'input_ids');
  assert.deepEqual(model.lm, { vocabSize: 64, context: 16 });
  assert.deepEqual(importForTraining(fixture('torch_encoder_lm'), {}, { context: 8 }).lm, { vocabSize: 64, context: 8 });
  assert.throws(() => importForTraining(fixture('torch_nanogpt'), {}, { context: 32 }), /--context 32 is longer than the model takes \(16 positions\)/);
  // The tril buffer reaches the logits only through Equal: a constant, not a parameter.
  assert.ok(!model.params.includes('h.0.attn.bias'));
});

test("the tied head (torch's transposed copy onnx::MatMul_289) is re-tied: one parameter, read through Transpose, and the import says so", () => {
  const g = importModel(fixture('torch_nanogpt'));
  assert.deepEqual(tiedWeights(g), [{ copy: 'onnx::MatMul_289', of: 'wte.weight', transposed: true }]);
  assert.match(importNotes(g).join('\n'), /'onnx::MatMul_289' equals Transpose\('wte.weight'\) exactly: re-tied as one parameter/);
  assert.equal(g.initializers.has('onnx::MatMul_289'), false);
  const head = g.nodes.find((n) => n.name === '/lm_head/MatMul')!;
  const transpose = g.nodes.find((n) => n.outputs[0] === head.inputs[1])!;
  assert.deepEqual([transpose.opType, transpose.inputs], ['Transpose', ['wte.weight']]);
  const params = classifyInitializers(g).params;
  assert.equal(params.filter((p) => p === 'wte.weight').length, 1);
});

test('parameters take readable names from the node scopes; the originals are kept in metadata', () => {
  const g = importModel(fixture('torch_nanogpt'));
  const params = classifyInitializers(g).params;
  assert.ok(params.every((p) => !p.startsWith('onnx::')), `unreadable: ${params.filter((p) => p.startsWith('onnx::'))}`);
  for (const p of ['h.0.attn.c_attn.weight', 'h.1.mlp.c_proj.weight', 'wte.weight', 'ln_f.weight']) assert.ok(params.includes(p), p);
  assert.equal(originalParameterName(g, 'h.0.attn.c_attn.weight'), 'onnx::MatMul_267');
  assert.equal(originalParameterName(g, 'wte.weight'), 'wte.weight');
  assert.equal(new Set(params).size, params.length);
});

test("torch's value deduplication is undone: LayerNorm ones/zeros and deep-copied encoder layers are separate parameters again", () => {
  const gpt = classifyInitializers(importModel(fixture('torch_nanogpt'))).params;
  for (const p of ['h.0.ln_1.weight', 'h.0.ln_2.weight', 'h.1.ln_1.weight', 'ln_f.weight', 'ln_f.bias']) assert.ok(gpt.includes(p), p);
  const g = importModel(fixture('torch_encoder_lm'));
  const enc = classifyInitializers(g).params;
  for (const p of ['encoder.layers.0.linear2.weight', 'encoder.layers.1.linear2.weight', 'encoder.layers.1.self_attn.out_proj.weight', 'encoder.layers.1.norm2.bias']) {
    assert.ok(enc.includes(p), p);
  }
  assert.deepEqual(tiedWeights(g), []);
  assert.ok(!g.nodes.some((n) => n.opType === 'Identity'));
});

test('the llama-style decoder: Einsum lowered, the rotary inv_freq buffer a constant, cos/sin tables folded once T is known', () => {
  const g = importModel(fixture('torch_llama_style'));
  assert.ok(!g.nodes.some((n) => n.opType === 'Einsum'));
  const params = classifyInitializers(g).params;
  assert.ok(!params.includes('inv_freq'), `params: ${params}`);
  for (const p of ['q_proj.weight', 'down_proj.weight', 'norm.weight', 'mlp_norm.weight', 'lm_head.weight', 'embed.weight']) assert.ok(params.includes(p), p);
  assert.throws(() => importForTraining(fixture('torch_llama_style')), /cannot tell how many positions the model takes .*pass the context \(--context N\)/);
  const fixed = importModel(fixture('torch_llama_style'), { inputShapes: { input_ids: [2, 6] } });
  assert.ok(!fixed.nodes.some((n) => n.opType === 'Cos' || n.opType === 'Sin'));
  assert.ok(!fixed.initializers.has('inv_freq'), 'the buffer is folded away');
});

// ---------------- re-tying and shared weights on hand-built graphs ----------------

function writeModel(build: (g: Graph) => void): string {
  const g = new Graph();
  g.name = 'tied';
  g.opsets = { '': 17 };
  build(g);
  const dir = scratchDir('qatkit-tied-');
  temps.push(dir);
  const file = path.join(dir, 'model.onnx');
  saveModel(g, file);
  return file;
}
const node = (opType: string, name: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): Node => ({ opType, domain: '', name, inputs, outputs, attrs });
const randomTensor = (dims: number[], seed: number) => {
  const rng = new Rng(seed);
  return Tensor.float(dims, Array.from({ length: dims.reduce((p, q) => p * q, 1) }, () => rng.uniform() - 0.5));
};
const transposed = (t: Tensor) => {
  const [r, c] = t.dims;
  const d = t.data as Float32Array;
  return Tensor.float([c, r], Array.from({ length: r * c }, (_, k) => d[(k % r) * c + Math.floor(k / r)]));
};

/** ids -> Gather(W) -> MatMul(head) -> logits, with `head` [C, V] given. */
function headModel(head: (w: Tensor) => Tensor, extra: Record<string, Tensor> = {}): string {
  return writeModel((g) => {
    const w = randomTensor([5, 3], 7);
    g.inputs.push({ name: 'ids', dtype: DType.INT64, shape: ['B', 'T'] });
    g.outputs.push({ name: 'logits', dtype: DType.FLOAT, shape: ['B', 'T', 5] });
    g.initializers.set('wte.weight', w);
    g.initializers.set('onnx::MatMul_9', head(w));
    for (const [k, v] of Object.entries(extra)) g.initializers.set(k, v);
    g.nodes.push(node('Gather', '/wte/Gather', ['wte.weight', 'ids'], ['h']), node('MatMul', '/lm_head/MatMul', ['h', 'onnx::MatMul_9'], ['logits']));
  });
}

test('an initializer equal to another transposed is re-tied; one that differs in one element is not', () => {
  const tied = importModel(headModel(transposed));
  assert.deepEqual(tiedWeights(tied), [{ copy: 'onnx::MatMul_9', of: 'wte.weight', transposed: true }]);
  assert.deepEqual(classifyInitializers(tied).params, ['wte.weight']);
  const near = importModel(headModel((w) => {
    const t = transposed(w);
    (t.data as Float32Array)[4] += 1e-6;
    return t;
  }));
  assert.deepEqual(tiedWeights(near), []);
  assert.deepEqual([...classifyInitializers(near).params].sort(), ['lm_head.weight', 'wte.weight']);
});

test("a tied weight's gradient is the sum over both uses (Gather and MatMul through Transpose)", async () => {
  const g = importModel(headModel(transposed), { inputShapes: { ids: [1, 2] } });
  const b = new GraphBuilder(g, 'loss/');
  const loss = b.sumAll(b.mul(g.outputs[0].name, g.outputs[0].name));
  const w = g.initializers.get('wte.weight')!;
  g.initializers.delete('wte.weight');
  b.input('wte.weight', DType.FLOAT, w.dims);
  const grads = differentiate(g, { loss, wrt: ['wte.weight'] });
  g.outputs = [];
  b.output(loss);
  b.output(grads.get('wte.weight')!);
  const session = await Session.create(g, { threads: 1 });
  const ids = new ort.Tensor('int64', BigInt64Array.from([1n, 3n]), [1, 2]);
  const at = async (values: Float32Array) => session.run({ ids, 'wte.weight': new ort.Tensor('float32', values, w.dims) });
  const base = Float32Array.from(w.data as Float32Array);
  const analytic = (await at(base))[grads.get('wte.weight')!].data as Float32Array;
  // Central differences in float32 with a large step (the loss is a quartic of the weights).
  for (const k of [3, 4, 9, 10, 0]) {
    const h = 1e-2;
    const plus = Float32Array.from(base);
    const minus = Float32Array.from(base);
    plus[k] += h;
    minus[k] -= h;
    const numeric = (((await at(plus))[loss].data as Float32Array)[0] - ((await at(minus))[loss].data as Float32Array)[0]) / (2 * h);
    assert.ok(Math.abs(numeric - analytic[k]) < 2e-3 * Math.max(1, Math.abs(numeric)), `element ${k}: ${analytic[k]} vs ${numeric}`);
  }
  assert.ok(Math.abs(analytic[3]) > 0 && Math.abs(analytic[0]) > 0, 'rows read by Gather and rows only read by the head both get gradients');
  await session.release();
});

test('uniform tensors (constant initialisations) are never tied, even when equal', () => {
  const g = importModel(headModel(() => Tensor.float([3, 5], new Array(15).fill(0.5)), { 'onnx::Other_1': Tensor.float([3, 5], new Array(15).fill(0.5)) }));
  assert.deepEqual(tiedWeights(g), []);
});

// ---------------- Einsum ----------------

function einsumModel(equation: string, shapes: number[][]): string {
  return writeModel((g) => {
    shapes.forEach((s, i) => g.inputs.push({ name: `x${i}`, dtype: DType.FLOAT, shape: s }));
    g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [] });
    g.nodes.push(node('Einsum', 'einsum', shapes.map((_, i) => `x${i}`), ['y'], { equation: { kind: 'string', value: equation } }));
  });
}

/** Reference einsum over explicit index loops. */
function einsumReference(equation: string, shapes: number[][], data: Float32Array[]): { dims: number[]; data: number[] } {
  const [lhs, out] = equation.split('->');
  const terms = lhs.split(',');
  const size = new Map<string, number>();
  terms.forEach((t, i) => [...t].forEach((c, k) => size.set(c, shapes[i][k])));
  const letters = [...size.keys()];
  const dims = [...out].map((c) => size.get(c)!);
  const result = new Array(dims.reduce((p, q) => p * q, 1)).fill(0);
  const idx = new Map<string, number>();
  const loop = (l: number) => {
    if (l === letters.length) {
      let v = 1;
      terms.forEach((t, i) => {
        let off = 0;
        [...t].forEach((c, k) => (off = off * shapes[i][k] + idx.get(c)!));
        v *= data[i][off];
      });
      let o = 0;
      [...out].forEach((c, k) => (o = o * dims[k] + idx.get(c)!));
      result[o] += v;
      return;
    }
    for (let i = 0; i < size.get(letters[l])!; i++) {
      idx.set(letters[l], i);
      loop(l + 1);
    }
  };
  loop(0);
  return { dims, data: result };
}

const EINSUMS: [string, number[][]][] = [
  ['bhqd,bhkd->bhqk', [[2, 3, 4, 5], [2, 3, 6, 5]]],
  ['bij,bjk->bik', [[2, 3, 4], [2, 4, 5]]],
  ['ij,jk->ik', [[3, 4], [4, 5]]],
  ['ij->ji', [[3, 4]]],
  ['bij,bj->bi', [[2, 3, 4], [2, 4]]],
  ['bhqk,bkhd->bqhd', [[2, 3, 4, 5], [2, 5, 3, 6]]],
  ['bij,jk->bik', [[2, 3, 4], [4, 5]]],
  ['i,j->ij', [[3], [4]]],
  ['bij->bj', [[2, 3, 4]]],
];

for (const [equation, shapes] of EINSUMS) {
  test(`Einsum '${equation}' is lowered to Transpose/Reshape/MatMul and computes the same values`, async () => {
    const g = importModel(einsumModel(equation, shapes));
    assert.ok(!g.nodes.some((n) => n.opType === 'Einsum'));
    const rng = new Rng(3);
    const data = shapes.map((s) => Float32Array.from({ length: s.reduce((p, q) => p * q, 1) }, () => rng.uniform() - 0.5));
    const want = einsumReference(equation, shapes, data);
    assert.deepEqual(g.outputs[0].shape, want.dims);
    const feeds = Object.fromEntries(shapes.map((s, i) => [`x${i}`, new ort.Tensor('float32', data[i], s)]));
    const out = await run(g, feeds);
    assert.deepEqual(out.dims, want.dims);
    assertClose(out.data, want.data, 1e-5);
  });
}

test('an Einsum outside the lowered forms is refused, naming the node and the equation', () => {
  assert.throws(() => importModel(einsumModel('ii->i', [[3, 3]])), /node 'einsum' \(Einsum\): equation 'ii->i' repeats an index within operand 'ii'/);
  assert.throws(() => importModel(einsumModel('...ij,...jk->...ik', [[2, 3, 4], [2, 4, 5]])), /equation '\.\.\.ij,\.\.\.jk->\.\.\.ik' uses an ellipsis/);
});

// ---------------- HF-style decoder inputs ----------------

test('an HF-style decoder with input_ids, attention_mask and position_ids is a language model the trainer can step', async () => {
  const file = writeModel((g) => {
    g.inputs.push(
      { name: 'input_ids', dtype: DType.INT64, shape: ['batch', 'sequence'] },
      { name: 'attention_mask', dtype: DType.INT64, shape: ['batch', 'sequence'] },
      { name: 'position_ids', dtype: DType.INT64, shape: ['batch', 'sequence'] },
    );
    g.outputs.push({ name: 'logits', dtype: DType.FLOAT, shape: ['batch', 'sequence', 6] });
    g.initializers.set('model.embed_tokens.weight', randomTensor([6, 4], 1));
    g.initializers.set('model.embed_positions.weight', randomTensor([12, 4], 2));
    g.initializers.set('onnx::MatMul_40', randomTensor([4, 6], 3));
    g.initializers.set('unsq', Tensor.int64([1], [2]));
    g.nodes.push(
      node('Gather', '/model/embed_tokens/Gather', ['model.embed_tokens.weight', 'input_ids'], ['tok']),
      node('Gather', '/model/embed_positions/Gather', ['model.embed_positions.weight', 'position_ids'], ['pos']),
      node('Cast', '/model/Cast', ['attention_mask'], ['maskf'], { to: { kind: 'int', value: DType.FLOAT } }),
      node('Unsqueeze', '/model/Unsqueeze', ['maskf', 'unsq'], ['mask3']),
      node('Add', '/model/Add', ['tok', 'pos'], ['h0']),
      node('Mul', '/model/Mul', ['h0', 'mask3'], ['h']),
      node('MatMul', '/lm_head/MatMul', ['h', 'onnx::MatMul_40'], ['logits']),
    );
  });
  const model = importForTraining(file);
  assert.deepEqual(model.lm, { vocabSize: 6, context: 12, attentionMask: 'attention_mask', positionIds: 'position_ids' });
  assert.ok(model.params.includes('lm_head.weight'));
  const trainer = await Trainer.create(model, { batchSize: 2, classes: 0, sequenceLength: 5, optimizer: { kind: 'adamw' }, threads: 1 });
  fillBatch(trainer, new Rng(2), 6);
  const first = (await trainer.trainStep(1e-2)).loss;
  for (let s = 0; s < 5; s++) await trainer.trainStep(1e-2);
  assert.ok((await trainer.trainStep(1e-2)).loss < first);
});

test('a model with inputs besides token ids, attention_mask and position_ids is refused, naming them', () => {
  const file = writeModel((g) => {
    g.inputs.push({ name: 'input_ids', dtype: DType.INT64, shape: ['B', 'T'] }, { name: 'past_key_values.0.key', dtype: DType.FLOAT, shape: ['B', 2, 'P', 4] });
    g.outputs.push({ name: 'logits', dtype: DType.FLOAT, shape: ['B', 'T', 5] });
    g.initializers.set('wte.weight', randomTensor([5, 5], 1));
    g.nodes.push(node('Gather', 'g', ['wte.weight', 'input_ids'], ['logits']));
  });
  assert.throws(() => importForTraining(file, {}, { context: 4 }), /also has input\(s\) 'past_key_values.0.key'/);
});

test('torch_hf_llama: the anonymous rotary caches (onnx::Slice_N) are constants, and they give the context', () => {
  const model = importForTraining(fixture('torch_hf_llama'));
  assert.equal(model.lm?.context, 32, 'cos_cached[:, :, :T] has 32 rows');
  const caches = [...model.graph.initializers.entries()].filter(([, t]) => t.dims.length === 4 && t.dims[2] === 32).map(([name]) => name);
  assert.equal(caches.length, 2, caches.join());
  for (const name of caches) assert.ok(!model.params.includes(name), `${name} is trained`);
  const weights = model.params.filter((p) => model.graph.initializers.get(p)!.dims.length === 2).sort();
  assert.equal(weights.length, 2 * 7 + 2, weights.join()); // q, k, v, o, gate, up, down per layer; embedding; head
  assert.ok(weights.every((p) => !p.startsWith('onnx::')), weights.join());
});

test("torch_gptj's [sin | cos] embed_positions is a constant that gives the context; torch_t5_lm's relative-position bias is no position table", async () => {
  const { prepareLanguageModelQat } = await import('../../src/quant/qat');
  const { presetConfig } = await import('../../src/quant/presets');
  const gptj = importForTraining(fixture('torch_gptj'));
  assert.equal(gptj.lm?.context, 32);
  const table = [...gptj.graph.initializers.entries()].find(([, t]) => t.dims.join() === '32,4');
  assert.ok(table, 'the [32, 4] sincos buffer');
  assert.ok(!gptj.params.includes(table[0]), `${table[0]} is trained`);
  // T5 has no absolute positions: the bucket-indexed Embedding(16, heads) does not say how many it takes.
  assert.throws(() => importForTraining(fixture('torch_t5_lm')), /cannot tell how many positions .*--context N/);
  const t5 = importForTraining(fixture('torch_t5_lm'), {}, { context: 8 });
  const bias = t5.params.filter((p) => p.endsWith('relative_attention_bias.weight'));
  assert.equal(bias.length, 2, t5.params.join());
  const qat = prepareLanguageModelQat(t5, presetConfig('w8a8', 'language-model'), 'w8a8');
  const quantized = new Set(qat.quant!.quantizers.filter((q) => q.role === 'weight').map((q) => q.tensor));
  for (const p of bias) assert.ok(!quantized.has(p), `${p} quantized as a position table`);
  assert.ok(quantized.has('shared.weight'), [...quantized].join());
});

test('a child of nn.Sequential inside nn.ModuleList is named by its state_dict path (torch scopes it by its full path: /ff.0/ff.0.3/MatMul)', () => {
  const params = classifyInitializers(importModel(fixture('torch_t5_lm'))).params;
  for (const p of ['ff.0.0.weight', 'ff.0.3.weight', 'ff.1.0.weight', 'ff.1.3.weight', 'attention.1.relative_attention_bias.weight']) assert.ok(params.includes(p), `${p} in ${params.join(', ')}`);
  assert.ok(!params.some((p) => p.includes('ff.0.ff.0')), params.join(', '));
});
