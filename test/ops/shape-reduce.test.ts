import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { DType } from '../../src/ir/dtype';

const cases: CheckCase[] = [
  { name: 'Reshape [2,3,4] -> [4,6]', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reshape(x, [4, 6]) },
  { name: 'Reshape with 0 and -1', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reshape(x, [0, -1]) },
  { name: 'Flatten axis 2', inputs: [{ shape: [2, 3, 2, 2] }], build: (b, [x]) => b.op1('Flatten', [x], { axis: 2 }) },
  { name: 'Transpose perm [2,0,1]', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.transpose(x, [2, 0, 1]) },
  { name: 'Transpose default (reverse)', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.op1('Transpose', [x]) },
  { name: 'Squeeze axes [1]', inputs: [{ shape: [2, 1, 3] }], build: (b, [x]) => b.squeeze(x, [1]) },
  { name: 'Unsqueeze axes [0, 3]', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.unsqueeze(x, [0, 3]) },
  { name: 'Expand [3,1] -> [2,3,4]', inputs: [{ shape: [3, 1] }], build: (b, [x]) => b.op1('Expand', [x, b.ints([2, 3, 4])]) },
  { name: 'ReduceSum axes [1] keepdims 0', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceSum(x, [1], false) },
  { name: 'ReduceSum all axes', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.sumAll(x) },
  { name: 'ReduceMean axes [0, 2] keepdims 1', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceMean(x, [0, 2], true) },
  { name: 'ReduceMean negative axis keepdims 0', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceMean(x, [-1], false) },
  { name: 'ReduceSumSquare axes [1]', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.op1('ReduceSumSquare', [x], { axes: [1], keepdims: 0 }) },
  { name: 'ReduceMax axis 1 (distinct values)', inputs: [{ shape: [2, 3], values: [0.1, 0.9, -0.4, 0.5, -0.2, 0.3] }], build: (b, [x]) => b.op1('ReduceMax', [x], { axes: [1], keepdims: 0 }) },
  { name: 'Cast node (float64 -> float64)', inputs: [{ shape: [4] }], build: (b, [x]) => b.mul(b.op1('Cast', [x], { to: DType.DOUBLE }), x) },
  { name: 'Identity', inputs: [{ shape: [3] }], build: (b, [x]) => b.identity(x) },
  // Chains: reshape then a broadcast reuse, and a reduction feeding a product with its input.
  { name: 'chain reshape(x) * mean(x)', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.mul(b.reshape(x, [3, 2]), b.reduceMean(x, [0, 1], false)) },
  { name: 'chain x * sum(x, axis 1)', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.mul(x, b.reduceSum(x, [1], true)) },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}
