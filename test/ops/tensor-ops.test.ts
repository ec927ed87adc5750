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

// Covers src/ops/tensor-ops.ts (Concat, Split, Slice, Pad, Tile), indexing.ts (Gather, GatherElements)
// and select.ts (Where, Clip, Dropout, Trilu). The embedding gradient's methods: test/ops/indexing.test.ts.

const TO_END = 2 ** 53 - 1;
const slice = (b: GraphBuilder, x: string, starts: number[], ends: number[], axes?: number[], steps?: number[]) =>
  b.op1('Slice', [x, b.ints(starts), b.ints(ends), ...(axes ? [b.ints(axes)] : steps ? [''] : []), ...(steps ? [b.ints(steps)] : [])]);
const indices = (shape: number[], values: number[]) => ({ shape, values, dtype: 'int64' as const });
const bool = (b: GraphBuilder, dims: number[], values: number[]) => b.constant(values, DType.BOOL, dims);
const trilu = (b: GraphBuilder, x: string, upper: number, k?: number) => b.op1('Trilu', k === undefined ? [x] : [x, b.constant(k, DType.INT64)], { upper });
/** A causal mask [T, T] (true above the diagonal: the future), as `torch.triu(ones, 1).bool()`. */
const causalMask = (b: GraphBuilder, t: number) => bool(b, [t, t], Array.from({ length: t * t }, (_, i) => (i % t > Math.floor(i / t) ? 1 : 0)));
/** masked_fill(mask, -inf) as torch.onnx.export writes it: Where(mask, -inf, x). */
const maskedFill = (b: GraphBuilder, mask: string, x: string) => b.where(mask, b.scalarLike(-Infinity, x), x);
/** Clip test values: inside [-0.5, 0.5] and well outside, never within a step of the bounds. */
const clipValues = [-1.2, -0.7, -0.3, 0.1, 0.45, 0.8, 1.5, -0.05];

const cases: CheckCase[] = [
  // Concat / Split
  { name: 'Concat of 3 inputs on axis 1', inputs: [{ shape: [2, 1, 3] }, { shape: [2, 2, 3] }, { shape: [2, 3, 3] }], build: (b, xs) => b.op1('Concat', xs, { axis: 1 }) },
  { name: 'Concat on axis -1', inputs: [{ shape: [2, 2] }, { shape: [2, 3] }], build: (b, xs) => b.op1('Concat', xs, { axis: -1 }) },
  { name: 'Split into unequal parts [1,2,3] on axis 1', inputs: [{ shape: [2, 6] }], build: (b, [x]) => b.op('Split', [x, b.ints([1, 2, 3])], { axis: 1 }, { outputs: 3 }) },
  // nanoGPT's q, k, v = qkv.split(C, dim=2): the split input on the last axis of a 3-D tensor.
  { name: 'Split qkv [2,3,12] into [4,4,4] on axis -1', inputs: [{ shape: [2, 3, 12] }], build: (b, [x]) => b.op('Split', [x, b.ints([4, 4, 4])], { axis: -1 }, { outputs: 3 }) },
  { name: 'Split without the split input, 2 equal parts on axis -1, second unused', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.op('Split', [x], { axis: -1 }, { outputs: 2 })[0] },
  { name: 'Split equal parts on axis 0, middle output unused', inputs: [{ shape: [6, 2] }], build: (b, [x]) => b.op('Split', [x], {}, { outputs: 3 }).filter((_, i) => i !== 1) },
  // Slice: unit steps go through Pad, other steps through ScatterElements.
  { name: 'Slice negative starts on two axes', inputs: [{ shape: [4, 3, 5] }], build: (b, [x]) => slice(b, x, [-3, 1], [TO_END, -1], [0, 2]) },
  { name: 'Slice clamped ends, default axes', inputs: [{ shape: [3, 4] }], build: (b, [x]) => slice(b, x, [1, -10], [100, 2]) },
  { name: 'Slice steps 2 and 3 on two axes', inputs: [{ shape: [5, 7] }], build: (b, [x]) => slice(b, x, [0, -6], [TO_END, 7], [0, 1], [2, 3]) },
  { name: 'Slice negative step -2', inputs: [{ shape: [2, 7] }], build: (b, [x]) => slice(b, x, [-1], [-TO_END], [1], [-2]) },
  // Pad / Tile
  { name: 'Pad constant', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.op1('Pad', [x, b.ints([1, 0, 2, 1])]) },
  { name: 'Pad with negative pads (crop)', inputs: [{ shape: [3, 4] }], build: (b, [x]) => b.op1('Pad', [x, b.ints([-1, 2, 1, -2])]) },
  { name: 'Tile [2,3] by [2,2]', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.op1('Tile', [x, b.ints([2, 2])]) },
  // Trilu: upper (default) or lower triangle of the last two axes from diagonal k (input 1, default 0).
  { name: 'Trilu upper default k on [3,4]', inputs: [{ shape: [3, 4] }], build: (b, [x]) => b.op1('Trilu', [x]) },
  { name: 'Trilu lower k=0 on batched [2,3,3] (causal)', inputs: [{ shape: [2, 3, 3] }], build: (b, [x]) => trilu(b, x, 0, 0) },
  { name: 'Trilu upper k=1 on [2,4,3]', inputs: [{ shape: [2, 4, 3] }], build: (b, [x]) => trilu(b, x, 1, 1) },
  { name: 'Trilu lower k=-1 on [4,3]', inputs: [{ shape: [4, 3] }], build: (b, [x]) => trilu(b, x, 0, -1) },
  { name: 'Trilu lower k=2 on [2,5]', inputs: [{ shape: [2, 5] }], build: (b, [x]) => trilu(b, x, 0, 2) },
  // Gather: repeated (and negative) indices must accumulate.
  { name: 'Gather axis 0 embedding, repeated indices', inputs: [{ shape: [5, 3] }, indices([2, 3], [0, 2, 2, 4, 0, -1])], build: (b, [w, i]) => b.op1('Gather', [w, i]) },
  { name: 'Gather on a token table [7,3] with ids [2,4]', inputs: [{ shape: [7, 3] }, indices([2, 4], [6, 0, 3, 3, 0, 6, 6, 1])], build: (b, [w, i]) => b.op1('Gather', [w, i]) },
  { name: 'Gather axis 0 of a 3-D table [4,2,3]', inputs: [{ shape: [4, 2, 3] }, indices([3], [1, -1, 1])], build: (b, [w, i]) => b.op1('Gather', [w, i]) },
  { name: 'Gather axis 1 of [2,4,3], repeated indices', inputs: [{ shape: [2, 4, 3] }, indices([3], [3, 1, 3])], build: (b, [x, i]) => b.op1('Gather', [x, i], { axis: 1 }) },
  { name: 'Gather axis 1 with 2-D indices', inputs: [{ shape: [2, 4] }, indices([2, 2], [0, 3, 3, 1])], build: (b, [x, i]) => b.op1('Gather', [x, i], { axis: 1 }) },
  { name: 'Gather axis 2 with a scalar index', inputs: [{ shape: [2, 3, 4] }, indices([], [2])], build: (b, [x, i]) => b.op1('Gather', [x, i], { axis: 2 }) },
  { name: 'GatherElements axis 1, repeated indices', inputs: [{ shape: [2, 3] }, indices([2, 4], [0, 2, 2, 1, 1, 1, 0, 2])], build: (b, [x, i]) => b.op1('GatherElements', [x, i], { axis: 1 }) },
  // Where / Clip / Dropout
  { name: 'Where with broadcast cond [2,1,4], X [3,4], Y [2,3,1]', inputs: [{ shape: [3, 4] }, { shape: [2, 3, 1] }], build: (b, [x, y]) => b.where(bool(b, [2, 1, 4], [1, 0, 0, 1, 0, 1, 1, 0]), x, y) },
  { name: 'Where with a scalar X', inputs: [{ shape: [] }, { shape: [2, 3] }], build: (b, [x, y]) => b.where(bool(b, [2, 3], [1, 0, 1, 1, 0, 0]), x, y) },
  // Attention's masked_fill(mask, -inf) then Softmax: masked probabilities are exactly 0, so are their gradients.
  { name: 'Where(causal mask, -inf, x) then Softmax on [2,4,4]', inputs: [{ shape: [2, 4, 4] }], build: (b, [x]) => b.op1('Softmax', [maskedFill(b, causalMask(b, 4), x)], { axis: -1 }) },
  { name: 'Clip with learnable min and max inputs', inputs: [{ shape: [8], values: clipValues }, { shape: [], values: [-0.5] }, { shape: [], values: [0.5] }], build: (b, [x, lo, hi]) => b.op1('Clip', [x, lo, hi]) },
  { name: 'Clip with max only', inputs: [{ shape: [8], values: clipValues }, { shape: [], values: [0.5] }], build: (b, [x, hi]) => b.op1('Clip', [x, '', hi]) },
  { name: 'Clip with constant bounds', inputs: [{ shape: [8], values: clipValues }], build: (b, [x]) => b.op1('Clip', [x, b.scalarLike(-0.5, x), b.scalarLike(0.5, x)]) },
  { name: 'Dropout in inference mode', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.op1('Dropout', [x, b.scalarLike(0.3, x)]) },
  { name: 'Dropout with training_mode false', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.op('Dropout', [x, b.scalarLike(0.3, x), bool(b, [], [0])], {}, { outputs: 2 })[0] },
  // Chains: one value reaching the loss along two paths.
  { name: 'chain concat(x, x) sliced', inputs: [{ shape: [2, 3] }], build: (b, [x]) => slice(b, b.op1('Concat', [x, b.mul(x, x)], { axis: 1 }), [1], [5], [1]) },
  { name: 'chain gather(x, i) * x[0]', inputs: [{ shape: [3, 2] }, indices([4], [1, 1, 0, 2])], build: (b, [x, i]) => b.mul(b.op1('Gather', [x, i]), slice(b, x, [0], [1], [0])) },
  // nanoGPT's mask: a tril(ones) buffer compared with 0; x reaches the loss through the softmax and directly.
  { name: 'chain softmax(masked_fill(tril(ones) == 0, -inf, x)) * x', inputs: [{ shape: [3, 3] }], build: (b, [x]) => b.mul(b.op1('Softmax', [maskedFill(b, b.equal(trilu(b, b.constant(Tensor.double([3, 3], new Array(9).fill(1))), 0), b.scalarLike(0, x)), x)]), x) },
  { name: 'chain trilu(x, lower) + trilu(x * x, upper, k=1)', inputs: [{ shape: [3, 4] }], build: (b, [x]) => b.add(trilu(b, x, 0), trilu(b, b.mul(x, x), 1, 1)) },
  { name: 'chain where(cond, x, x*x) + split(x)', inputs: [{ shape: [2, 4] }], build: (b, [x]) => b.add(b.where(bool(b, [4], [1, 0, 1, 0]), x, b.mul(x, x)), b.op1('Concat', b.op('Split', [x, b.ints([1, 3])], { axis: 1 }, { outputs: 2 }).reverse(), { axis: 1 })) },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

// A training-mode Dropout resamples its mask on every run, so finite differences cannot see it: check
// dx = dy * mask / (1 - ratio) against the mask of the same run instead.
test('Dropout in training mode: dx = dy * mask / (1 - ratio)', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const n = 64;
  const x = b.input('x', DType.DOUBLE, [n]);
  const [y, mask] = b.op('Dropout', [x, b.constant(0.25, DType.DOUBLE), bool(b, [], [1])], {}, { outputs: 2 });
  const w = b.constant(Tensor.double([n], Array.from({ length: n }, (_, i) => (i % 7) - 3)));
  const loss = b.sumAll(b.mul(y, w));
  const dx = differentiate(g, { loss, wrt: [x] }).get(x)!;
  for (const v of [y, mask, dx]) b.output(v);
  const session = await Session.create(g, { threads: 1 });
  const xs = Array.from({ length: n }, (_, i) => 1 + i / n);
  const out = await session.run({ x: toOrtTensor(Tensor.double([n], xs)) });
  const [ys, ms, gs] = [y, mask, dx].map((v) => Array.from(out[v].data as ArrayLike<number>, Number));
  const kept = ms.filter((m) => m).length;
  assert.ok(kept > 0 && kept < n, `mask kept ${kept} of ${n}`);
  for (let i = 0; i < n; i++) {
    const wi = (i % 7) - 3;
    assert.ok(Math.abs(ys[i] - (ms[i] ? xs[i] / 0.75 : 0)) < 1e-12, `y[${i}]`);
    assert.ok(Math.abs(gs[i] - (ms[i] ? wi / 0.75 : 0)) < 1e-12, `dx[${i}] = ${gs[i]}, mask ${ms[i]}`);
  }
  await session.release();
});

test('masked_fill(-inf) + Softmax: the gradient is finite everywhere and exactly 0 at masked positions', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const t = 5;
  const x = b.input('x', DType.DOUBLE, [2, t, t]);
  const mask = causalMask(b, t);
  const p = b.op1('Softmax', [maskedFill(b, mask, x)], { axis: -1 });
  const w = b.constant(Tensor.double([2, t, t], Array.from({ length: 2 * t * t }, (_, i) => Math.sin(i))));
  const dx = differentiate(g, { loss: b.sumAll(b.mul(p, w)), wrt: [x] }).get(x)!;
  b.output(dx);
  b.output(p);
  const session = await Session.create(g, { threads: 1 });
  const out = await session.run({ x: toOrtTensor(Tensor.double([2, t, t], Array.from({ length: 2 * t * t }, (_, i) => Math.cos(i)))) });
  const [grads, probs] = [dx, p].map((v) => Array.from(out[v].data as Float64Array));
  grads.forEach((v, i) => {
    const masked = i % t > Math.floor(i / t) % t;
    assert.ok(Number.isFinite(v), `dx[${i}] = ${v}`);
    if (masked) {
      assert.equal(v, 0, `dx[${i}] at a masked position`);
      assert.equal(probs[i], 0, `p[${i}] at a masked position`);
    }
  });
  // Row 0 of each batch has one unmasked entry (probability 1): its gradient is 0 as well.
  assert.equal(grads[0], 0);
  assert.ok(grads.some((v) => v !== 0));
  await session.release();
});

test('training-mode Dropout without a mask output has no gradient, with a clear error', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.DOUBLE, [4]);
  const y = b.op1('Dropout', [x, b.constant(0.5, DType.DOUBLE), bool(b, [], [1])]);
  assert.throws(() => differentiate(g, { loss: b.sumAll(y), wrt: [x] }), /needs its mask output/);
});

test('shape inference of tensor ops', () => {
  const b = new GraphBuilder(new Graph());
  const v = (shape: (number | string)[], dtype = DType.FLOAT) => b.input(`v${b.graph.inputs.length}`, dtype, shape);
  const x = v(['N', 6, 5]);
  assert.deepEqual(b.shape(b.op1('Concat', [x, v(['N', 2, 5])], { axis: 1 })), ['N', 8, 5]);
  assert.deepEqual(b.shape(b.op1('Concat', [x, v(['M', 6, 5])], { axis: 0 })), ['N+M', 6, 5]);
  assert.deepEqual(b.op('Split', [x], { axis: 1 }, { outputs: 4 }).map((o) => b.shape(o)[1]), [2, 2, 2, 0]);
  assert.deepEqual(b.shape(slice(b, x, [0, 1, -3], [TO_END, TO_END, TO_END], [0, 1, 2], [1, 2, 1])), ['N', 3, 3]);
  assert.deepEqual(b.shape(slice(b, x, [4], [-TO_END], [2], [-1])), ['N', 6, 5]);
  assert.deepEqual(b.shape(b.op1('Pad', [x, b.ints([0, 1, -1, 2, 1, 0])])), ['N+2', 8, 4]);
  assert.deepEqual(b.shape(b.op1('Tile', [x, b.ints([1, 2, 3])])), ['N', 12, 15]);
  assert.deepEqual(b.shape(b.op1('Gather', [x, v([2, 3], DType.INT64)], { axis: 1 })), ['N', 2, 3, 5]);
  assert.deepEqual(b.shape(b.op1('Gather', [x, v([], DType.INT64)], { axis: -1 })), ['N', 6]);
  assert.deepEqual(b.shape(b.where(v([1, 5], DType.BOOL), x, v([6, 1]))), ['N', 6, 5]);
  assert.throws(() => b.op('Split', [x, b.ints([2, 2])], { axis: 1 }, { outputs: 2 }), /do not add up/);
  assert.deepEqual(b.op('Split', [v(['N', 4, 12]), b.ints([4, 4, 4])], { axis: -1 }, { outputs: 3 }).map((o) => b.shape(o)), [['N', 4, 4], ['N', 4, 4], ['N', 4, 4]]);
  assert.deepEqual(b.type(b.op1('Trilu', [v(['N', 4, 4]), b.constant(1, DType.INT64)], { upper: 0 })), { dtype: DType.FLOAT, shape: ['N', 4, 4] });
  assert.throws(() => b.op1('Trilu', [v([4])]), /Trilu.*rank >= 2/);
  assert.deepEqual(b.shape(b.op1('Gather', [v([50257, 768]), v(['B', 'T'], DType.INT64)])), ['B', 'T', 768]);
});

test('gradients with a symbolic batch dim build zeros from the runtime shape', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const table = b.input('table', DType.DOUBLE, ['N', 3]);
  const ids = b.input('ids', DType.INT64, [4]);
  const rows = b.op1('Gather', [table, ids], { axis: 1 });
  const [left] = b.op('Split', [b.relu(rows), b.ints([1, 3])], { axis: 1 }, { outputs: 2 });
  const loss = b.sumAll(left);
  const grad = differentiate(g, { loss, wrt: [table] }).get(table)!;
  b.output(grad);
  assert.deepEqual(b.shape(grad), ['N', 3]);
  const session = await Session.create(g, { threads: 1 });
  const out = await session.run({
    table: toOrtTensor(Tensor.double([2, 3], [1, 2, 3, -4, 5, 6])),
    ids: toOrtTensor(Tensor.int64([4], [2, 0, 2, 1])),
  });
  // left = relu(table[:, 2]): gradient 1 where positive, in column 2 only.
  assert.deepEqual(Array.from(out[grad].data as Float64Array), [0, 0, 1, 0, 0, 1]);
  await session.release();
});

test('Slice x[1:] and Concat along a symbolic axis: gradients sized at run time', async () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.DOUBLE, ['N', 2]);
  const tail = slice(b, x, [1], [TO_END], [0]);
  assert.deepEqual(b.shape(tail), ['N-1', 2]);
  const both = b.op1('Concat', [tail, x], { axis: 0 });
  const loss = b.sumAll(b.mul(both, both));
  const grad = differentiate(g, { loss, wrt: [x] }).get(x)!;
  b.output(grad);
  assert.deepEqual(b.shape(grad), ['N', 2]);
  const session = await Session.create(g, { threads: 1 });
  const xs = [1, 2, 3, 4, 5, 6];
  const out = await session.run({ x: toOrtTensor(Tensor.double([3, 2], xs)) });
  // Row 0 reaches the loss once (2x), rows 1.. twice (4x).
  assert.deepEqual(Array.from(out[grad].data as Float64Array), xs.map((v, i) => (i < 2 ? 2 : 4) * v));
  await session.release();
});
