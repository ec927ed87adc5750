import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';

const positive = { sample: (r: { range(a: number, b: number): number }) => r.range(0.5, 2) };

const cases: CheckCase[] = [
  { name: 'Add broadcast [3,4]+[4]', inputs: [{ shape: [3, 4] }, { shape: [4] }], build: (b, [x, y]) => b.add(x, y) },
  { name: 'Add broadcast [2,1,4]+[3,1]', inputs: [{ shape: [2, 1, 4] }, { shape: [3, 1] }], build: (b, [x, y]) => b.add(x, y) },
  { name: 'Sub broadcast scalar', inputs: [{ shape: [] }, { shape: [2, 3] }], build: (b, [x, y]) => b.sub(x, y) },
  { name: 'Mul broadcast [2,3,4]*[3,1]', inputs: [{ shape: [2, 3, 4] }, { shape: [3, 1] }], build: (b, [x, y]) => b.mul(x, y) },
  { name: 'Div broadcast', inputs: [{ shape: [2, 3] }, { shape: [3], ...positive }], build: (b, [x, y]) => b.div(x, y) },
  { name: 'Pow both inputs', inputs: [{ shape: [2, 3], ...positive }, { shape: [3] }], build: (b, [x, y]) => b.op1('Pow', [x, y]) },
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
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}
