import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';

const cases: CheckCase[] = [
  { name: 'Reshape [2,3,4] -> [4,6]', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reshape(x, [4, 6]) },
  { name: 'Reshape with 0 and -1', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reshape(x, [0, -1]) },
  { name: 'Flatten axis 2', inputs: [{ shape: [2, 3, 2, 2] }], build: (b, [x]) => b.op1('Flatten', [x], { axis: 2 }) },
  { name: 'Transpose perm [2,0,1]', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.transpose(x, [2, 0, 1]) },
  // Attention's head split and merge: [B, T, H, d] <-> [B, H, T, d], and k^T on the last two axes.
  { name: 'Transpose 4-D perm [0,2,1,3]', inputs: [{ shape: [2, 3, 2, 4] }], build: (b, [x]) => b.transpose(x, [0, 2, 1, 3]) },
  { name: 'Transpose 4-D perm [0,1,3,2]', inputs: [{ shape: [1, 2, 3, 4] }], build: (b, [x]) => b.transpose(x, [0, 1, 3, 2]) },
  { name: 'Transpose default (reverse)', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.op1('Transpose', [x]) },
  { name: 'Squeeze axes [1]', inputs: [{ shape: [2, 1, 3] }], build: (b, [x]) => b.squeeze(x, [1]) },
  { name: 'Unsqueeze axes [0, 3]', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.unsqueeze(x, [0, 3]) },
  { name: 'Expand [3,1] -> [2,3,4]', inputs: [{ shape: [3, 1] }], build: (b, [x]) => b.op1('Expand', [x, b.ints([2, 3, 4])]) },
  { name: 'Expand rank-increasing [3] -> [2,4,3]', inputs: [{ shape: [3] }], build: (b, [x]) => b.op1('Expand', [x, b.ints([2, 4, 3])]) },
  // The shape may be shorter than the input and may hold 1s where the input's dim is kept.
  { name: 'Expand [2,3,1] by a shorter shape [4]', inputs: [{ shape: [2, 3, 1] }], build: (b, [x]) => b.op1('Expand', [x, b.ints([4])]) },
  { name: 'Expand [2,1,3] by [1,4,1] (1s keep the input dims)', inputs: [{ shape: [2, 1, 3] }], build: (b, [x]) => b.op1('Expand', [x, b.ints([1, 4, 1])]) },
  { name: 'Expand [1,1,3,3] by [2,2,1,1] (a mask over batch and heads)', inputs: [{ shape: [1, 1, 3, 3] }], build: (b, [x]) => b.op1('Expand', [x, b.ints([2, 2, 1, 1])]) },
  { name: 'ReduceSum axes [1] keepdims 0', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceSum(x, [1], false) },
  { name: 'ReduceSum all axes', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.sumAll(x) },
  { name: 'ReduceMean axes [0, 2] keepdims 1', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceMean(x, [0, 2], true) },
  { name: 'ReduceMean over the last axis keepdims 1 (RMSNorm) of [2,3,4]', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceMean(x, [-1], true) },
  { name: 'ReduceSum over the last axis of [2,3,4] keepdims 0', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceSum(x, [2], false) },
  { name: 'ReduceMean over all axes of [2,3,4] (no axes given)', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.op1('ReduceMean', [x], { keepdims: 0 }) },
  { name: 'ReduceMean negative axis keepdims 0', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceMean(x, [-1], false) },
  { name: 'ReduceSumSquare axes [1]', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.op1('ReduceSumSquare', [x], { axes: [1], keepdims: 0 }) },
  { name: 'ReduceMax axis 1 (distinct values)', inputs: [{ shape: [2, 3], values: [0.1, 0.9, -0.4, 0.5, -0.2, 0.3] }], build: (b, [x]) => b.op1('ReduceMax', [x], { axes: [1], keepdims: 0 }) },
  { name: 'ReduceMin axes [0] keepdims 1 (distinct values)', inputs: [{ shape: [2, 3], values: [0.1, 0.9, -0.4, 0.5, -0.2, 0.3] }], build: (b, [x]) => b.op1('ReduceMin', [x], { axes: [0], keepdims: 1 }) },
  // F.normalize(x, dim=1) exports as x / Expand(Clip(ReduceL2(x, 1), eps)).
  { name: 'ReduceL2 axis 1 keepdims 1 (F.normalize)', inputs: [{ shape: [3, 4] }], build: (b, [x]) => b.div(x, b.op1('ReduceL2', [x], { axes: [1], keepdims: 1 })) },
  { name: 'ReduceL2 all axes keepdims 0', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.op1('ReduceL2', [x], { keepdims: 0 }) },
  { name: 'ReduceL1 axes [0, 2]', inputs: [{ shape: [2, 3, 2], sample: (r) => (r.uniform() < 0.5 ? -1 : 1) * r.range(0.2, 1.5) }], build: (b, [x]) => b.op1('ReduceL1', [x], { axes: [0, 2], keepdims: 0 }) },
  { name: 'ReduceLogSumExp axis -1', inputs: [{ shape: [2, 5] }], build: (b, [x]) => b.op1('ReduceLogSumExp', [x], { axes: [-1], keepdims: 0 }) },
  { name: 'ReduceLogSum axis 1 of positive values', inputs: [{ shape: [2, 3], sample: (r) => r.range(0.5, 2) }], build: (b, [x]) => b.op1('ReduceLogSum', [x], { axes: [1], keepdims: 1 }) },
  { name: 'DepthToSpace DCR blocksize 2 of [1,8,2,3]', inputs: [{ shape: [1, 8, 2, 3] }], build: (b, [x]) => b.op1('DepthToSpace', [x], { blocksize: 2 }) },
  // F.pixel_shuffle(x, 2) as torch.onnx.export writes it.
  { name: 'DepthToSpace CRD blocksize 2 of [2,8,2,3] (pixel_shuffle)', inputs: [{ shape: [2, 8, 2, 3] }], build: (b, [x]) => b.op1('DepthToSpace', [x], { blocksize: 2, mode: 'CRD' }) },
  { name: 'SpaceToDepth blocksize 2 of [2,2,4,6]', inputs: [{ shape: [2, 2, 4, 6] }], build: (b, [x]) => b.op1('SpaceToDepth', [x], { blocksize: 2 }) },
  { name: 'CumSum axis 1', inputs: [{ shape: [2, 4] }], build: (b, [x]) => b.op1('CumSum', [x, b.constant(Tensor.int64([], [1]))]) },
  { name: 'CumSum axis -1 exclusive reverse', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.op1('CumSum', [x, b.constant(Tensor.int64([], [-1]))], { exclusive: 1, reverse: 1 }) },
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

test('Range of constant inputs has its exact length (int64 positions, float steps)', () => {
  const b = new GraphBuilder(new Graph());
  const range = (start: number, limit: number, delta: number, dtype = DType.INT64) =>
    b.op1('Range', [b.constant(start, dtype), b.constant(limit, dtype), b.constant(delta, dtype)]);
  assert.deepEqual(b.type(range(0, 128, 1)), { dtype: DType.INT64, shape: [128] });
  assert.deepEqual(b.shape(range(3, 10, 3)), [3]);
  assert.deepEqual(b.shape(range(10, 4, -2)), [3]);
  assert.deepEqual(b.shape(range(5, 5, 1)), [0]);
  assert.deepEqual(b.type(range(0, 1, 0.25, DType.FLOAT)), { dtype: DType.FLOAT, shape: [4] });
});

test('Range takes no gradient: positions from Range feed a Gather whose table trains', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const table = b.input('table', DType.DOUBLE, [4, 2]);
  const length = b.input('length', DType.INT64, []);
  const positions = b.op1('Range', [b.constant(0, DType.INT64), length, b.constant(1, DType.INT64)]);
  const rows = b.op1('Gather', [table, positions]);
  const loss = b.sumAll(b.mul(rows, rows));
  const grad = b.output(differentiate(g, { loss, wrt: [table] }).get(table)!);
  const session = await Session.create(g, { threads: 1 });
  const values = [1, 2, 3, 4, 5, 6, 7, 8];
  const out = await session.run({ table: toOrtTensor(Tensor.double([4, 2], values)), length: toOrtTensor(Tensor.int64([], [3])) });
  assert.deepEqual(Array.from(out[grad].data as Float64Array), values.map((v, i) => (i < 6 ? 2 * v : 0)));
  await session.release();
});
