import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { softmaxAxes } from '../../src/ops/softmax';
import { Rng } from '../../src/train/rng';

const logits = { sample: (r: Rng) => r.range(-2, 2) };

const cases: CheckCase[] = [
  { name: 'Softmax default axis (-1) of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('Softmax', [x]) },
  { name: 'Softmax axis 1 of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('Softmax', [x], { axis: 1 }) },
  { name: 'LogSoftmax axis -1 of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('LogSoftmax', [x], { axis: -1 }) },
  { name: 'LogSoftmax axis 1 of [2,3,4]', inputs: [{ shape: [2, 3, 4], ...logits }], build: (b, [x]) => b.op1('LogSoftmax', [x], { axis: 1 }) },
  // Chains: x reaches the loss through the softmax and directly.
  { name: 'chain softmax(x) * x', inputs: [{ shape: [3, 4], ...logits }], build: (b, [x]) => b.mul(b.op1('Softmax', [x]), x) },
  { name: 'chain logsoftmax(x) + softmax(x, axis 0)', inputs: [{ shape: [3, 4], ...logits }], build: (b, [x]) => b.add(b.op1('LogSoftmax', [x]), b.op1('Softmax', [x], { axis: 0 })) },
];

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
