import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { attrFloat, Graph, Shape } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { lowerCustomOps } from '../../src/runtime/lower';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { Rng } from '../../src/train/rng';
import { toTrainingBatchNorm } from '../../src/train/batchnorm-mode';

const positive = { sample: (r: { range(a: number, b: number): number }) => r.range(0.5, 2) };
const fixed = { differentiable: false };

/** BatchNormTrain with all five outputs; returns Y unless `all` (running stats carry no gradient). */
function bnTrain(b: GraphBuilder, [x, scale, bias, mean, variance]: string[], attrs: Record<string, number> = {}) {
  return b.op('BatchNormTrain', [x, scale, bias, mean, variance], attrs, { domain: 'ai.qatkit', outputs: 5 });
}

const cases: CheckCase[] = [
  {
    name: 'BatchNormalization (inference) rank 2 [4,3]',
    inputs: [{ shape: [4, 3] }, { shape: [3] }, { shape: [3] }, { shape: [3], ...fixed }, { shape: [3], ...positive, ...fixed }],
    build: (b, xs) => b.op1('BatchNormalization', xs, { epsilon: 1e-3 }),
  },
  {
    name: 'BatchNormalization (inference) rank 4 [2,3,2,2]',
    inputs: [{ shape: [2, 3, 2, 2] }, { shape: [3] }, { shape: [3] }, { shape: [3], ...fixed }, { shape: [3], ...positive, ...fixed }],
    build: (b, xs) => b.op1('BatchNormalization', xs),
  },
  {
    name: 'BatchNormTrain rank 4 [2,3,2,2]',
    inputs: [{ shape: [2, 3, 2, 2] }, { shape: [3] }, { shape: [3] }, { shape: [3], ...fixed }, { shape: [3], ...positive, ...fixed }],
    build: (b, xs) => bnTrain(b, xs)[0],
  },
  {
    name: 'BatchNormTrain rank 2 [4,3]',
    inputs: [{ shape: [4, 3] }, { shape: [3] }, { shape: [3] }, { shape: [3], ...fixed }, { shape: [3], ...positive, ...fixed }],
    build: (b, xs) => bnTrain(b, xs, { epsilon: 1e-3 })[0],
  },
  {
    // With only Y requested there are no saved statistics: the rule recomputes them from X.
    name: 'BatchNormTrain with Y only [3,2,2]',
    inputs: [{ shape: [3, 2, 2] }, { shape: [2] }, { shape: [2] }, { shape: [2], ...fixed }, { shape: [2], ...positive, ...fixed }],
    build: (b, xs) => b.op1('BatchNormTrain', xs, {}, { domain: 'ai.qatkit' }),
  },
  {
    // x reaches the loss twice (through the statistics and directly): both contributions must add up.
    name: 'chain BatchNormTrain(x) * x [2,3,2]',
    inputs: [{ shape: [2, 3, 2] }, { shape: [3] }, { shape: [3] }, { shape: [3], ...fixed }, { shape: [3], ...positive, ...fixed }],
    build: (b, xs) => b.mul(bnTrain(b, xs)[0], xs[0]),
  },
  {
    // input_scale c: Y = BN(X / c). A large epsilon makes dY/dc (which exists only through epsilon) visible.
    name: 'BatchNormTrain with input_scale (BN-fold unscale), epsilon 0.5, one negative c',
    inputs: [{ shape: [3, 3, 2] }, { shape: [3] }, { shape: [3] }, { shape: [3], ...fixed }, { shape: [3], ...positive, ...fixed }, { shape: [3], sample: (r) => r.range(0.5, 2) * (r.range(0, 1) < 0.3 ? -1 : 1) }],
    build: (b, xs) => b.op('BatchNormTrain', xs, { epsilon: 0.5 }, { domain: 'ai.qatkit', outputs: 5 })[0],
  },
  {
    name: 'BatchNormTrain with input_scale, Y only (statistics recomputed), epsilon 0.5',
    inputs: [{ shape: [4, 2] }, { shape: [2] }, { shape: [2] }, { shape: [2], ...fixed }, { shape: [2], ...positive, ...fixed }, { shape: [1, 2], ...positive }],
    build: (b, xs) => b.op1('BatchNormTrain', xs, { epsilon: 0.5 }, { domain: 'ai.qatkit' }),
  },
  {
    name: 'LayerNormalization axis -1 of [2,3,4] with B',
    inputs: [{ shape: [2, 3, 4] }, { shape: [4] }, { shape: [4] }],
    build: (b, xs) => b.op1('LayerNormalization', xs, { axis: -1 }),
  },
  {
    name: 'LayerNormalization axis -1 of [2,3,4] without B',
    inputs: [{ shape: [2, 3, 4] }, { shape: [4] }],
    build: (b, xs) => b.op1('LayerNormalization', xs),
  },
  {
    // Mean and InvStdDev requested but unused: for float64 X they are float32 (stash_type), so the rule recomputes.
    name: 'LayerNormalization axis -1 with its Mean and InvStdDev outputs (float64 X)',
    inputs: [{ shape: [2, 3, 4] }, { shape: [4] }, { shape: [4] }],
    build: (b, xs) => b.op('LayerNormalization', xs, { axis: -1 }, { outputs: 3 })[0],
  },
  {
    name: 'LayerNormalization axis 1 of [2,3,4] with B',
    inputs: [{ shape: [2, 3, 4] }, { shape: [3, 4] }, { shape: [3, 4] }],
    build: (b, xs) => b.op1('LayerNormalization', xs, { axis: 1, epsilon: 1e-3 }),
  },
  {
    name: 'LayerNormalization axis 1 of [2,3,4] without B',
    inputs: [{ shape: [2, 3, 4] }, { shape: [3, 4] }],
    build: (b, xs) => b.op1('LayerNormalization', xs, { axis: 1 }),
  },
];

/**
 * The checker's loss graph (InstanceNormalization, Reshapes, Mul by weights, ReduceSum) in float64: ORT has no
 * float64 InstanceNormalization kernel, so these cases compare its float32 gradient with a float64 forward.
 */
function instanceNormForward64(graph: Graph, feeds: Map<string, Tensor>, loss: string): number {
  const values = new Map<string, Float64Array>();
  for (const [name, t] of [...graph.initializers, ...feeds]) values.set(name, Float64Array.from(t.toNumbers()));
  const get = (name: string) => values.get(name) ?? assert.fail(`forward64: value '${name}' not computed`);
  for (const n of graph.nodes) {
    const [a, w] = [get(n.inputs[0]), n.inputs[1] ? values.get(n.inputs[1]) : undefined];
    if (n.opType === 'InstanceNormalization') {
      const shape = graph.typeOf(n.inputs[0]).shape as number[];
      const [channels, spatial] = [shape[1], shape.slice(2).reduce((p, q) => p * q, 1)];
      const [scale, bias] = [w!, get(n.inputs[2])];
      const eps = attrFloat(n, 'epsilon', 1e-5);
      const y = new Float64Array(a.length);
      for (let row = 0; row < a.length / spatial; row++) {
        const xs = a.subarray(row * spatial, (row + 1) * spatial);
        const mean = xs.reduce((p, v) => p + v, 0) / spatial;
        const variance = xs.reduce((p, v) => p + (v - mean) ** 2, 0) / spatial;
        const c = row % channels;
        xs.forEach((v, i) => (y[row * spatial + i] = ((v - mean) / Math.sqrt(variance + Math.fround(eps))) * scale[c] + bias[c]));
      }
      values.set(n.outputs[0], y);
    } else if (n.opType === 'Reshape') values.set(n.outputs[0], a);
    else if (n.opType === 'Mul') values.set(n.outputs[0], a.map((v, i) => v * w![i]));
    else if (n.opType === 'ReduceSum') values.set(n.outputs[0], Float64Array.of(a.reduce((p, v) => p + v, 0)));
    else assert.fail(`forward64 does not evaluate ${n.opType}`);
  }
  return get(loss)[0];
}

const instanceNormCases: CheckCase[] = [
  {
    name: 'InstanceNormalization of [2,3,2,3] (InstanceNorm2d, affine)',
    inputs: [{ shape: [2, 3, 2, 3] }, { shape: [3] }, { shape: [3] }],
    build: (b, xs) => b.op1('InstanceNormalization', xs, { epsilon: 1e-3 }),
  },
  {
    // nn.GroupNorm(2, 4) as torch.onnx.export writes it: Reshape [N, G, -1], InstanceNormalization (unit scale and
    // zero bias there, then a per-channel Mul and Add; any scale here), Reshape back.
    name: 'GroupNorm form: InstanceNormalization of [2,4,3] reshaped to [2,2,6]',
    inputs: [{ shape: [2, 4, 3] }, { shape: [2] }, { shape: [2] }],
    build: (b, [x, scale, bias]) => b.reshape(b.op1('InstanceNormalization', [b.reshape(x, [2, 2, -1]), scale, bias]), [2, 4, 3]),
  },
];

for (const c of instanceNormCases) {
  test(`gradient of ${c.name} matches finite differences (float32)`, async () => {
    const r = await checkGradient({ ...c, precision: 'float32', forward64: instanceNormForward64 });
    assert.ok(r.relativeError < 1e-3, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

/** dX, dScale, dB of sum(LayerNormalization(x) * w) in float32, with the node's Mean/InvStdDev outputs or without. */
async function layerNormGradients(statistics: boolean, x: number[], scale: number[], bias: number[], weights: number[]) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const names = [b.input('x', DType.FLOAT, [2, 3, 4]), b.input('scale', DType.FLOAT, [4]), b.input('bias', DType.FLOAT, [4])];
  const outs = b.op('LayerNormalization', names, { axis: -1, epsilon: 1e-3 }, { outputs: statistics ? 3 : 1 });
  const loss = b.sumAll(b.mul(outs[0], b.constant(Tensor.float([2, 3, 4], weights))));
  const grads = differentiate(g, { loss, wrt: names });
  const outputs = names.map((n) => b.output(grads.get(n)!));
  const s = await Session.create(g, { threads: 1 });
  const got = await s.run({ x: toOrtTensor(Tensor.float([2, 3, 4], x)), scale: toOrtTensor(Tensor.float([4], scale)), bias: toOrtTensor(Tensor.float([4], bias)) });
  await s.release();
  return { grads: outputs.map((o) => Array.from(got[o].data as Float32Array)), nodes: g.nodes.map((n) => n.opType) };
}

test('LayerNormalization gradient from its saved Mean/InvStdDev (float32) equals the recomputed one', async () => {
  const rng = new Rng(4);
  const draw = (n: number) => Array.from({ length: n }, () => rng.range(-2, 2));
  const [x, scale, bias, w] = [draw(24), draw(4), draw(4), draw(24)];
  const saved = await layerNormGradients(true, x, scale, bias, w);
  const recomputed = await layerNormGradients(false, x, scale, bias, w);
  // The saved statistics replace the moments: fewer ReduceMean nodes in the gradient.
  const reduceMeans = (nodes: string[]) => nodes.filter((n) => n === 'ReduceMean').length;
  assert.ok(reduceMeans(saved.nodes) < reduceMeans(recomputed.nodes), `${reduceMeans(saved.nodes)} vs ${reduceMeans(recomputed.nodes)} ReduceMean`);
  ['dX', 'dScale', 'dB'].forEach((what, i) => assertClose(saved.grads[i], recomputed.grads[i], what, 1e-5));
});

test('LayerNormalization refuses a gradient through its Mean output', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.DOUBLE, [2, 4]);
  const [y, mean] = b.op('LayerNormalization', [x, b.input('s', DType.DOUBLE, [4])], {}, { outputs: 3 });
  const loss = b.sumAll(b.add(y, b.castLike(mean, y)));
  assert.throws(() => differentiate(g, { loss, wrt: [x] }), /output 1 \(Mean \/ InvStdDev/);
});

// ---- exact values against a hand computation ----

interface BnData {
  shape: number[];
  x: number[];
  scale: number[];
  bias: number[];
  mean: number[];
  variance: number[];
}

function sampleBn(shape: number[], seed = 3): BnData {
  const rng = new Rng(seed);
  const c = shape[1];
  const n = shape.reduce((p, q) => p * q, 1);
  const draw = (k: number, lo: number, hi: number) => Array.from({ length: k }, () => rng.range(lo, hi));
  return { shape, x: draw(n, -2, 3), scale: draw(c, 0.5, 1.5), bias: draw(c, -1, 1), mean: draw(c, -1, 1), variance: draw(c, 0.5, 2) };
}

/** Training-mode batch norm in plain JS: biased variance normalises, unbiased variance updates (PyTorch). */
function bnTrainReference(d: BnData, epsilon: number, momentum: number) {
  const [n, c] = d.shape;
  const inner = d.shape.slice(2).reduce((p, q) => p * q, 1);
  const at = (i: number, ch: number, k: number) => (i * c + ch) * inner + k;
  const m = n * inner;
  const y = new Array<number>(d.x.length);
  const batchMean: number[] = [];
  const batchInvStd: number[] = [];
  const newMean: number[] = [];
  const newVar: number[] = [];
  for (let ch = 0; ch < c; ch++) {
    let sum = 0;
    for (let i = 0; i < n; i++) for (let k = 0; k < inner; k++) sum += d.x[at(i, ch, k)];
    const mu = sum / m;
    let sq = 0;
    for (let i = 0; i < n; i++) for (let k = 0; k < inner; k++) sq += (d.x[at(i, ch, k)] - mu) ** 2;
    const biased = sq / m;
    const invStd = 1 / Math.sqrt(biased + epsilon);
    for (let i = 0; i < n; i++) for (let k = 0; k < inner; k++) y[at(i, ch, k)] = (d.x[at(i, ch, k)] - mu) * invStd * d.scale[ch] + d.bias[ch];
    batchMean.push(mu);
    batchInvStd.push(invStd);
    newMean.push(momentum * d.mean[ch] + (1 - momentum) * mu);
    newVar.push(momentum * d.variance[ch] + (1 - momentum) * (sq / (m - 1)));
  }
  return { y, batchMean, batchInvStd, newMean, newVar };
}

/** Inference-form batch norm in plain JS with the given running statistics. */
function bnInferenceReference(d: BnData, mean: number[], variance: number[], epsilon: number) {
  const c = d.shape[1];
  const inner = d.shape.slice(2).reduce((p, q) => p * q, 1);
  return d.x.map((v, idx) => {
    const ch = Math.floor(idx / inner) % c;
    return ((v - mean[ch]) / Math.sqrt(variance[ch] + epsilon)) * d.scale[ch] + d.bias[ch];
  });
}

/** A graph with X (shape `xShape`, possibly symbolic) and the four per-channel inputs, all float64. */
function bnGraph(xShape: Shape, c: number) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const names = [b.input('x', DType.DOUBLE, xShape), ...['scale', 'bias', 'mean', 'var'].map((n) => b.input(n, DType.DOUBLE, [c]))];
  return { g, b, names };
}

function feedsOf(d: BnData) {
  const c = d.shape[1];
  return {
    x: toOrtTensor(Tensor.double(d.shape, d.x)),
    scale: toOrtTensor(Tensor.double([c], d.scale)),
    bias: toOrtTensor(Tensor.double([c], d.bias)),
    mean: toOrtTensor(Tensor.double([c], d.mean)),
    var: toOrtTensor(Tensor.double([c], d.variance)),
  };
}

async function runGraph(g: Graph, feeds: Record<string, ReturnType<typeof toOrtTensor>>): Promise<Record<string, number[]>> {
  const s = await Session.create(g, { threads: 1 });
  const out = await s.run(feeds);
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v.data as Float64Array, Number)]));
}

function assertClose(actual: number[], expected: number[], what: string, tol = 1e-10) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]) <= tol * Math.max(1, Math.abs(expected[i])), `${what}[${i}]: got ${a}, expected ${expected[i]}`));
}

test('BatchNormTrain outputs equal a hand computation: Y, batch stats, momentum update with unbiased variance', async () => {
  const d = sampleBn([2, 3, 2, 2]);
  const { g, b, names } = bnGraph(d.shape, 3);
  const outs = bnTrain(b, names, { epsilon: 1e-3, momentum: 0.8 });
  outs.forEach((o) => b.output(o));
  const got = await runGraph(g, feedsOf(d));
  const want = bnTrainReference(d, 1e-3, 0.8);
  assertClose(got[outs[0]], want.y, 'Y');
  assertClose(got[outs[1]], want.batchMean, 'batch_mean');
  assertClose(got[outs[2]], want.batchInvStd, 'batch_inv_std');
  assertClose(got[outs[3]], want.newMean, 'new_running_mean');
  assertClose(got[outs[4]], want.newVar, 'new_running_var');
});

test("ORT's inference BatchNormalization with the updated running stats gives the expected Y", async () => {
  const d = sampleBn([4, 3], 5);
  const { g, b, names } = bnGraph(d.shape, 3);
  const outs = bnTrain(b, names);
  const y = b.op1('BatchNormalization', [names[0], names[1], names[2], outs[3], outs[4]]);
  b.output(y);
  const got = await runGraph(g, feedsOf(d));
  const stats = bnTrainReference(d, 1e-5, 0.9);
  assertClose(got[y], bnInferenceReference(d, stats.newMean, stats.newVar, 1e-5), 'Y (inference)');
});

test('BatchNormTrain lowering with a symbolic batch dim runs for two batch sizes', async () => {
  const { g, b, names } = bnGraph(['N', 3, 2], 3);
  const outs = bnTrain(b, names, { momentum: 0.7 });
  assert.deepEqual(b.shape(outs[0]), ['N', 3, 2]);
  outs.forEach((o) => b.output(o));
  for (const n of [2, 5]) {
    const d = sampleBn([n, 3, 2], 10 + n);
    const got = await runGraph(g, feedsOf(d));
    const want = bnTrainReference(d, 1e-5, 0.7);
    assertClose(got[outs[0]], want.y, `Y (N=${n})`);
    assertClose(got[outs[4]], want.newVar, `new_running_var (N=${n})`);
  }
});

test('BatchNormTrain gradient with a symbolic batch dim equals the static-shape gradient', async () => {
  const d = sampleBn([3, 3, 2], 21);
  const grads = async (xShape: Shape) => {
    const { g, b, names } = bnGraph(xShape, 3);
    const y = bnTrain(b, names)[0];
    const loss = b.sumAll(b.mul(b.mul(y, y), names[0]));
    const gr = differentiate(g, { loss, wrt: names.slice(0, 3) });
    const outs = names.slice(0, 3).map((n) => b.output(gr.get(n)!));
    const got = await runGraph(g, feedsOf(d));
    return outs.map((o) => got[o]);
  };
  const [symbolic, fixedShape] = [await grads(['N', 3, 2]), await grads([3, 3, 2])];
  ['dx', 'dscale', 'dbias'].forEach((what, i) => assertClose(symbolic[i], fixedShape[i], what, 1e-12));
});

test('toTrainingBatchNorm swaps BatchNormalization for BatchNormTrain, keeps Y, exposes running stats', async () => {
  const d = sampleBn([2, 3, 2, 2], 8);
  const { g, b, names } = bnGraph(d.shape, 3);
  const y = b.op1('BatchNormalization', names, { epsilon: 1e-3, momentum: 0.6 });
  b.output(b.abs(y));
  const before = JSON.stringify(g.nodes);
  const { graph, runningStats } = toTrainingBatchNorm(g);
  assert.equal(JSON.stringify(g.nodes), before, 'the original graph is untouched');
  const train = graph.nodes.find((n) => n.opType === 'BatchNormTrain')!;
  assert.equal(train.domain, 'ai.qatkit');
  assert.equal(train.outputs[0], y);
  assert.equal(graph.nodes.findIndex((n) => n === train), g.nodes.findIndex((n) => n.opType === 'BatchNormalization'));
  assert.equal(runningStats.length, 1);
  const stats = runningStats[0];
  assert.equal(stats.mean, 'mean');
  assert.equal(stats.var, 'var');
  const got = await runGraph(graph, feedsOf(d));
  const want = bnTrainReference(d, 1e-3, 0.6);
  assertClose(got[graph.outputs[0].name], want.y.map(Math.abs), 'Abs(Y)');
  assertClose(got[stats.newMean], want.newMean, 'new mean');
  assertClose(got[stats.newVar], want.newVar, 'new var');
});

test('shape inference: BatchNormTrain stats are [C]; LayerNormalization Mean/InvStdDev keep rank', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, ['N', 4, 5]);
  const c = b.input('c', DType.FLOAT, [4]);
  const outs = bnTrain(b, [x, c, c, c, c]);
  assert.deepEqual(outs.map((o) => b.shape(o)), [['N', 4, 5], [4], [4], [4], [4]]);
  assert.deepEqual(b.shape(b.op1('BatchNormalization', [x, c, c, c, c])), ['N', 4, 5]);
  const ln = b.op('LayerNormalization', [x, b.input('s', DType.FLOAT, [4, 5])], { axis: 1 }, { outputs: 3 });
  assert.deepEqual(ln.map((o) => b.shape(o)), [['N', 4, 5], ['N', 1, 1], ['N', 1, 1]]);
  // Mean/InvStdDev take stash_type (float), as ORT's kernel does even for double X.
  const x64 = b.input('x64', DType.DOUBLE, [2, 3]);
  const ln64 = b.op('LayerNormalization', [x64, b.input('s64', DType.DOUBLE, [3])], {}, { outputs: 3 });
  assert.deepEqual(ln64.map((o) => b.dtype(o)), [DType.DOUBLE, DType.FLOAT, DType.FLOAT]);
  assert.throws(() => b.op1('BatchNormalization', [x, c, c, c, c], { training_mode: 1 }), /training_mode=1 is not supported/);
});

test('BatchNormTrain refuses one value per channel (M=1), where the unbiased variance is undefined', () => {
  const { g, b, names } = bnGraph([1, 3], 3);
  bnTrain(b, names).forEach((o) => b.output(o));
  assert.throws(() => lowerCustomOps(g), /expected more than 1 value per channel.*M=1/);
});

test('BatchNormTrain refuses a gradient through its saved batch statistics rather than dropping it', () => {
  const { g, b, names } = bnGraph([4, 3], 3);
  const outs = bnTrain(b, names);
  const loss = b.sumAll(b.add(b.mul(outs[0], outs[0]), b.unsqueeze(outs[1], [0])));
  assert.throws(() => differentiate(g, { loss, wrt: [names[0]] }), /output 1 \(batch_mean/);
});

test('BatchNormTrain with input_scale c equals BatchNormTrain of X / c on every output', async () => {
  const d = sampleBn([3, 3, 2, 2], 31);
  const { g, b, names } = bnGraph(d.shape, 3);
  const c = b.input('c', DType.DOUBLE, [3]);
  const scaled = bnTrain(b, names, { epsilon: 1e-3, momentum: 0.8 });
  const divided = bnTrain(b, [b.div(names[0], b.reshape(c, [1, 3, 1, 1])), ...names.slice(1)], { epsilon: 1e-3, momentum: 0.8 });
  const fused = g.nodes.find((n) => n.opType === 'BatchNormTrain')!;
  fused.inputs.push(c);
  [...scaled, ...divided].forEach((o) => b.output(o));
  const got = await runGraph(g, { ...feedsOf(d), c: toOrtTensor(Tensor.double([3], [0.5, -2, 1.7])) });
  ['Y', 'batch_mean', 'batch_inv_std', 'new_mean', 'new_var'].forEach((what, i) => assertClose(got[scaled[i]], got[divided[i]], what, 1e-9));
});

test('toTrainingBatchNorm takes the BN-fold division into BatchNormTrain (no Div left), same outputs', async () => {
  const d = sampleBn([2, 3, 2, 2], 9);
  const { g, b, names } = bnGraph(d.shape, 3);
  const c = b.input('c', DType.DOUBLE, [3]);
  const unscaled = b.identity(b.div(names[0], b.reshape(c, [1, -1, 1, 1])));
  b.output(b.abs(b.op1('BatchNormalization', [unscaled, ...names.slice(1)], { epsilon: 1e-3 })));
  const { graph, runningStats } = toTrainingBatchNorm(g);
  assert.ok(!graph.nodes.some((n) => n.opType === 'Div'), graph.nodes.map((n) => n.opType).join(' '));
  assert.equal(graph.nodes.find((n) => n.opType === 'BatchNormTrain')!.inputs[0], 'x');
  const cValues = [0.5, -2, 1.7];
  const got = await runGraph(graph, { ...feedsOf(d), c: toOrtTensor(Tensor.double([3], cValues)) });
  const inner = 4;
  const divided = { ...d, x: d.x.map((v, i) => v / cValues[Math.floor(i / inner) % 3]) };
  const want = bnTrainReference(divided, 1e-3, 0.9);
  assertClose(got[graph.outputs[0].name], want.y.map(Math.abs), 'Abs(Y)', 1e-9);
  assertClose(got[runningStats[0].newVar], want.newVar, 'new var', 1e-9);
});

test('toTrainingBatchNorm leaves a division that another node also reads', () => {
  const { g, b, names } = bnGraph([2, 3, 2, 2], 3);
  const divided = b.div(names[0], b.reshape(b.input('c', DType.DOUBLE, [3]), [1, -1, 1, 1]));
  b.output(b.add(b.op1('BatchNormalization', [divided, ...names.slice(1)]), divided));
  const { graph } = toTrainingBatchNorm(g);
  assert.ok(graph.nodes.some((n) => n.opType === 'Div'));
  assert.equal(graph.nodes.find((n) => n.opType === 'BatchNormTrain')!.inputs.length, 5);
});
