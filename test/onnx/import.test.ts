import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { DType } from '../../src/ir/dtype';
import { Attr, Graph, Node, Shape } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { classifyInitializers, importModel, importNotes } from '../../src/onnx/import';
import { saveModel } from '../../src/onnx/model-io';
import { Session } from '../../src/runtime/session';
import { scratchDir } from '../helpers/scratch.js';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');

interface Expected {
  opset: number;
  input_shape: number[];
  input: number[];
  logits_shape: number[];
  logits: number[];
}
const expectedOf = (name: string): Expected => JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}_expected.json`), 'utf8'));

const temps: string[] = [];
after(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** Writes a hand-built model at `opset` to a temp file and returns its path. */
function writeModel(opset: number, build: (g: Graph) => void): string {
  const g = new Graph();
  g.name = `opset${opset}`;
  g.opsets = { '': opset };
  build(g);
  const dir = scratchDir('qatkit-import-');
  temps.push(dir);
  const file = path.join(dir, 'model.onnx');
  saveModel(g, file);
  return file;
}

const node = (opType: string, name: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): Node => ({
  opType, domain: '', name, inputs, outputs, attrs,
});
const ints = (value: number[]): Attr => ({ kind: 'ints', value });
const int = (value: number): Attr => ({ kind: 'int', value });

/** Runs a graph on ONNX Runtime with float32 feeds; returns output 0 as numbers. */
async function runFloat(g: Graph, feeds: Record<string, { dims: number[]; data: number[] }>): Promise<{ dims: readonly number[]; data: number[] }> {
  const session = await Session.create(g, { threads: 1 });
  try {
    const ortFeeds = Object.fromEntries(
      Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('float32', Float32Array.from(v.data), v.dims)]),
    );
    const out = (await session.run(ortFeeds))[g.outputs[0].name];
    return { dims: out.dims, data: Array.from(out.data as Float32Array) };
  } finally {
    await session.release();
  }
}

function assertClose(actual: number[], expected: number[], tolerance: number): void {
  assert.equal(actual.length, expected.length);
  const worst = Math.max(...actual.map((a, i) => Math.abs(a - expected[i])));
  assert.ok(worst <= tolerance, `max |difference| ${worst} > ${tolerance}`);
}

// ---------------- the PyTorch fixtures (bench/peers/export_fixture.py) ----------------

test('the torch CNN fixture imports with every value typed, in topological order, at opset 17', () => {
  const g = importModel(path.join(FIXTURES, 'torch_cnn.onnx'));
  assert.deepEqual(g.opsets, { '': 17 });
  assert.deepEqual(
    g.nodes.map((n) => n.opType),
    ['Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Conv', 'BatchNormalization', 'Relu', 'MaxPool', 'Flatten', 'Gemm', 'Relu', 'Gemm'],
  );
  for (const n of g.nodes) for (const o of n.outputs) if (o) assert.ok(g.types.has(o), `no type for ${o} (node ${n.name})`);
  assert.deepEqual(g.types.get('/8/Flatten_output_0'), { dtype: DType.FLOAT, shape: ['N', 784] });
  assert.deepEqual(g.outputs, [{ name: 'logits', dtype: DType.FLOAT, shape: ['N', 10] }]);
});

test("ONNX Runtime runs the imported torch CNN and matches torch's logits within 1e-4", async () => {
  const expected = expectedOf('torch_cnn');
  const g = importModel(path.join(FIXTURES, 'torch_cnn.onnx'));
  const out = await runFloat(g, { input: { dims: expected.input_shape, data: expected.input } });
  assert.deepEqual(out.dims, expected.logits_shape);
  assertClose(out.data, expected.logits, 1e-4);
});

test('classifyInitializers: Conv/Gemm weights and BN scale/bias are parameters, BN mean/var running statistics', () => {
  const g = importModel(path.join(FIXTURES, 'torch_cnn.onnx'));
  const c = classifyInitializers(g);
  assert.deepEqual(
    [...c.params].sort(),
    ['0.bias', '0.weight', '1.bias', '1.weight', '11.bias', '11.weight', '4.weight', '5.bias', '5.weight', '9.bias', '9.weight'],
  );
  assert.deepEqual([...c.runningStats].sort(), ['1.running_mean', '1.running_var', '5.running_mean', '5.running_var']);
  assert.deepEqual(c.constants, []);
});

test('classifyInitializers: float tensors on differentiable inputs are parameters; scalar literals and int64 are constants', () => {
  const file = oneInputModel(
    17,
    [
      node('Add', 'shift', ['x', 'offset'], ['shifted']),
      node('Mul', 'half', ['shifted', 'one_half'], ['scaled']),
      node('Reshape', 'flat', ['scaled', 'shape'], ['y']),
    ],
    { offset: Tensor.float([4], [1, 2, 3, 4]), one_half: Tensor.float([], [0.5]), shape: Tensor.int64([2], [2, 12]) },
  );
  const c = classifyInitializers(importModel(file));
  assert.deepEqual(c, { params: ['offset'], runningStats: [], constants: ['one_half', 'shape'] });
});

test('the opset-13 torch MLP fixture imports (Constant split sizes become an initializer) and runs', async () => {
  const expected = expectedOf('torch_mlp_opset13');
  const g = importModel(path.join(FIXTURES, 'torch_mlp_opset13.onnx'));
  assert.ok(!g.nodes.some((n) => n.opType === 'Constant'));
  const split = g.nodes.find((n) => n.opType === 'Split')!;
  assert.deepEqual(g.initializers.get(split.inputs[1])!.toNumbers(), [4, 4]);
  const c = classifyInitializers(g);
  assert.deepEqual([...c.params].sort(), ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']);
  assert.deepEqual(c.constants, [split.inputs[1]]);
  const out = await runFloat(g, { input: { dims: expected.input_shape, data: expected.input } });
  assertClose(out.data, expected.logits, 1e-5);
});

test('inputShapes fixes a symbolic batch dim and inference follows it', () => {
  const g = importModel(path.join(FIXTURES, 'torch_mlp_opset13.onnx'), { inputShapes: { input: [5, 6] } });
  assert.deepEqual(g.outputs[0].shape, [5, 3]);
  assert.throws(() => importModel(path.join(FIXTURES, 'torch_mlp_opset13.onnx'), { inputShapes: { input: [5] } }), /rank 1, the input has rank 2/);
});

// ---------------- refusals ----------------

test('every unsupported op is listed in one error, with the nodes that use it, before any other work', () => {
  const file = writeModel(17, (g) => {
    g.inputs.push({ name: 'boxes', dtype: DType.FLOAT, shape: [1, 4, 4] }, { name: 'scores', dtype: DType.FLOAT, shape: [1, 1, 4] });
    g.outputs.push({ name: 'v2', dtype: DType.FLOAT, shape: [1, 1, 2] });
    g.initializers.set('k', Tensor.int64([1], [2]));
    g.nodes.push(
      node('NonMaxSuppression', 'nms', ['boxes', 'scores'], ['selected']),
      node('TopK', 'topk_a', ['scores', 'k'], ['v1', 'i1']),
      node('TopK', 'topk_b', ['v1', 'k'], ['v2', 'i2']),
      // Would fail later (unsupported Constant attribute): the op check must come first.
      node('Constant', 'bad_constant', [], ['c'], { value_string: { kind: 'string', value: 'x' } }),
    );
  });
  assert.throws(
    () => importModel(file),
    (e: Error) => {
      assert.match(e.message, /2 op type\(s\) not supported/);
      assert.match(e.message, /NonMaxSuppression: 'nms'\n/);
      assert.match(e.message, /TopK: 'topk_a', 'topk_b'\n/);
      assert.match(e.message, /supported ops: .*Add/);
      return true;
    },
  );
});

for (const opset of [12, 22]) {
  test(`opset ${opset} is refused with an error naming the opset and the supported range`, () => {
    const file = writeModel(opset, (g) => {
      g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: [2] });
      g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [2] });
      g.nodes.push(node('Relu', 'r', ['x'], ['y']));
    });
    assert.throws(() => importModel(file), new RegExp(`opset ${opset} is not supported; qatkit imports opsets 13 to 21`));
  });
}

test('a shape inference failure names the node', () => {
  const file = writeModel(17, (g) => {
    g.inputs.push({ name: 'a', dtype: DType.FLOAT, shape: [2, 3] }, { name: 'b', dtype: DType.FLOAT, shape: [4] });
    g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [2, 3] });
    g.nodes.push(node('Add', 'bad_add', ['a', 'b'], ['y']));
  });
  assert.throws(() => importModel(file), /shape inference failed at node 'bad_add' \(Add\).*do not broadcast/);
});

// ---------------- Constant nodes ----------------

test('Constant nodes of every value kind become initializers', () => {
  const f32 = Tensor.float([2], [0.5, 1.5]);
  const file = writeModel(17, (g) => {
    g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: [2] });
    g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [2] });
    g.nodes.push(
      node('Constant', 'c0', [], ['t'], { value: { kind: 'tensor', value: f32 } }),
      node('Constant', 'c1', [], ['f'], { value_float: { kind: 'float', value: 2.5 } }),
      node('Constant', 'c2', [], ['fs'], { value_floats: { kind: 'floats', value: [1, 2] } }),
      node('Constant', 'c3', [], ['i'], { value_int: int(7) }),
      node('Constant', 'c4', [], ['is'], { value_ints: ints([3, 4]) }),
      node('Mul', 'm', ['x', 't'], ['y']),
    );
  });
  const g = importModel(file);
  assert.deepEqual(g.nodes.map((n) => n.opType), ['Mul']);
  const t = (name: string) => g.initializers.get(name)!;
  assert.deepEqual([t('t').dtype, t('t').dims, t('t').toNumbers()], [DType.FLOAT, [2], [0.5, 1.5]]);
  assert.deepEqual([t('f').dtype, t('f').dims, t('f').toNumbers()], [DType.FLOAT, [], [2.5]]);
  assert.deepEqual([t('fs').dtype, t('fs').dims, t('fs').toNumbers()], [DType.FLOAT, [2], [1, 2]]);
  assert.deepEqual([t('i').dtype, t('i').dims, t('i').toNumbers()], [DType.INT64, [], [7]]);
  assert.deepEqual([t('is').dtype, t('is').dims, t('is').toNumbers()], [DType.INT64, [2], [3, 4]]);
});

// ---------------- opset 18..21 normalised to opset 17 ----------------

/** One-input model: x [2,3,4] -> nodes -> y. */
function oneInputModel(opset: number, nodes: Node[], inits: Record<string, Tensor> = {}, x: Shape = [2, 3, 4]): string {
  return writeModel(opset, (g) => {
    g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: x });
    g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [] });
    for (const [k, v] of Object.entries(inits)) g.initializers.set(k, v);
    g.nodes.push(...nodes);
  });
}

// float32 values, so ops that only move data reproduce them exactly.
const X = Array.from({ length: 24 }, (_, i) => Math.fround(Math.sin(i) * 3));

test('opset 18 ReduceMean with a constant axes input becomes ReduceMean with an axes attribute', async () => {
  const file = oneInputModel(18, [node('ReduceMean', 'mean', ['x', 'axes'], ['y'], { keepdims: int(0) })], { axes: Tensor.int64([1], [-1]) });
  const g = importModel(file);
  const mean = g.nodes[0];
  assert.deepEqual(mean.inputs, ['x']);
  assert.deepEqual(mean.attrs.axes, ints([-1]));
  assert.deepEqual(g.outputs[0].shape, [2, 3]);
  const out = await runFloat(g, { x: { dims: [2, 3, 4], data: X } });
  const want = Array.from({ length: 6 }, (_, r) => X.slice(4 * r, 4 * r + 4).reduce((p, q) => p + q, 0) / 4);
  assertClose(out.data, want, 1e-6);
});

test('opset 18 ReduceMax with noop_with_empty_axes and no axes becomes Identity; without noop it reduces all', () => {
  const noop = importModel(oneInputModel(18, [node('ReduceMax', 'max', ['x'], ['y'], { noop_with_empty_axes: int(1) })]));
  assert.equal(noop.nodes[0].opType, 'Identity');
  assert.deepEqual(noop.outputs[0].shape, [2, 3, 4]);
  const all = importModel(oneInputModel(18, [node('ReduceMax', 'max', ['x'], ['y'], { keepdims: int(0) })]));
  assert.deepEqual([all.nodes[0].opType, all.nodes[0].attrs], ['ReduceMax', { keepdims: int(0) }]);
  assert.deepEqual(all.outputs[0].shape, []);
});

test('opset 18 ReduceMean with axes computed at run time is refused, naming the node', () => {
  const file = writeModel(18, (g) => {
    g.inputs.push({ name: 'x', dtype: DType.FLOAT, shape: [2, 3] }, { name: 'axes', dtype: DType.INT64, shape: [1] });
    g.outputs.push({ name: 'y', dtype: DType.FLOAT, shape: [] });
    g.nodes.push(node('ReduceMean', 'dyn_mean', ['x', 'axes'], ['y']));
  });
  assert.throws(() => importModel(file), /node 'dyn_mean' \(ReduceMean\): axes \(input 1\) must be a constant/);
});

test('opset 18 Split with num_outputs gets a split input (uneven: last chunk smaller)', async () => {
  const file = oneInputModel(
    18,
    [
      node('Split', 'split', ['x'], ['a', 'b', 'c'], { axis: int(1), num_outputs: int(3) }),
      node('Concat', 'cat', ['c', 'a'], ['y'], { axis: int(1) }),
    ],
    {},
    [3, 8],
  );
  const g = importModel(file);
  const split = g.nodes[0];
  assert.equal(split.attrs.num_outputs, undefined);
  assert.deepEqual(g.initializers.get(split.inputs[1])!.toNumbers(), [3, 3, 2]);
  assert.deepEqual(g.outputs[0].shape, [3, 5]);
  const out = await runFloat(g, { x: { dims: [3, 8], data: X } });
  const want = [0, 1, 2].flatMap((r) => [...X.slice(8 * r + 6, 8 * r + 8), ...X.slice(8 * r, 8 * r + 3)]);
  assertClose(out.data, want, 0);
});

test('opset 18 Split with num_outputs dividing the axis splits evenly', async () => {
  const file = oneInputModel(18, [
    node('Split', 'split', ['x'], ['a', 'b'], { axis: int(-1), num_outputs: int(2) }),
    node('Sub', 'sub', ['b', 'a'], ['y']),
  ]);
  const g = importModel(file);
  assert.deepEqual(g.initializers.get(g.nodes[0].inputs[1])!.toNumbers(), [2, 2]);
  const out = await runFloat(g, { x: { dims: [2, 3, 4], data: X } });
  assertClose(out.data, Array.from({ length: 12 }, (_, k) => X[4 * Math.floor(k / 2) + 2 + (k % 2)] - X[4 * Math.floor(k / 2) + (k % 2)]), 1e-6);
});

test('opset 18 Pad with an axes input gets pads for every axis', async () => {
  const file = oneInputModel(
    18,
    [node('Pad', 'pad', ['x', 'pads', '', 'axes'], ['y'])],
    { pads: Tensor.int64([2], [1, 2]), axes: Tensor.int64([1], [-1]) },
  );
  const g = importModel(file);
  const pad = g.nodes[0];
  assert.equal(pad.inputs.length, 2);
  assert.deepEqual(g.initializers.get(pad.inputs[1])!.toNumbers(), [0, 0, 1, 0, 0, 2]);
  assert.deepEqual(g.outputs[0].shape, [2, 3, 7]);
  const out = await runFloat(g, { x: { dims: [2, 3, 4], data: X } });
  assertClose(out.data.slice(0, 7), [0, ...X.slice(0, 4), 0, 0], 0);
});

test("opset 19 Pad mode 'wrap' is refused, naming the node and the valid modes", () => {
  const file = oneInputModel(19, [node('Pad', 'wrap_pad', ['x', 'pads'], ['y'], { mode: { kind: 'string', value: 'wrap' } })], {
    pads: Tensor.int64([6], [0, 0, 1, 0, 0, 1]),
  });
  assert.throws(() => importModel(file), /node 'wrap_pad' \(Pad\): mode 'wrap'.*valid modes: constant, reflect, edge/);
});

test('opset 20 Gelu becomes ai.qatkit.Gelu, which ONNX Runtime runs after lowering', async () => {
  const file = oneInputModel(20, [node('Gelu', 'gelu', ['x'], ['y'])]);
  const g = importModel(file);
  assert.deepEqual([g.nodes[0].domain, g.nodes[0].opType], ['ai.qatkit', 'Gelu']);
  assert.deepEqual(g.opsets, { '': 17, 'ai.qatkit': 1 });
  const out = await runFloat(g, { x: { dims: [2, 3, 4], data: X } });
  const erf = (v: number) => {
    // Abramowitz & Stegun 7.1.26 is too coarse; integrate the series instead (|v| <= 3 / sqrt 2 here).
    let sum = 0;
    let term = v;
    for (let n = 0; n < 60; n++) {
      sum += term / (2 * n + 1);
      term *= (-v * v) / (n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  };
  assertClose(out.data, X.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), 1e-5);
});

test('opset 19 Cast drops saturate; opset 21 models import', () => {
  const file = oneInputModel(21, [node('Cast', 'cast', ['x'], ['y'], { to: int(DType.FLOAT), saturate: int(1) })]);
  const g = importModel(file);
  assert.deepEqual(g.nodes[0].attrs, { to: int(DType.FLOAT) });
});

test('opset 19 AveragePool drops dilations of 1 and refuses others, naming the node', () => {
  const pool = (dilations: number[]) =>
    oneInputModel(19, [node('AveragePool', 'avg', ['x'], ['y'], { kernel_shape: ints([2, 2]), dilations: ints(dilations) })], {}, [1, 1, 4, 4]);
  const g = importModel(pool([1, 1]));
  assert.deepEqual(g.nodes[0].attrs, { kernel_shape: ints([2, 2]) });
  assert.deepEqual(g.outputs[0].shape, [1, 1, 3, 3]);
  assert.throws(() => importModel(pool([2, 2])), /node 'avg' \(AveragePool\): dilations other than 1 \(AveragePool-19\); opset 17 has no equivalent/);
});

test("opset 18 ScatterElements with reduction 'max' is refused, naming the node", () => {
  const file = oneInputModel(
    18,
    [node('ScatterElements', 'scatter', ['x', 'idx', 'upd'], ['y'], { reduction: { kind: 'string', value: 'max' } })],
    { idx: Tensor.int64([1, 1, 1], [0]), upd: Tensor.float([1, 1, 1], [1]) },
  );
  assert.throws(() => importModel(file), /node 'scatter' \(ScatterElements\): reduction 'max'/);
});

test('opset 18 Mish is expanded to x * tanh(softplus(x)) and runs', async () => {
  const g = importModel(oneInputModel(18, [node('Mish', 'mish', ['x'], ['y'])]));
  assert.deepEqual(g.nodes.map((n) => n.opType), ['Softplus', 'Tanh', 'Mul']);
  const out = await runFloat(g, { x: { dims: [2, 3, 4], data: X } });
  assertClose(out.data, X.map((v) => v * Math.tanh(Math.log1p(Math.exp(v)))), 1e-5);
});

test('opset 13 training-mode BatchNormalization (mean/var outputs) imports in inference form, and says so', () => {
  const c = Tensor.float([3], [1, 1, 1]);
  const file = oneInputModel(
    13,
    [node('BatchNormalization', 'bn_train', ['x', 's', 'b', 'm', 'v'], ['y', 'm_out', 'v_out'])],
    { s: c, b: c, m: c, v: c },
  );
  const g = importModel(file);
  assert.deepEqual(g.nodes.map((n) => [n.opType, n.outputs]), [['BatchNormalization', ['y']]]);
  assert.match(importNotes(g)[0], /'bn_train' \(BatchNormalization\) was exported in training mode; imported in inference form/);
});
