import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';

const matmul = (shapeA: number[], shapeB: number[]): CheckCase => ({
  name: `MatMul [${shapeA}] x [${shapeB}]`,
  inputs: [{ shape: shapeA }, { shape: shapeB }],
  build: (b, [a, w]) => b.matmul(a, w),
});

/** Gemm with A [3,4] (or [4,3] when transposed), B [4,2] (or [2,4]), and C of the given shape. */
const gemm = (transA: number, transB: number, c: number[] | undefined, alpha = 1, beta = 1): CheckCase => ({
  name: `Gemm transA=${transA} transB=${transB} alpha=${alpha} beta=${beta} C=${c ? `[${c}]` : 'none'}`,
  inputs: [{ shape: transA ? [4, 3] : [3, 4] }, { shape: transB ? [2, 4] : [4, 2] }, ...(c ? [{ shape: c }] : [])],
  build: (b, [a, w, cc]) => b.op1('Gemm', cc ? [a, w, cc] : [a, w], { transA, transB, alpha, beta }),
});

const cases: CheckCase[] = [
  matmul([2, 3], [3, 4]),
  matmul([2, 3, 4], [4, 5]),
  matmul([2, 1, 3, 4], [3, 4, 2]),
  matmul([3, 4], [2, 4, 5]),
  matmul([3], [3, 4]),
  matmul([2, 3], [3]),
  matmul([4], [4]),
  matmul([3], [2, 3, 4]),
  matmul([2, 2, 3], [3]),
  // Attention: q k^T and p v on [B, H, T, d], with and without broadcast batch dims.
  matmul([2, 3, 4, 5], [2, 3, 5, 4]),
  matmul([2, 1, 4, 5], [1, 3, 5, 2]),
  matmul([2, 3, 4, 5], [3, 5, 2]),
  // A Linear layer on a 4-D activation (the weight gradient folds the batch dims into one Gemm).
  matmul([2, 2, 3, 4], [4, 3]),
  gemm(0, 0, [2]),
  gemm(0, 1, [1]),
  gemm(1, 0, [3, 2]),
  gemm(1, 1, undefined),
  gemm(0, 0, [3, 1], 0.5, 2),
  gemm(1, 1, [2], -1.5, 0.25),
  gemm(0, 1, undefined, 3),
  // Chains: x used as both operands.
  { name: 'chain matmul(x, x^T)', inputs: [{ shape: [3, 4] }], build: (b, [x]) => b.matmul(x, b.transpose(x, [1, 0])) },
  {
    name: 'chain attention softmax(q k^T) v with q = k = v = x [2,2,3,4]',
    inputs: [{ shape: [2, 2, 3, 4] }],
    build: (b, [x]) => b.matmul(b.op1('Softmax', [b.matmul(x, b.transpose(x, [0, 1, 3, 2]))], { axis: -1 }), x),
  },
  { name: 'chain gemm(x, x, transB) + x*x', inputs: [{ shape: [3, 3] }], build: (b, [x]) => b.add(b.op1('Gemm', [x, x], { transB: 1 }), b.mul(x, x)) },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

test('MatMul and Gemm shape inference', () => {
  const b = new GraphBuilder(new Graph());
  const v = (shape: (number | string)[]) => b.input(`v${b.graph.inputs.length}`, DType.FLOAT, shape);
  assert.deepEqual(b.shape(b.matmul(v(['N', 1, 3, 4]), v([5, 4, 2]))), ['N', 5, 3, 2]);
  assert.deepEqual(b.shape(b.matmul(v([4]), v([4]))), []);
  assert.deepEqual(b.shape(b.matmul(v([4]), v([2, 4, 3]))), [2, 3]);
  assert.deepEqual(b.shape(b.op1('Gemm', [v([4, 3]), v([5, 4])], { transA: 1, transB: 1 })), [3, 5]);
  assert.throws(() => b.matmul(v([2, 3]), v([4, 5])), /inner dims differ/);
  assert.throws(() => b.op1('Gemm', [v([2, 3]), v([3, 4]), v([3])]), /do not broadcast/);
});
