// The training step's speed rewrites keep values: each pass against the graph it rewrites, and whole language-model
// steps (fusedOps, contrib lowering) against the plain step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { gpt, llama } from '../../src/models/transformers';
import { emitGelu } from '../../src/ops/activation';
import { lowerCustomOps } from '../../src/runtime/lower';
import { Session } from '../../src/runtime/session';
import { fuseSoftmaxAttention } from '../../src/train/fuse-attention';
import { fuseGelu } from '../../src/train/fuse-gelu';
import { saveLayerNormStatistics } from '../../src/train/layer-norm-statistics';
import { Rng } from '../../src/train/rng';
import { buildTrainStep } from '../../src/train/step-graph';
import { sumLeadingAxesByMatMul } from '../../src/train/sum-leading-axes';

/** Feeds for every graph input: floats N(0, scale^2) (seeded by name), int64 in [0, 7). */
function feedsFor(g: Graph, scale = 1): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of g.inputs) {
    const dims = v.shape as number[];
    const n = dims.reduce((p, q) => p * q, 1);
    const rng = new Rng([...v.name].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) >>> 0, 7));
    feeds[v.name] =
      v.dtype === DType.INT64
        ? new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(rng.int(7))), dims)
        : new ort.Tensor('float32', Float32Array.from({ length: n }, () => rng.normal() * scale), dims);
  }
  return feeds;
}

async function run(g: Graph, feeds: Record<string, ort.Tensor>, contribOps = false): Promise<Record<string, Float32Array>> {
  const s = await Session.create(g, { threads: 1, contribOps });
  const out = await s.run(feeds);
  await s.release();
  return Object.fromEntries(g.outputs.map((o) => [o.name, out[o.name].data as Float32Array]));
}

/** Outputs in graph order (graphs built by the same code but rewritten differently name their gradients differently). */
async function runInOrder(g: Graph, feeds: Record<string, ort.Tensor>): Promise<Float32Array[]> {
  const out = await run(g, feeds);
  return g.outputs.map((o) => out[o.name]);
}

async function assertSameOutputs(plain: Graph, rewritten: Graph, what: string, scale = 1): Promise<void> {
  const feeds = feedsFor(plain, scale);
  const [want, got] = [await runInOrder(plain, feeds), await runInOrder(rewritten, feeds)];
  assert.equal(got.length, want.length);
  want.forEach((w, i) => assertClose(got[i], w, `${what}: output ${i}`));
}

function assertClose(got: Float32Array, want: Float32Array, what: string, tolerance = 1e-5): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  const rel = Math.sqrt(num / Math.max(den, 1e-30));
  assert.ok(rel <= tolerance, `${what}: relative L2 error ${rel}`);
}

/** A graph with input x [rows, C] (and extra inputs), loss = sum(out * r), outputs: out and d loss / d wrt. */
function withGradients(build: (b: GraphBuilder) => { out: string; wrt: string[] }, rewrite?: (g: Graph) => number) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const { out, wrt } = build(b);
  const r = b.input('r', DType.FLOAT, b.shape(out));
  const loss = b.sumAll(b.mul(out, r));
  const rewritten = rewrite ? rewrite(g) : 0;
  const grads = differentiate(g, { loss, wrt });
  for (const v of [out, ...wrt.map((w) => grads.get(w)!)]) b.output(v);
  return { g, rewritten };
}

test('fuseGelu replaces the builder and torch.onnx.export Erf forms; values and gradients unchanged', async () => {
  const forms: Record<string, (b: GraphBuilder, x: string) => string> = {
    builder: (b, x) => emitGelu(b, x, 'none'),
    torch: (b, x) => b.mul(b.mul(x, b.add(b.op1('Erf', [b.div(x, b.constant(Math.SQRT2))]), b.constant(1))), b.constant(0.5)),
    'torch, operands swapped': (b, x) => b.mul(b.constant(0.5), b.mul(b.add(b.constant(1), b.op1('Erf', [b.div(x, b.constant(Math.SQRT2))])), x)),
  };
  for (const [name, form] of Object.entries(forms)) {
    const build = (b: GraphBuilder) => {
      const x = b.input('x', DType.FLOAT, [6, 5]);
      return { out: b.mul(form(b, x), x), wrt: [x] };
    };
    const plain = withGradients(build);
    const fused = withGradients(build, fuseGelu);
    assert.equal(fused.rewritten, 1, `${name}: one GELU fused`);
    assert.ok(!fused.g.nodes.some((n) => n.opType === 'Erf' && !n.name.startsWith('lower')), `${name}: no Erf left before lowering`);
    await assertSameOutputs(plain.g, fused.g, name, 2);
  }
});

test('fuseGelu leaves a GELU whose inner values are read elsewhere', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [4]);
  const erf = b.op1('Erf', [b.mul(x, b.constant(Math.SQRT1_2))]);
  b.output(b.mul(b.mul(x, b.constant(0.5)), b.add(erf, b.constant(1))));
  b.output(erf);
  assert.equal(fuseGelu(g), 0);
});

test('fuseSoftmaxAttention keeps the attention core values and gradients (with and without a mask)', async () => {
  for (const masked of [true, false]) {
    const build = (b: GraphBuilder) => {
      const [q, k, v] = ['q', 'k', 'v'].map((n) => b.input(n, DType.FLOAT, [2, 3, 4, 8]));
      const mask = b.constant(Tensor.float([4, 4], Array.from({ length: 16 }, (_, i) => (i % 4 > Math.floor(i / 4) ? -Infinity : 0))));
      const product = b.matmul(b.mul(q, b.constant(0.3)), b.transpose(k, [0, 1, 3, 2]));
      const p = b.op1('Softmax', [masked ? b.add(product, mask) : product], { axis: -1 });
      return { out: b.matmul(p, v), wrt: [q, k, v] };
    };
    const plain = withGradients(build);
    const fused = withGradients(build, fuseSoftmaxAttention);
    assert.equal(fused.rewritten, 1);
    assert.ok(!fused.g.nodes.some((n) => n.opType === 'Softmax'), 'softmax taken into the fused op');
    await assertSameOutputs(plain.g, fused.g, `masked ${masked}`);
  }
});

test('sumLeadingAxesByMatMul: sums over leading axes (bias gradients) become ones-row MatMuls with equal values', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [8, 16, 5]);
  b.output(b.reduceSum(x, [0, 1], false));
  b.output(b.reduceSum(x, [0, 1], true));
  b.output(b.reduceSum(x, [0], true));
  b.output(b.reduceSum(x, [1], true)); // not leading: kept
  b.output(b.reduceSum(b.reshape(x, [4, 160]), [0], false)); // 4 rows: kept
  const feeds = feedsFor(g);
  const want = await run(g, feeds);
  assert.equal(sumLeadingAxesByMatMul(g), 2);
  assert.equal(g.nodes.filter((n) => n.opType === 'ReduceSum').length, 3);
  const got = await run(g, feeds);
  for (const o of g.outputs.map((v) => v.name)) assertClose(got[o], want[o], o, 1e-6);
});

test('saveLayerNormStatistics names float32 Mean and InvStdDev outputs; the gradient is unchanged', async () => {
  const build = (b: GraphBuilder) => {
    const x = b.input('x', DType.FLOAT, [3, 4, 6]);
    const scale = b.input('scale', DType.FLOAT, [6]);
    const bias = b.input('bias', DType.FLOAT, [6]);
    return { out: b.op1('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: 1e-5 }), wrt: [x, scale, bias] };
  };
  const plain = withGradients(build);
  const saved = withGradients(build, saveLayerNormStatistics);
  assert.equal(saved.rewritten, 2);
  await assertSameOutputs(plain.g, saved.g, 'LayerNormalization');
});

test('contrib lowering: MatMul(A, B^T) and 2-D MatMul(A^T, B) become FusedMatMul, the transposes go, values unchanged', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const [p, q, r] = [b.input('p', DType.FLOAT, [2, 3, 5, 4]), b.input('q', DType.FLOAT, [2, 3, 5, 6]), b.input('r', DType.FLOAT, [2, 3, 4, 6])];
  b.output(b.matmul(b.transpose(p, [0, 1, 3, 2]), q)); // batched p^T q: left to ORT (MLAS's batched transA is slow)
  const rt = b.transpose(r, [0, 1, 3, 2]);
  b.output(b.matmul(q, rt)); // q r^T, and r^T is an output too
  b.output(rt);
  b.output(b.matmul(b.input('a', DType.FLOAT, [7, 4]), b.transpose(b.input('w', DType.FLOAT, [3, 4]), [1, 0]))); // a w^T
  b.output(b.matmul(b.transpose(b.input('x', DType.FLOAT, [7, 4]), [1, 0]), b.input('y', DType.FLOAT, [7, 2]))); // x^T y
  const lowered = lowerCustomOps(g, { contribOps: true });
  const fused = lowered.nodes.filter((n) => n.opType === 'FusedMatMul' && n.domain === 'com.microsoft');
  assert.deepEqual(fused.map((n) => Object.keys(n.attrs).join()), ['transB', 'transB', 'transA']);
  assert.equal(lowered.nodes.filter((n) => n.opType === 'Transpose').length, 2, "p's transpose and the output r^T stay");
  assert.equal(lowered.opsets['com.microsoft'], 1);
  const feeds = feedsFor(g);
  const [want, got] = [await run(g, feeds), await run(g, feeds, true)];
  for (const o of g.outputs.map((v) => v.name)) assertClose(got[o], want[o], o, 1e-6);
});

test('contrib lowering leaves float64 MatMuls alone (FusedMatMul has no float64 kernel)', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  b.output(b.matmul(b.transpose(b.input('p', DType.DOUBLE, [5, 4]), [1, 0]), b.input('q', DType.DOUBLE, [5, 6])));
  assert.ok(!lowerCustomOps(g, { contribOps: true }).nodes.some((n) => n.domain === 'com.microsoft'));
});

for (const [name, build] of [['gpt', gpt], ['llama', llama]] as const) {
  test(`${name} training step with fused ops and contrib lowering equals the plain step (loss and every gradient)`, async () => {
    const model = build({ vocabSize: 7, layers: 2, heads: 2, dim: 16, context: 8, seed: 3 });
    // SGD with lr 1 and no momentum or decay: parameter - next = gradient.
    const options = { batchSize: 3, classes: 0, sequenceLength: 8, optimizer: { kind: 'sgd' as const, momentum: 0, weightDecay: 0 } };
    const plain = buildTrainStep(model, { ...options, fusedOps: false });
    const fused = buildTrainStep(model, options);
    const types = new Set(fused.graph.nodes.map((n) => n.opType));
    for (const op of ['SoftmaxAttention', 'SoftmaxCrossEntropy', ...(name === 'gpt' ? ['GeluTrain'] : [])]) assert.ok(types.has(op), `${op} formed`);
    const feeds = feedsFor(plain.graph);
    for (const c of plain.carried) feeds[c.input] = new ort.Tensor('float32', Float32Array.from(c.initial.data as Float32Array), c.initial.dims);
    feeds.lr = new ort.Tensor('float32', Float32Array.of(1), []);
    feeds.step = new ort.Tensor('float32', Float32Array.of(1), []);
    const [want, got] = [await run(plain.graph, feeds), await run(fused.graph, feeds, true)];
    assertClose(got.loss, want.loss, 'loss', 1e-6);
    for (const c of plain.carried) {
      const initial = c.initial.data as Float32Array;
      const grad = (out: Float32Array) => initial.map((p, i) => p - out[i]);
      assertClose(grad(got[c.output]), grad(want[c.output]), `gradient of ${c.input}`, 1e-4);
    }
  });
}
