import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Session } from '../../src/runtime/session';
import { fuseConvBatchNorm, fuseConvFrozenBatchNorm } from '../../src/train/fuse-conv-batchnorm';
import { Rng } from '../../src/train/rng';

interface Case {
  x: number[];
  w: number[];
  attrs: Record<string, number[]>;
  unscale: boolean;
  /** MaxPool 2x2 stride 2 after the batch norm, plus a full ReduceMin of Y (a hoisted observer's extreme). */
  pool?: boolean;
}

const PARAMS = ['w', 'gamma', 'beta', 'c'];

/** Conv -> BatchNormTrain (optionally normalising conv / c), loss = sum(Y * r); outputs Y, the stats, the gradients. */
function build(k: Case, fuse: boolean): { graph: Graph; fused: number } {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, k.x);
  const w = b.input('w', DType.FLOAT, k.w);
  const out = k.w[0];
  const [gamma, beta, mean, variance, c] = ['gamma', 'beta', 'mean', 'var', 'c'].map((n) => b.input(n, DType.FLOAT, [out]));
  const conv = b.op1('Conv', [x, w], k.attrs);
  const outs = b.op('BatchNormTrain', [conv, gamma, beta, mean, variance, ...(k.unscale ? [c] : [])], { epsilon: 0.3, momentum: 0.7 }, { domain: 'ai.qatkit', outputs: 5 });
  const extremes = k.pool ? [b.op1('ReduceMin', [outs[0]], { keepdims: 1 }), b.op1('ReduceMax', [outs[0]], { axes: [0, 2, 3], keepdims: 1 })] : [];
  const y = k.pool ? b.op1('MaxPool', [outs[0]], { kernel_shape: [2, 2], strides: [2, 2] }) : outs[0];
  const r = b.input('r', DType.FLOAT, b.shape(y));
  const loss = b.sumAll(b.mul(y, r));
  const fused = fuse ? fuseConvBatchNorm(g, PARAMS) : 0;
  const wrt = k.unscale ? PARAMS : PARAMS.slice(0, 3);
  const grads = differentiate(g, { loss, wrt });
  for (const v of [y, ...outs.slice(1), ...extremes, ...wrt.map((p) => grads.get(p)!)]) b.output(v);
  return { graph: g, fused };
}

async function run(g: Graph, seed: number): Promise<Float32Array[]> {
  const rng = new Rng(seed);
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of g.inputs) {
    const dims = v.shape as number[];
    const n = dims.reduce((p, q) => p * q, 1);
    const positive = v.name === 'var' || v.name === 'c';
    const values = Float32Array.from({ length: n }, (_, i) => (positive ? 0.5 + rng.range(0, 1) : v.name === 'x' ? 1.5 + rng.normal() : rng.normal()) * (v.name === 'c' && i === 1 ? -1 : 1));
    feeds[v.name] = new ort.Tensor('float32', values, dims);
  }
  const s = await Session.create(g, { threads: 1 });
  const out = await s.run(feeds);
  await s.release();
  return g.outputs.map((o) => out[o.name].data as Float32Array);
}

const cases: [string, Case][] = [
  ['3x3 pad 1, BN-fold input_scale (one negative c)', { x: [4, 2, 6, 6], w: [5, 2, 3, 3], attrs: { pads: [1, 1, 1, 1] }, unscale: true }],
  ['3x3 stride 2, no pads, plain BN', { x: [3, 3, 7, 7], w: [4, 3, 3, 3], attrs: { strides: [2, 2] }, unscale: false }],
  ['3x3 pad 1 + MaxPool 2x2 absorbed, BN-fold input_scale', { x: [4, 2, 6, 6], w: [5, 2, 3, 3], attrs: { pads: [1, 1, 1, 1] }, unscale: true, pool: true }],
  ['3x3 no pads + MaxPool 2x2 absorbed (odd input, even output), plain BN', { x: [3, 1, 10, 8], w: [3, 1, 3, 3], attrs: {}, unscale: false, pool: true }],
  ['3x2 kernel, asymmetric pads + MaxPool 2x2 absorbed', { x: [2, 2, 7, 6], w: [4, 2, 3, 2], attrs: { pads: [1, 0, 0, 1] }, unscale: false, pool: true }],
  ['3x3 stride 2 + MaxPool 2x2 not absorbed', { x: [3, 1, 9, 9], w: [4, 1, 3, 3], attrs: { strides: [2, 2] }, unscale: false, pool: true }],
];

for (const [name, k] of cases) {
  test(`ConvBatchNormTrain equals Conv -> BatchNormTrain: outputs, running stats and gradients (${name})`, async () => {
    const plain = build(k, false);
    const fused = build(k, true);
    assert.equal(fused.fused, 1);
    assert.ok(!fused.graph.nodes.some((n) => n.opType === 'BatchNormTrain'), 'BatchNormTrain replaced');
    // One im2col of x, shared by the op's forward and its gradient (inputs 7-9: patches, mean, second moment).
    assert.equal(fused.graph.nodes.filter((n) => n.opType === 'Conv' && n.inputs[0] === 'x').length, 1);
    const node = fused.graph.nodes.find((n) => n.opType === 'ConvBatchNormTrain')!;
    assert.equal(node.inputs.length, 10);
    // A pool after a strided conv stays a MaxPool (its windows are not the conv's window positions).
    const absorbed = !!k.pool && !k.attrs.strides;
    assert.equal(fused.graph.nodes.some((n) => n.opType === 'MaxPool'), !!k.pool && !absorbed);
    assert.equal(node.attrs.max_pool !== undefined, absorbed);
    const [want, got] = [await run(plain.graph, 5), await run(fused.graph, 5)];
    const names = plain.graph.outputs.map((o) => o.name);
    want.forEach((values, i) => {
      const scale = Math.max(1e-3, ...values.map(Math.abs));
      values.forEach((v, j) => assert.ok(Math.abs(got[i][j] - v) <= 2e-4 * scale, `${names[i]}[${j}]: fused ${got[i][j]}, plain ${v} (scale ${scale})`));
    });
  });
}

test('fuseConvBatchNorm leaves convs whose input depends on a parameter, with a bias, or with many patch rows', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [2, 2, 5, 5]);
  const stats = (n: number) => ['g', 'b', 'm', 'v'].map((s) => b.input(`${s}${n}`, DType.FLOAT, [4]));
  const bn = (v: string, n: number) => b.op1('BatchNormTrain', [v, ...stats(n)], {}, { domain: 'ai.qatkit' });
  const w = b.input('w', DType.FLOAT, [4, 2, 3, 3]);
  const scaled = b.mul(x, b.input('p', DType.FLOAT, [])); // depends on parameter p
  b.output(bn(b.op1('Conv', [scaled, w], { pads: [1, 1, 1, 1] }), 0));
  b.output(bn(b.op1('Conv', [x, w, b.input('bias', DType.FLOAT, [4])]), 1));
  b.output(bn(b.op1('Conv', [b.input('wide', DType.FLOAT, [2, 4, 5, 5]), b.input('w4', DType.FLOAT, [4, 4, 3, 3])]), 2));
  assert.equal(fuseConvBatchNorm(g, ['p', 'w']), 0);
});

/**
 * The frozen-BN form: Conv -> [Div by c] -> inference BatchNormalization [-> MaxPool 2x2 and observers' full
 * reductions], loss = sum(Y * r); outputs Y, the extremes and the gradients of w, gamma, beta (and c).
 */
function buildFrozen(k: Case, fuse: boolean, form: 'bn' | 'bias' = 'bn'): { graph: Graph; fused: number } {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, k.x);
  const w = b.input('w', DType.FLOAT, k.w);
  const out = k.w[0];
  const [gamma, beta, mean, variance] = ['gamma', 'beta', 'mean', 'var'].map((n) => b.input(n, DType.FLOAT, [out]));
  const c = b.input('c', DType.FLOAT, [1, out, 1, 1]);
  const conv = b.op1('Conv', [x, w], k.attrs);
  // 'bias': Conv + per-channel bias, the folded conv's form once its bias is on the int32 grid (quant/integer-bias.ts).
  const bn =
    form === 'bias'
      ? b.add(conv, b.reshape(beta, [1, out, 1, 1]))
      : b.op1('BatchNormalization', [k.unscale ? b.div(conv, c) : conv, gamma, beta, mean, variance], { epsilon: 0.3 });
  const extremes = k.pool ? [b.op1('ReduceMin', [bn], { keepdims: 1 }), b.op1('ReduceMax', [bn], { axes: [0, 2, 3], keepdims: 1 })] : [];
  const y = k.pool ? b.op1('MaxPool', [bn], { kernel_shape: [2, 2], strides: [2, 2] }) : bn;
  const r = b.input('r', DType.FLOAT, b.shape(y));
  const loss = b.sumAll(b.mul(y, r));
  const fused = fuse ? fuseConvFrozenBatchNorm(g, PARAMS) : 0;
  const wrt = form === 'bias' ? ['w', 'beta'] : k.unscale ? PARAMS : PARAMS.slice(0, 3);
  const grads = differentiate(g, { loss, wrt });
  for (const v of [y, ...extremes, ...wrt.map((p) => grads.get(p)!)]) b.output(v);
  return { graph: g, fused };
}

for (const [name, k] of cases) {
  test(`ConvAffine equals Conv -> [Div] -> frozen BatchNormalization: outputs and gradients (${name})`, async () => {
    const plain = buildFrozen(k, false);
    const fused = buildFrozen(k, true);
    assert.equal(fused.fused, 1);
    assert.ok(!fused.graph.nodes.some((n) => n.opType === 'BatchNormalization'), 'BatchNormalization replaced');
    const node = fused.graph.nodes.find((n) => n.opType === 'ConvAffine')!;
    const absorbed = !!k.pool && !k.attrs.strides;
    assert.equal(node.attrs.max_pool !== undefined, absorbed);
    assert.equal(fused.graph.nodes.some((n) => n.opType === 'MaxPool'), !!k.pool && !absorbed);
    const [want, got] = [await run(plain.graph, 5), await run(fused.graph, 5)];
    const names = plain.graph.outputs.map((o) => o.name);
    want.forEach((values, i) => {
      const scale = Math.max(1e-3, ...values.map(Math.abs));
      values.forEach((v, j) => assert.ok(Math.abs(got[i][j] - v) <= 2e-4 * scale, `${names[i]}[${j}]: fused ${got[i][j]}, plain ${v} (scale ${scale})`));
    });
  });
}

for (const [name, k] of cases) {
  test(`ConvAffine (gain 1) equals Conv -> Add(per-channel bias): outputs and gradients (${name})`, async () => {
    const plain = buildFrozen(k, false, 'bias');
    const fused = buildFrozen(k, true, 'bias');
    assert.equal(fused.fused, 1);
    assert.ok(!fused.graph.nodes.some((n) => n.opType === 'Conv' && n.inputs[1] === 'w'), 'the Conv is replaced');
    const [want, got] = [await run(plain.graph, 5), await run(fused.graph, 5)];
    const names = plain.graph.outputs.map((o) => o.name);
    want.forEach((values, i) => {
      const scale = Math.max(1e-3, ...values.map(Math.abs));
      values.forEach((v, j) => assert.ok(Math.abs(got[i][j] - v) <= 2e-4 * scale, `${names[i]}[${j}]: fused ${got[i][j]}, plain ${v} (scale ${scale})`));
    });
  });
}
