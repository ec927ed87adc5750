import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { softmaxAxes } from '../../src/ops/softmax';
import { Rng } from '../../src/train/rng';

const logits = { sample: (r: Rng) => r.range(-2, 2) };

const cases: CheckCase[] = [
  { name: 'Softmax default axis (-1) of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('Softmax', [x]) },
  { name: 'Softmax axis 1 of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('Softmax', [x], { axis: 1 }) },
  { name: 'LogSoftmax axis -1 of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('LogSoftmax', [x], { axis: -1 }) },
  { name: 'LogSoftmax axis 1 of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('LogSoftmax', [x], { axis: 1 }) },
  // Attention scores [B, H, T, T] normalise over the last axis; other axes must work too.
  { name: 'Softmax axis -1 of 4-D [2,2,3,3]', inputs: [{ shape: [2, 2, 3, 3], ...logits }], build: (b, [x]) => b.op1('Softmax', [x], { axis: -1 }) },
  { name: 'Softmax axis 1 of 4-D [2,3,2,2]', inputs: [{ shape: [2, 3, 2, 2], ...logits }], build: (b, [x]) => b.op1('Softmax', [x], { axis: 1 }) },
  { name: 'Softmax axis 0 of 4-D [3,2,1,2]', inputs: [{ shape: [3, 2, 1, 2], ...logits }], build: (b, [x]) => b.op1('Softmax', [x], { axis: 0 }) },
  { name: 'LogSoftmax over the vocabulary of logits [B,T,V] = [2,3,7]', inputs: [{ shape: [2, 3, 7], ...logits }], build: (b, [x]) => b.op1('LogSoftmax', [x], { axis: -1 }) },
  // Chains: x reaches the loss through the softmax and directly.
  { name: 'chain softmax(x) * x', inputs: [{ shape: [3, 4], ...logits }], build: (b, [x]) => b.mul(b.op1('Softmax', [x]), x) },
  { name: 'chain logsoftmax(x) + softmax(x, axis 0)', inputs: [{ shape: [3, 4], ...logits }], build: (b, [x]) => b.add(b.op1('LogSoftmax', [x]), b.op1('Softmax', [x], { axis: 0 })) },
];

// The language-model loss (src/train/losses.ts tokenCrossEntropy): LogSoftmax over V, the target's
// log-probability by GatherElements, the mean over B*T positions; and the reductions a loss may use instead.
const targets = { shape: [2, 3, 1], values: [6, 0, 3, 3, 1, 6], dtype: 'int64' as const };
cases.push(
  {
    name: 'chain LM loss -mean(GatherElements(LogSoftmax(logits [2,3,7]), targets))',
    inputs: [{ shape: [2, 3, 7], ...logits }, targets],
    build: (b, [x, t]) => b.neg(b.op1('ReduceMean', [b.op1('GatherElements', [b.op1('LogSoftmax', [x], { axis: -1 }), t], { axis: 2 })], { keepdims: 0 })),
  },
  {
    name: 'chain LM loss as ReduceSum over V then ReduceMean over [B,T] of -onehot * LogSoftmax',
    inputs: [{ shape: [2, 3, 7], ...logits }],
    build: (b, [x]) => {
      const oneHot = b.constant(Tensor.double([2, 3, 7], Array.from({ length: 42 }, (_, i) => (i % 7 === [6, 0, 3, 3, 1, 6][Math.floor(i / 7)] ? 1 : 0))));
      const perToken = b.reduceSum(b.mul(b.neg(oneHot), b.op1('LogSoftmax', [x], { axis: -1 })), [2], false);
      return b.reduceMean(perToken, [0, 1], false);
    },
  },
);

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

// Gradient rules emit opset-13+ nodes (e.g. Unsqueeze with an axes input), so ORT cannot run an opset-11
// training graph; the rule's choice of axes for old models is checked on its own.
test('softmax axes follow the opset: one axis from 13 on, every axis from `axis` on before', () => {
  const b = new GraphBuilder(new Graph());
  const x = b.input('x', DType.FLOAT, [2, 3, 4, 5]);
  b.op1('Softmax', [x], { axis: 1 });
  const withAxis = b.graph.nodes[0];
  b.op1('Softmax', [x]);
  const defaultAxis = b.graph.nodes[1];
  assert.deepEqual(softmaxAxes(withAxis, b, 4), [1]);
  assert.deepEqual(softmaxAxes(defaultAxis, b, 4), [3]);
  b.graph.opsets[''] = 11;
  assert.deepEqual(softmaxAxes(withAxis, b, 4), [1, 2, 3]);
  assert.deepEqual(softmaxAxes(defaultAxis, b, 4), [1, 2, 3]);
});
