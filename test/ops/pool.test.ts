import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { differentiate } from '../../src/autodiff/grad';
import type { AttrInput } from '../../src/ir/builder';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { evaluateReference } from '../../src/reference/evaluator';

// ORT has no float64 AveragePool/GlobalAveragePool/Conv/Resize: gradients run in float32 on ORT and are
// compared with central differences of our float64 reference evaluator. Pooling is piecewise linear, so a
// small step stays clear of the kinks (random inputs have no ties).
const float32 = {
  precision: 'float32' as const,
  step: 1e-6,
  forward64: (graph: Graph, feeds: Map<string, Tensor>, loss: string) => Number(evaluateReference(graph, feeds).get(loss)!.data[0]),
};

function poolCase(name: string, opType: string, shape: number[], attrs: Record<string, AttrInput> = {}): CheckCase {
  return { name, ...float32, inputs: [{ shape }], build: (b, [x]) => b.op1(opType, [x], attrs) };
}

const cases: CheckCase[] = [
  poolCase('MaxPool 2x2 stride 2 (Resize mask path)', 'MaxPool', [2, 3, 4, 6], { kernel_shape: [2, 2], strides: [2, 2] }),
  poolCase('MaxPool 3x3 stride 2 pad 1 (Indices path)', 'MaxPool', [2, 2, 5, 5], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }),
  poolCase('MaxPool 2x2 stride 1, overlapping windows share maxima', 'MaxPool', [2, 2, 4, 4], { kernel_shape: [2, 2] }),
  poolCase('MaxPool 1-D kernel 3 stride 2', 'MaxPool', [2, 3, 7], { kernel_shape: [3], strides: [2] }),
  poolCase('AveragePool 2x2 stride 2', 'AveragePool', [2, 3, 4, 4], { kernel_shape: [2, 2], strides: [2, 2] }),
  poolCase('AveragePool 3x3 stride 1 pad 1 count_include_pad 0', 'AveragePool', [2, 2, 5, 5], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 0 }),
  poolCase('AveragePool 3x3 stride 1 pad 1 count_include_pad 1', 'AveragePool', [2, 2, 5, 5], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 1 }),
  poolCase('AveragePool 3x3 stride 2 asymmetric pads (output_padding needed)', 'AveragePool', [2, 2, 6, 5], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 0, 0, 1] }),
  // ceil_mode=1 (PyTorch ceil_mode=True): one more window over the end; avg_pool2d's default count_include_pad=True
  // divides it by the positions inside input + pads only.
  poolCase('MaxPool 2x2 stride 2 ceil_mode (5x5 -> 3x3)', 'MaxPool', [2, 2, 5, 5], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }),
  poolCase('AveragePool 2x2 stride 2 ceil_mode count_include_pad 1', 'AveragePool', [2, 2, 5, 7], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1, count_include_pad: 1 }),
  poolCase('AveragePool 3x3 stride 2 pad 1 ceil_mode count_include_pad 1', 'AveragePool', [1, 2, 6, 6], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1, count_include_pad: 1 }),
  poolCase('AveragePool 3x3 stride 2 pad 1 ceil_mode count_include_pad 0', 'AveragePool', [1, 2, 6, 6], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }),
  poolCase('GlobalAveragePool', 'GlobalAveragePool', [2, 3, 4, 5]),
  poolCase('GlobalMaxPool', 'GlobalMaxPool', [2, 3, 3, 4]),
  {
    name: 'chain Conv -> Relu -> MaxPool 2x2',
    ...float32,
    inputs: [{ shape: [2, 2, 6, 6] }, { shape: [3, 2, 3, 3] }, { shape: [3] }],
    build: (b, [x, w, bias]) => b.op1('MaxPool', [b.relu(b.op1('Conv', [x, w, bias], { pads: [1, 1, 1, 1] }))], { kernel_shape: [2, 2], strides: [2, 2] }),
  },
  {
    name: 'chain Conv -> AveragePool -> GlobalAveragePool',
    ...float32,
    inputs: [{ shape: [2, 2, 6, 6] }, { shape: [3, 2, 3, 3] }],
    build: (b, [x, w]) => b.op1('GlobalAveragePool', [b.op1('AveragePool', [b.op1('Conv', [x, w])], { kernel_shape: [2, 2], strides: [2, 2] })]),
  },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float32 vs float64 reference)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-3, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

// ORT runs MaxPool, ScatterElements and the rest of the Indices path in float64.
test('gradient of MaxPool 2x2 stride 2 in float64 (Indices path) matches finite differences', async () => {
  const r = await checkGradient({ name: 'MaxPool float64', inputs: [{ shape: [2, 2, 4, 4] }], build: (b, [x]) => b.op1('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2] }) });
  assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
});

function gradientOps(dtype: DType, attrs: Record<string, AttrInput>): string[] {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', dtype, [2, 2, 4, 4]);
  const y = b.op1('MaxPool', [x], attrs);
  const before = g.nodes.length;
  differentiate(g, { loss: b.sumAll(b.mul(y, y)), wrt: [x] });
  return g.nodes.slice(before).map((n) => n.opType);
}

test('ceil_mode=1 whose last window lies in the end pad is refused, naming the node and axis', () => {
  // 4 + 1 pad, stride 3: ORT's kernel writes 2 outputs, ONNX shape inference 3.
  const b = new GraphBuilder(new Graph());
  const x = b.input('x', DType.FLOAT, [1, 1, 4, 4]);
  assert.throws(
    () => b.op1('AveragePool', [x], { kernel_shape: [2, 2], strides: [3, 3], pads: [1, 1, 1, 1], ceil_mode: 1 }, { name: 'pool' }),
    /node 'pool' \(AveragePool\): ceil_mode=1 on spatial axis 0 .*disagree.*ceil_mode=False/,
  );
});

test('MaxPool whose windows tile x takes the Resize mask path in float32', () => {
  const ops = gradientOps(DType.FLOAT, { kernel_shape: [2, 2], strides: [2, 2] });
  assert.ok(ops.includes('Resize') && !ops.includes('ScatterElements'), ops.join(' '));
});

test('MaxPool with overlapping windows, or in float64, takes the Indices path', () => {
  const overlapping: [DType, Record<string, AttrInput>] = [DType.FLOAT, { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }];
  const double: [DType, Record<string, AttrInput>] = [DType.DOUBLE, { kernel_shape: [2, 2], strides: [2, 2] }];
  for (const [dtype, attrs] of [overlapping, double]) {
    const ops = gradientOps(dtype, attrs);
    assert.ok(ops.includes('ScatterElements') && !ops.includes('Resize'), ops.join(' '));
  }
});
