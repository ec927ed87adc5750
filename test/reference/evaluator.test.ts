import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { Rng } from '../../src/train/rng';
import { erf } from '../../src/reference/erf';
import { evaluateReference } from '../../src/reference/evaluator';

interface KernelCase {
  name: string;
  inputs: { shape: number[]; positive?: boolean }[];
  build: (b: GraphBuilder, inputs: string[]) => string | string[];
}

const cases: KernelCase[] = [
  { name: 'Add broadcast', inputs: [{ shape: [2, 3, 4] }, { shape: [3, 1] }], build: (b, [x, y]) => b.add(x, y) },
  { name: 'Sub', inputs: [{ shape: [2, 3] }, { shape: [3] }], build: (b, [x, y]) => b.sub(x, y) },
  { name: 'Mul', inputs: [{ shape: [4, 1] }, { shape: [1, 5] }], build: (b, [x, y]) => b.mul(x, y) },
  { name: 'Div', inputs: [{ shape: [2, 3] }, { shape: [2, 1], positive: true }], build: (b, [x, y]) => b.div(x, y) },
  { name: 'Neg Exp Abs', inputs: [{ shape: [7] }], build: (b, [x]) => [b.neg(x), b.exp(x), b.abs(x)] },
  { name: 'Log Sqrt', inputs: [{ shape: [6], positive: true }], build: (b, [x]) => [b.log(x), b.sqrt(x)] },
  { name: 'Relu Erf Identity', inputs: [{ shape: [3, 4] }], build: (b, [x]) => [b.relu(x), b.op1('Erf', [b.mul(x, b.scalarLike(3, x))]), b.identity(x)] },
  { name: 'ReduceSum axes input, keepdims 0', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceSum(x, [0, 2], false) },
  { name: 'ReduceSum all', inputs: [{ shape: [2, 3] }], build: (b, [x]) => b.sumAll(x) },
  { name: 'ReduceSumSquare axes attribute', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.op1('ReduceSumSquare', [x], { axes: [0, 2], keepdims: 1 }) },
  { name: 'Max Min broadcast', inputs: [{ shape: [2, 3] }, { shape: [3] }], build: (b, [x, y]) => [b.op1('Max', [x, y]), b.op1('Min', [x, y])] },
  {
    name: 'BatchNormalization inference form, epsilon 0.1',
    inputs: [{ shape: [2, 3, 2, 2] }, { shape: [3] }, { shape: [3] }, { shape: [3] }, { shape: [3], positive: true }],
    build: (b, xs) => b.op1('BatchNormalization', xs, { epsilon: 0.1 }),
  },
  { name: 'ReduceMean axes attribute', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.reduceMean(x, [-1], true) },
  { name: 'Reshape Flatten', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => [b.reshape(x, [0, -1, 2]), b.op1('Flatten', [x], { axis: 2 })] },
  { name: 'Transpose', inputs: [{ shape: [2, 3, 4] }], build: (b, [x]) => b.transpose(x, [2, 0, 1]) },
  { name: 'Cast float to float', inputs: [{ shape: [3] }], build: (b, [x]) => b.cast(b.cast(x, DType.DOUBLE), DType.FLOAT) },
  {
    name: 'Conv 2-D, stride 2, asymmetric pads, dilation, bias',
    inputs: [{ shape: [2, 2, 6, 5] }, { shape: [3, 2, 3, 2] }, { shape: [3] }],
    build: (b, [x, w, bias]) => b.op1('Conv', [x, w, bias], { strides: [2, 1], pads: [0, 1, 1, 0], dilations: [1, 2] }),
  },
  { name: 'Conv 1-D, group 2', inputs: [{ shape: [2, 4, 7] }, { shape: [2, 2, 3] }], build: (b, [x, w]) => b.op1('Conv', [x, w], { group: 2, pads: [1, 1] }) },
  { name: 'Conv depthwise SAME_UPPER stride 2', inputs: [{ shape: [1, 3, 5, 5] }, { shape: [3, 1, 3, 3] }], build: (b, [x, w]) => b.op1('Conv', [x, w], { group: 3, auto_pad: 'SAME_UPPER', strides: [2, 2] }) },
  { name: 'Conv SAME_LOWER stride 2', inputs: [{ shape: [1, 2, 6, 5] }, { shape: [2, 2, 2, 2] }], build: (b, [x, w]) => b.op1('Conv', [x, w], { auto_pad: 'SAME_LOWER', strides: [2, 2] }) },
  {
    name: 'ConvTranspose stride 2, output_padding, pads, bias, group 2',
    inputs: [{ shape: [2, 4, 3, 3] }, { shape: [4, 1, 3, 3] }, { shape: [2] }],
    build: (b, [x, w, bias]) => b.op1('ConvTranspose', [x, w, bias], { strides: [2, 2], pads: [1, 0, 0, 1], output_padding: [1, 1], group: 2 }),
  },
  { name: 'ConvTranspose 1-D dilation 2', inputs: [{ shape: [1, 2, 4] }, { shape: [2, 3, 2] }], build: (b, [x, w]) => b.op1('ConvTranspose', [x, w], { dilations: [2] }) },
  { name: 'ConvTranspose output_shape (odd total padding)', inputs: [{ shape: [1, 1, 3, 3] }, { shape: [1, 2, 3, 3] }], build: (b, [x, w]) => b.op1('ConvTranspose', [x, w], { strides: [2, 2], output_shape: [6, 5] }) },
  { name: 'ConvTranspose SAME_UPPER', inputs: [{ shape: [1, 1, 3, 3] }, { shape: [1, 1, 2, 3] }], build: (b, [x, w]) => b.op1('ConvTranspose', [x, w], { strides: [2, 2], auto_pad: 'SAME_UPPER' }) },
  { name: 'ConvTranspose SAME_LOWER', inputs: [{ shape: [1, 1, 3, 3] }, { shape: [1, 1, 2, 3] }], build: (b, [x, w]) => b.op1('ConvTranspose', [x, w], { strides: [2, 2], auto_pad: 'SAME_LOWER' }) },
  {
    name: 'MaxPool 3x3 s2 pad 1 with Indices',
    inputs: [{ shape: [2, 2, 5, 6] }],
    build: (b, [x]) => b.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, { outputs: 2 }),
  },
  { name: 'MaxPool 1-D dilation 2', inputs: [{ shape: [1, 2, 9] }], build: (b, [x]) => b.op1('MaxPool', [x], { kernel_shape: [2], dilations: [2], strides: [2] }) },
  {
    name: 'AveragePool pads, count_include_pad 0 and 1',
    inputs: [{ shape: [2, 2, 5, 4] }],
    build: (b, [x]) => [0, 1].map((count_include_pad) => b.op1('AveragePool', [x], { kernel_shape: [3, 2], strides: [2, 1], pads: [1, 0, 1, 1], count_include_pad })),
  },
  {
    name: 'MaxPool and AveragePool ceil_mode 1, count_include_pad 0 and 1',
    inputs: [{ shape: [2, 2, 7, 6] }],
    build: (b, [x]) => [
      b.op1('MaxPool', [x], { kernel_shape: [3, 2], strides: [2, 2], pads: [1, 0, 0, 0], ceil_mode: 1 }),
      ...[0, 1].map((count_include_pad) => b.op1('AveragePool', [x], { kernel_shape: [2, 3], strides: [2, 2], pads: [0, 1, 0, 1], ceil_mode: 1, count_include_pad })),
    ],
  },
  { name: 'GlobalAveragePool GlobalMaxPool', inputs: [{ shape: [2, 3, 4, 5] }], build: (b, [x]) => [b.op1('GlobalAveragePool', [x]), b.op1('GlobalMaxPool', [x])] },
];

for (const c of cases) {
  test(`reference ${c.name} matches ONNX Runtime (float32)`, async () => {
    const g = new Graph();
    g.name = c.name;
    const b = new GraphBuilder(g);
    const rng = new Rng(11);
    const feeds = new Map<string, Tensor>();
    const names = c.inputs.map((inp, i) => {
      const n = inp.shape.reduce((p, q) => p * q, 1);
      feeds.set(`in${i}`, Tensor.float(inp.shape, Array.from({ length: n }, () => (inp.positive ? rng.range(0.5, 2) : rng.range(-2, 2)))));
      return b.input(`in${i}`, DType.FLOAT, inp.shape);
    });
    const outputs = [c.build(b, names)].flat();
    for (const o of outputs) b.output(o);
    const session = await Session.create(g, { threads: 1 });
    const ort = await session.run(Object.fromEntries([...feeds].map(([k, t]) => [k, toOrtTensor(t)])));
    await session.release();
    const reference = evaluateReference(g, feeds);
    for (const o of outputs) {
      const want = ort[o];
      const got = reference.get(o)!;
      assert.deepEqual(got.dims, [...want.dims], `${o}: dims`);
      assert.deepEqual(got.dims, b.staticShape(o), `${o}: inferred shape`);
      const w = Array.from(want.data as ArrayLike<number | bigint>, Number);
      const r = got.toNumbers();
      const scale = Math.max(1, ...w.map(Math.abs));
      r.forEach((v, i) => assert.ok(Math.abs(v - w[i]) <= 1e-5 * scale, `${o}[${i}]: reference ${v}, ORT ${w[i]}`));
    }
  });
}

test('erf matches float64 values to 1e-15', () => {
  const known: [number, number][] = [
    [0, 0],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [-1.5, -0.9661051464753108],
    [2, 0.9953222650189527],
    [3, 0.9999779095030014],
    [5, 0.9999999999984626],
    [7, 1],
  ];
  for (const [x, v] of known) assert.ok(Math.abs(erf(x) - v) <= 1e-15, `erf(${x}) = ${erf(x)}, expected ${v}`);
});

test('an op without a reference kernel is an error naming the op and the node', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [2]);
  b.op1('Softmax', [x], {}, { name: 'the_softmax', types: [b.type(x)] });
  assert.throws(() => evaluateReference(g, new Map([['x', Tensor.float([2], [1, 2])]])), /no kernel for op Softmax \(node 'the_softmax'\)/);
});

test('evaluates in float64 whatever the graph float type', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [1]);
  const y = b.add(x, b.constant(Tensor.float([1], [1e-10])));
  const out = evaluateReference(g, new Map([['x', Tensor.double([1], [1])]])).get(y)!;
  assert.equal(out.dtype, DType.DOUBLE);
  assert.equal(out.data[0], 1 + Math.fround(1e-10));
});
