// Gradient rules of the training-only ops that the step builder forms for speed (src/train/fuse-*.ts,
// tokenCrossEntropy): ai.qatkit.GeluTrain, SoftmaxAttention and SoftmaxCrossEntropy, against finite differences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { Rng } from '../../src/train/rng';

const QATKIT = { domain: 'ai.qatkit' };

/** erf in float64 by composite Simpson's rule on 2/sqrt(pi) e^{-t^2} (error ~1e-14 for |x| <= 4). */
function erf64(x: number): number {
  const n = 4000;
  const h = x / n;
  let sum = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) sum += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
  return ((2 / Math.sqrt(Math.PI)) * sum * h) / 3;
}

/** float64 forward of a check graph made of GeluTrain, Mul and ReduceSum nodes (ORT has no float64 Erf). */
function forward64(graph: Graph, feeds: Map<string, Tensor>, loss: string): number {
  const values = new Map<string, Float64Array>();
  for (const [name, t] of [...graph.initializers, ...feeds]) values.set(name, Float64Array.from(t.toNumbers()));
  const get = (name: string) => values.get(name) ?? assert.fail(`forward64: value '${name}' not computed`);
  for (const n of graph.nodes) {
    if (n.opType === 'GeluTrain') values.set(n.outputs[0], get(n.inputs[0]).map((v) => 0.5 * v * (1 + erf64(v / Math.SQRT2))));
    else if (n.opType === 'Mul') values.set(n.outputs[0], get(n.inputs[0]).map((v, i) => v * get(n.inputs[1])[i]));
    else if (n.opType === 'ReduceSum') values.set(n.outputs[0], Float64Array.of(get(n.inputs[0]).reduce((s, v) => s + v, 0)));
    else assert.fail(`forward64 does not evaluate ${n.opType}`);
  }
  return get(loss)[0];
}

const wide = { sample: (r: Rng) => r.range(-4, 4) };
const logits = { sample: (r: Rng) => r.range(-2, 2) };

/** -inf above the diagonal of a [T, S] mask whose keys extend `past` positions before the queries. */
function causalMask(t: number, s: number, past: number): number[] {
  return Array.from({ length: t * s }, (_, i) => (i % s > Math.floor(i / s) + past ? -Infinity : 0));
}

const attention = (b: GraphBuilder, inputs: string[]) => b.op('SoftmaxAttention', inputs, {}, { ...QATKIT, outputs: 2 })[0];

const cases: CheckCase[] = [
  {
    name: 'GeluTrain (exact GELU with saved Phi and Z)',
    inputs: [{ shape: [3, 7], ...wide }],
    build: (b, [x]) => b.op('GeluTrain', [x], {}, { ...QATKIT, outputs: 3 })[0],
    precision: 'float32',
    forward64,
  },
  {
    name: 'SoftmaxAttention without mask, [2,2,3,4] x [2,2,5,4] x [2,2,5,3]',
    inputs: [{ shape: [2, 2, 3, 4] }, { shape: [2, 2, 5, 4] }, { shape: [2, 2, 5, 3] }],
    build: (b, ins) => attention(b, ins),
  },
  {
    name: 'SoftmaxAttention with a causal -inf mask [3,5] broadcast over batch and heads',
    inputs: [{ shape: [2, 2, 3, 4] }, { shape: [2, 2, 5, 4] }, { shape: [2, 2, 5, 3] }, { shape: [3, 5], values: causalMask(3, 5, 2), constant: true }],
    build: (b, ins) => attention(b, ins),
  },
  {
    name: 'SoftmaxAttention with a learned additive bias [1,2,3,5] (its gradient summed over the batch)',
    inputs: [{ shape: [2, 2, 3, 4] }, { shape: [2, 2, 5, 4] }, { shape: [2, 2, 5, 3] }, { shape: [1, 2, 3, 5], ...logits }],
    build: (b, ins) => attention(b, ins),
  },
  {
    name: 'chain SoftmaxAttention(x, x, x): one value as queries, keys and values',
    inputs: [{ shape: [2, 4, 3] }],
    build: (b, [x]) => attention(b, [x, x, x]),
  },
  {
    name: 'SoftmaxCrossEntropy over V of logits [2,3,7]',
    inputs: [{ shape: [2, 3, 7], ...logits }, { shape: [2, 3], values: [6, 0, 3, 3, 1, 6], dtype: 'int64' }],
    build: (b, [x, t]) => b.op('SoftmaxCrossEntropy', [x, t], {}, { ...QATKIT, outputs: 2 })[0],
  },
  {
    name: 'chain SoftmaxCrossEntropy(x W) + sum(x): logits from a MatMul, x used twice',
    inputs: [{ shape: [2, 3, 4] }, { shape: [4, 5] }, { shape: [2, 3], values: [4, 0, 2, 2, 1, 3], dtype: 'int64' }],
    build: (b, [x, w, t]) => b.add(b.op('SoftmaxCrossEntropy', [b.matmul(x, w), t], {}, { ...QATKIT, outputs: 2 })[0], b.sumAll(x)),
  },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (${c.precision ?? 'float64'})`, async () => {
    const r = await checkGradient(c);
    const tolerance = c.precision === 'float32' ? 1e-3 : 1e-6;
    assert.ok(r.relativeError < tolerance, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

/** Runs a one-output graph built by `build` on x. */
async function evaluate(build: (b: GraphBuilder, x: string) => string, xs: number[], contribOps = false): Promise<Float32Array> {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [xs.length]);
  b.output(build(b, x));
  const session = await Session.create(g, { threads: 1, contribOps });
  const out = await session.run({ x: toOrtTensor(Tensor.float([xs.length], xs)) });
  await session.release();
  return out[g.outputs[0].name].data as Float32Array;
}

test('GeluTrain computes the same Y as the Erf form, bit for bit, and saves Phi and Z', async () => {
  const xs = [-12, -3, -1.5, -0.3, 0, 1e-8, 0.4, 1, 2.2, 3.1, 9];
  const erfForm = await evaluate((b, x) => b.mul(b.mul(x, b.constant(0.5)), b.add(b.op1('Erf', [b.mul(x, b.constant(Math.SQRT1_2))]), b.constant(1))), xs);
  const outs = ['y', 'phi', 'z'] as const;
  for (const [i, which] of outs.entries()) {
    const got = await evaluate((b, x) => b.op('GeluTrain', [x], {}, { ...QATKIT, outputs: 3 })[i], xs);
    xs.forEach((v, j) => {
      const want = which === 'y' ? erfForm[j] : which === 'phi' ? Math.fround(0.5 * (1 + erf64(Math.fround(v * Math.SQRT1_2)))) : Math.fround(v * Math.fround(Math.SQRT1_2));
      if (which === 'y') assert.equal(got[j], want, `y(${v})`);
      else assert.ok(Math.abs(got[j] - want) <= 2e-7 * Math.max(1, Math.abs(want)), `${which}(${v}) = ${got[j]}, want ${want}`);
    });
  }
});

test('GeluTrain gradient is finite and zero far out in the tails (exp(Z^2) overflows to inf)', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [4]);
  const [y] = b.op('GeluTrain', [x], {}, { ...QATKIT, outputs: 3 });
  const { differentiate } = await import('../../src/autodiff/grad');
  const grads = differentiate(g, { loss: b.sumAll(y), wrt: [x] });
  b.output(grads.get(x)!);
  const session = await Session.create(g, { threads: 1 });
  const out = await session.run({ x: toOrtTensor(Tensor.float([4], [-30, -14, 14, 30])) });
  assert.deepEqual(Array.from(out[g.outputs[0].name].data as Float32Array), [0, 0, 1, 1]);
  await session.release();
});
