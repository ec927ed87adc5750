import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import { evaluateNode, fromTensor, roundHalfEven, toTensor } from '../../src/ir/constant-kernels';
import { DType } from '../../src/ir/dtype';
import { Attr, Graph, Node, Shape } from '../../src/ir/graph';
import { inferTypes } from '../../src/ir/infer';
import { foldShapeComputations } from '../../src/ir/partial-evaluate';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';

const node = (opType: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): Node => ({
  opType, domain: '', name: outputs[0], inputs, outputs, attrs,
});
const int = (value: number): Attr => ({ kind: 'int', value });

/** x [shape] -> Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape(x): PyTorch's x.view(x.size(0), -1). */
function viewGraph(shape: Shape): Graph {
  const g = new Graph();
  g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape });
  g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [] });
  g.initializers.set('zero', Tensor.int64([], [0]));
  g.initializers.set('axes0', Tensor.int64([1], [0]));
  g.initializers.set('minus_one', Tensor.int64([1], [-1]));
  g.nodes.push(
    node('Shape', ['x'], ['shape']),
    node('Gather', ['shape', 'zero'], ['batch'], { axis: int(0) }),
    node('Unsqueeze', ['batch', 'axes0'], ['batch1']),
    node('Concat', ['batch1', 'minus_one'], ['target'], { axis: int(0) }),
    node('Reshape', ['x', 'target'], ['y']),
  );
  return g;
}

test('Shape -> Gather -> Unsqueeze -> Concat -> Reshape folds into a constant shape when the input dims are known', () => {
  const g = viewGraph([4, 2, 3, 3]);
  const folded = foldShapeComputations(g);
  assert.equal(folded, 4);
  assert.deepEqual(g.nodes.map((n) => n.opType), ['Reshape']);
  assert.deepEqual(g.initializers.get(g.nodes[0].inputs[1])!.toNumbers(), [4, -1]);
  assert.deepEqual(g.outputs[0].shape, [4, 18]);
  // The constants only the folded nodes read are gone.
  assert.deepEqual([...g.initializers.keys()], ['target']);
});

test('a symbolic batch stays a run-time computation; inference still gives [N, 18] and ONNX Runtime runs it', async () => {
  const g = viewGraph(['N', 2, 3, 3]);
  foldShapeComputations(g);
  assert.deepEqual(g.nodes.map((n) => n.opType), ['Shape', 'Gather', 'Unsqueeze', 'Concat', 'Reshape']);
  assert.deepEqual(g.shapeValues.get('target'), ['N', -1]);
  assert.deepEqual(g.outputs[0].shape, ['N', 18]);
  const session = await Session.create(g, { threads: 1 });
  const out = (await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 18), [3, 2, 3, 3]) })).y;
  assert.deepEqual(out.dims, [3, 18]);
  await session.release();
});

test('partially static shapes: Shape of [B, T, 4] gathered at index 2 folds to 4', () => {
  const g = new Graph();
  g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: ['B', 'T', 4] });
  g.initializers.set('two', Tensor.int64([], [2]));
  g.initializers.set('heads', Tensor.int64([], [2]));
  g.nodes.push(
    node('Shape', ['x'], ['s']),
    node('Gather', ['s', 'two'], ['c'], { axis: int(0) }),
    node('Div', ['c', 'heads'], ['head_size']),
  );
  g.outputs.push({ name: 'head_size', dtype: DType.INT64, shape: [] }, { name: 's', dtype: DType.INT64, shape: [3] });
  foldShapeComputations(g);
  // head_size is a graph output, so it stays a node, but its input c is the constant 4 now.
  assert.deepEqual(g.nodes.map((n) => n.opType), ['Shape', 'Div']);
  assert.deepEqual(g.initializers.get('c')!.toNumbers(), [4]);
  assert.deepEqual(g.shapeValues.get('s'), ['B', 'T', 4]);
  assert.deepEqual(g.shapeValues.get('head_size'), [2]);
});

test('view(B, T, H, C // H) with symbolic B and T infers [B, T, 4, 8] from the shape values', () => {
  const g = new Graph();
  g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: ['B', 'T', 32] });
  const i64 = (name: string, dims: number[], v: number[]) => g.initializers.set(name, Tensor.int64(dims, v));
  i64('i0', [], [0]);
  i64('i1', [], [1]);
  i64('i2', [], [2]);
  i64('heads', [1], [4]);
  i64('hdiv', [], [4]);
  i64('ax', [1], [0]);
  g.nodes.push(
    node('Shape', ['x'], ['s']),
    node('Gather', ['s', 'i0'], ['b'], { axis: int(0) }),
    node('Gather', ['s', 'i1'], ['t'], { axis: int(0) }),
    node('Gather', ['s', 'i2'], ['c'], { axis: int(0) }),
    node('Div', ['c', 'hdiv'], ['hs']),
    node('Unsqueeze', ['b', 'ax'], ['b1']),
    node('Unsqueeze', ['t', 'ax'], ['t1']),
    node('Unsqueeze', ['hs', 'ax'], ['hs1']),
    node('Concat', ['b1', 't1', 'heads', 'hs1'], ['target'], { axis: int(0) }),
    node('Reshape', ['x', 'target'], ['y']),
  );
  g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [] });
  inferTypes(g);
  assert.deepEqual(g.outputs[0].shape, ['B', 'T', 4, 8]);
  assert.equal(g.nodes.length, 10, 'inferTypes folds nothing');
});

test('Slice ends from Shape: mask[:, :, :T, :T] of a [1, 1, 16, 16] buffer is [1, 1, T, T] symbolically and folds when T is known', () => {
  const build = (t: number | string) => {
    const g = new Graph();
    g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: ['B', t, 8] });
    g.initializers.set('mask', Tensor.float([1, 1, 16, 16], Array.from({ length: 256 }, (_, k) => (k % 16 <= Math.floor(k / 16) ? 1 : 0))));
    g.initializers.set('i1', Tensor.int64([], [1]));
    g.initializers.set('ax', Tensor.int64([1], [0]));
    g.initializers.set('zero', Tensor.int64([1], [0]));
    g.initializers.set('axes23', Tensor.int64([2], [2, 3]));
    g.initializers.set('f0', Tensor.float([], [0]));
    g.nodes.push(
      node('Shape', ['x'], ['s']),
      node('Gather', ['s', 'i1'], ['t'], { axis: int(0) }),
      node('Unsqueeze', ['t', 'ax'], ['t1']),
      node('Concat', ['t1', 't1'], ['ends'], { axis: int(0) }),
      node('Concat', ['zero', 'zero'], ['starts'], { axis: int(0) }),
      node('Slice', ['mask', 'starts', 'ends', 'axes23'], ['m']),
      node('Equal', ['m', 'f0'], ['blocked']),
    );
    g.outputs.push({ name: 'blocked', dtype: DType.BOOL, shape: [] });
    return g;
  };
  const symbolic = build('T');
  foldShapeComputations(symbolic);
  assert.deepEqual(symbolic.outputs[0].shape, [1, 1, 'T', 'T']);
  assert.ok(symbolic.nodes.some((n) => n.opType === 'Slice'));

  const fixed = build(3);
  foldShapeComputations(fixed);
  assert.deepEqual(fixed.nodes.map((n) => n.opType), ['Equal']);
  const m = fixed.initializers.get(fixed.nodes[0].inputs[0])!;
  assert.deepEqual(m.dims, [1, 1, 3, 3]);
  assert.deepEqual(m.toNumbers(), [1, 0, 0, 1, 1, 0, 1, 1, 1]);
  assert.equal(fixed.initializers.has('mask'), false, 'the full buffer is no longer read');
});

const ev = (opType: string, inputs: Tensor[], attrs: Record<string, Attr> = {}, outputs = 1) =>
  evaluateNode(node(opType, inputs.map((_, i) => `in${i}`), Array.from({ length: outputs }, (_, i) => `out${i}`), attrs), inputs.map((t) => fromTensor(t)))!.map(toTensor);

test('integer Div truncates toward zero and Mod takes the divisor sign, as ONNX; float Div does not truncate', () => {
  const a = Tensor.int64([4], [7, -7, 7, -7]);
  const b = Tensor.int64([4], [2, 2, -2, -2]);
  assert.deepEqual(ev('Div', [a, b])[0].toNumbers(), [3, -3, -3, 3]);
  assert.deepEqual(ev('Mod', [a, b])[0].toNumbers(), [1, 1, -1, -1]);
  assert.deepEqual(ev('Mod', [a, b], { fmod: int(1) })[0].toNumbers(), [1, -1, 1, -1]);
  assert.deepEqual(ev('Div', [new Tensor(DType.INT32, [2], Int32Array.from([7, -7])), new Tensor(DType.INT32, [1], Int32Array.from([2]))])[0].toNumbers(), [3, -3]);
  assert.deepEqual(ev('Div', [Tensor.float([1], [7]), Tensor.float([1], [2])])[0].toNumbers(), [3.5]);
  // Division by zero is left to ONNX Runtime.
  assert.equal(evaluateNode(node('Div', ['a', 'b'], ['c']), [fromTensor(a), fromTensor(Tensor.int64([1], [0]))]), undefined);
});

test('Round rounds half to even, and int64 bounds such as INT64_MAX survive a Concat exactly', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, 3]);
  assert.deepEqual(ev('Round', [Tensor.float([4], [0.5, 1.5, 2.5, -3.5])])[0].toNumbers(), [0, 2, 2, -4]);
  const max = new Tensor(DType.INT64, [1], BigInt64Array.from([9223372036854775807n]));
  const out = ev('Concat', [Tensor.int64([1], [3]), max], { axis: int(0) })[0];
  assert.deepEqual(Array.from(out.data as BigInt64Array), [3n, 9223372036854775807n]);
});

test('ConstantOfShape + Trilu (a causal -inf mask), Range, Where, Expand and Cast evaluate as ONNX defines them', () => {
  const [filled] = ev('ConstantOfShape', [Tensor.int64([2], [3, 3])], { value: { kind: 'tensor', value: Tensor.float([1], [-Infinity]) } });
  const [upper] = ev('Trilu', [filled, Tensor.int64([], [1])], { upper: int(1) });
  assert.deepEqual(upper.toNumbers(), [0, -Infinity, -Infinity, 0, 0, -Infinity, 0, 0, 0]);
  const [lower] = ev('Trilu', [Tensor.float([2, 3], [1, 2, 3, 4, 5, 6])], { upper: int(0) });
  assert.deepEqual(lower.toNumbers(), [1, 0, 0, 4, 5, 0]);
  assert.deepEqual(ev('Range', [Tensor.int64([], [0]), Tensor.int64([], [7]), Tensor.int64([], [3])])[0].toNumbers(), [0, 3, 6]);
  assert.deepEqual(ev('Range', [Tensor.float([], [1]), Tensor.float([], [0]), Tensor.float([], [-0.25])])[0].toNumbers(), [1, 0.75, 0.5, 0.25]);
  const cond = new Tensor(DType.BOOL, [3], Uint8Array.from([1, 0, 1]));
  assert.deepEqual(ev('Where', [cond, Tensor.int64([3], [1, 2, 3]), Tensor.int64([], [-1])])[0].toNumbers(), [1, -1, 3]);
  const [e] = ev('Expand', [Tensor.float([2, 1], [1, 2]), Tensor.int64([3], [2, 1, 3])]);
  assert.deepEqual([e.dims, e.toNumbers()], [[2, 2, 3], [1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]]);
  assert.deepEqual(ev('Cast', [Tensor.float([3], [2.7, -2.7, 0])], { to: int(DType.INT64) })[0].toNumbers(), [2, -2, 0]);
  assert.deepEqual(ev('Slice', [Tensor.int64([5], [0, 1, 2, 3, 4]), Tensor.int64([1], [-1]), Tensor.int64([1], [-6]), Tensor.int64([1], [0]), Tensor.int64([1], [-2])])[0].toNumbers(), [4, 2, 0]);
});

test('MatMul of small constants (torch.outer of arange and a frequency table) evaluates with numpy broadcasting', () => {
  const [outer] = ev('MatMul', [Tensor.float([3, 1], [0, 1, 2]), Tensor.float([1, 2], [1, 0.5])]);
  assert.deepEqual([outer.dims, outer.toNumbers()], [[3, 2], [0, 0, 1, 0.5, 2, 1]]);
  const [batched] = ev('MatMul', [Tensor.int64([2, 1, 2], [1, 2, 3, 4]), Tensor.int64([2], [10, 1])]);
  assert.deepEqual([batched.dims, batched.toNumbers()], [[2, 1], [12, 34]]);
});

test('a float initializer that gradients reach (a tied head) is never folded: Transpose(W) stays a node', () => {
  const g = new Graph();
  g.inputs.push({ name: 'ids', dtype: DType.INT64, shape: [2] });
  g.initializers.set('W', Tensor.float([3, 2], [1, 2, 3, 4, 5, 6]));
  g.nodes.push(
    node('Gather', ['W', 'ids'], ['h']),
    node('Transpose', ['W'], ['Wt'], { perm: { kind: 'ints', value: [1, 0] } }),
    node('MatMul', ['h', 'Wt'], ['logits']),
  );
  g.outputs.push({ name: 'logits', dtype: DType.FLOAT, shape: [2, 3] });
  assert.equal(foldShapeComputations(g), 0);
  assert.deepEqual(g.nodes.map((n) => n.opType), ['Gather', 'Transpose', 'MatMul']);
});

test('the Transpose and Tile kernels give what ONNX Runtime gives', async () => {
  const x = Tensor.int64([2, 3, 4], Array.from({ length: 24 }, (_, i) => i));
  const cases: { op: string; attrs: Record<string, Attr>; inputs: Tensor[] }[] = [
    { op: 'Transpose', attrs: { perm: { kind: 'ints', value: [2, 0, 1] } }, inputs: [x] },
    { op: 'Transpose', attrs: {}, inputs: [x] },
    { op: 'Tile', attrs: {}, inputs: [x, Tensor.int64([3], [2, 1, 3])] },
  ];
  for (const c of cases) {
    const names = c.inputs.map((_, i) => `in${i}`);
    const n: Node = { opType: c.op, domain: '', name: c.op, inputs: names, outputs: ['y'], attrs: c.attrs };
    const ours = toTensor(evaluateNode(n, c.inputs.map((t) => fromTensor(t)))![0]);
    const g = new Graph();
    g.inputs = [{ name: 'in0', dtype: DType.INT64, shape: [2, 3, 4] }];
    if (c.inputs[1]) g.initializers.set('in1', c.inputs[1]);
    g.nodes = [n];
    g.outputs = [{ name: 'y', dtype: DType.INT64, shape: ours.dims }];
    const session = await Session.create(g, { threads: 1 });
    const out = await session.run({ in0: new ort.Tensor('int64', x.data as BigInt64Array, [2, 3, 4]) }, ['y']);
    await session.release();
    assert.deepEqual(ours.dims, [...out.y.dims], `${c.op} dims`);
    assert.deepEqual([...(ours.data as BigInt64Array)], [...(out.y.data as BigInt64Array)], `${c.op} ${JSON.stringify(c.attrs)}`);
  }
});
