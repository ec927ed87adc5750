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

const positive = { sample: (r: { range(a: number, b: number): number }) => r.range(0.5, 2) };
const wide = { sample: (r: { range(a: number, b: number): number }) => r.range(-3, 3) };
/** Pow(x, p) with p a float constant, as torch.onnx.export writes x ** p. */
const powConstant = (p: number): CheckCase['build'] => (b, [x]) => b.op1('Pow', [x, b.scalarLike(p, x)]);

const cases: CheckCase[] = [
  { name: 'Add broadcast [3,4]+[4]', inputs: [{ shape: [3, 4] }, { shape: [4] }], build: (b, [x, y]) => b.add(x, y) },
  { name: 'Add broadcast [2,1,4]+[3,1]', inputs: [{ shape: [2, 1, 4] }, { shape: [3, 1] }], build: (b, [x, y]) => b.add(x, y) },
  { name: 'Sub broadcast scalar', inputs: [{ shape: [] }, { shape: [2, 3] }], build: (b, [x, y]) => b.sub(x, y) },
  { name: 'Mul broadcast [2,3,4]*[3,1]', inputs: [{ shape: [2, 3, 4] }, { shape: [3, 1] }], build: (b, [x, y]) => b.mul(x, y) },
  { name: 'Div broadcast', inputs: [{ shape: [2, 3] }, { shape: [3], ...positive }], build: (b, [x, y]) => b.div(x, y) },
  { name: 'Pow both inputs', inputs: [{ shape: [2, 3], ...positive }, { shape: [3] }], build: (b, [x, y]) => b.op1('Pow', [x, y]) },
  // RMSNorm's exponents: x ** 2 (any sign), mean ** 0.5 and ** -0.5 (positive).
  { name: 'Pow exponent 2 (negative bases too)', inputs: [{ shape: [2, 3] }], build: powConstant(2) },
  { name: 'Pow exponent 0.5', inputs: [{ shape: [2, 3], ...positive }], build: powConstant(0.5) },
  { name: 'Pow exponent -0.5', inputs: [{ shape: [2, 3], ...positive }], build: powConstant(-0.5) },
  { name: 'Pow with an int64 exponent 3', inputs: [{ shape: [4] }], build: (b, [x]) => b.op1('Pow', [x, b.constant(3, DType.INT64)]) },
  { name: 'Sin', inputs: [{ shape: [2, 4], ...wide }], build: (b, [x]) => b.op1('Sin', [x]) },
  { name: 'Cos', inputs: [{ shape: [2, 4], ...wide }], build: (b, [x]) => b.op1('Cos', [x]) },
  // Max/Min: distinct values, so each output element has one selected input.
  { name: 'Max broadcast [2,3] and [3]', inputs: [{ shape: [2, 3] }, { shape: [3] }], build: (b, [x, y]) => b.op1('Max', [x, y]) },
  { name: 'Min broadcast [2,1] and [1,3]', inputs: [{ shape: [2, 1] }, { shape: [1, 3] }], build: (b, [x, y]) => b.op1('Min', [x, y]) },
  { name: 'Max of three inputs', inputs: [{ shape: [4] }, { shape: [4] }, { shape: [1] }], build: (b, xs) => b.op1('Max', xs) },
  { name: 'Max of one input (identity)', inputs: [{ shape: [3] }], build: (b, [x]) => b.op1('Max', [x]) },
  { name: 'Max with a constant 0 (a ReLU)', inputs: [{ shape: [6], values: [-1, -0.4, 0.3, 0.8, -2, 1.5] }], build: (b, [x]) => b.op1('Max', [x, b.scalarLike(0, x)]) },
  // Ties split dy evenly between the tied inputs; central differences give the same halves.
  { name: 'Max with ties (dy split evenly)', inputs: [{ shape: [4], values: [0.5, -0.2, 0.7, 1] }, { shape: [4], values: [0.5, 0.3, 0.7, -1] }], build: (b, [x, y]) => b.op1('Max', [x, y]) },
  { name: 'Neg', inputs: [{ shape: [5] }], build: (b, [x]) => b.neg(x) },
  { name: 'Sqrt', inputs: [{ shape: [5], ...positive }], build: (b, [x]) => b.sqrt(x) },
  { name: 'Reciprocal', inputs: [{ shape: [5], ...positive }], build: (b, [x]) => b.reciprocal(x) },
  { name: 'Exp', inputs: [{ shape: [5] }], build: (b, [x]) => b.exp(x) },
  { name: 'Log', inputs: [{ shape: [5], ...positive }], build: (b, [x]) => b.log(x) },
  { name: 'Abs', inputs: [{ shape: [6], values: [-1, -0.5, 0.3, 0.7, 2, -3] }], build: (b, [x]) => b.abs(x) },
  { name: 'Sum of three with broadcast', inputs: [{ shape: [2, 3] }, { shape: [3] }, { shape: [2, 1] }], build: (b, xs) => b.op1('Sum', xs) },
  // Chain tests: a value used twice must accumulate both contributions.
  { name: 'chain x*x + exp(x)', inputs: [{ shape: [4] }], build: (b, [x]) => b.add(b.mul(x, x), b.exp(x)) },
  { name: 'chain (x/y)*y - x', inputs: [{ shape: [3] }, { shape: [3], ...positive }], build: (b, [x, y]) => b.sub(b.mul(b.div(x, y), y), b.mul(x, y)) },
  { name: 'chain sin(x) * cos(x) + neg(x)', inputs: [{ shape: [5], ...wide }], build: (b, [x]) => b.add(b.mul(b.op1('Sin', [x]), b.op1('Cos', [x])), b.neg(x)) },
  { name: 'chain max(x, x*x) - min(x, 0.1)', inputs: [{ shape: [6], values: [-1.5, -0.5, 0.05, 0.4, 0.7, 1.8] }], build: (b, [x]) => b.sub(b.op1('Max', [x, b.mul(x, x)]), b.op1('Min', [x, b.scalarLike(0.1, x)])) },
  // A mask computed from x (Equal, Not) selects elements; the comparison itself carries no gradient.
  { name: 'chain where(not(x == 0), x * x, 1)', inputs: [{ shape: [5], values: [0, 0.5, -0.75, 0, 2] }], build: (b, [x]) => b.where(b.op1('Not', [b.equal(x, b.scalarLike(0, x))]), b.mul(x, x), b.scalarLike(1, x)) },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

test('Equal and Not infer bool outputs (Equal broadcasts) and take no gradient', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.DOUBLE, ['N', 1, 4]);
  const eq = b.equal(x, b.input('y', DType.DOUBLE, [3, 1]));
  assert.deepEqual(b.type(eq), { dtype: DType.BOOL, shape: ['N', 3, 4] });
  const not = b.op1('Not', [eq]);
  assert.deepEqual(b.type(not), { dtype: DType.BOOL, shape: ['N', 3, 4] });
  // The bool path ends the gradient: only the Where branch that passes x through contributes.
  const loss = b.sumAll(b.where(not, x, b.scalarLike(0, x)));
  assert.ok(differentiate(g, { loss, wrt: [x] }).get(x));
});

// Finite differences cannot check a three-way tie (one-sided slopes 0 and 1 give 1/2, not a split), so the
// even split is checked against its definition.
test('Min with a three-way tie gives each tied input a third of dy', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const inputs = ['a', 'b', 'c'].map((n) => b.input(n, DType.DOUBLE, [2]));
  const weights = b.constant(Tensor.double([2], [3, 5]));
  const loss = b.sumAll(b.mul(b.op1('Min', inputs), weights));
  const grads = differentiate(g, { loss, wrt: inputs });
  inputs.forEach((v) => b.output(grads.get(v)!));
  const session = await Session.create(g, { threads: 1 });
  const values = { a: [0.25, 0.9], b: [0.25, 0.1], c: [0.25, 0.4] };
  const out = await session.run(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, toOrtTensor(Tensor.double([2], v))])));
  const got = inputs.map((v) => Array.from(out[grads.get(v)!].data as Float64Array));
  // Element 0: a three-way tie (3 / 3 each); element 1: b alone is the minimum (all of 5).
  assert.deepEqual(got, [[1, 0], [1, 5], [1, 0]]);
  await session.release();
});
