import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { convsFromPatches } from '../../src/ops/conv';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import type { AttrInput } from '../../src/ir/builder';
import { evaluateReference } from '../../src/reference/evaluator';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';

// ORT has no float64 Conv/ConvTranspose: gradients run in float32 on ORT and are compared with central
// differences of our float64 reference evaluator. The loss is linear in each single input, so a small
// step gives exact differences.
const float32 = {
  precision: 'float32' as const,
  step: 1e-6,
  forward64: (graph: Graph, feeds: Map<string, Tensor>, loss: string) => Number(evaluateReference(graph, feeds).get(loss)!.data[0]),
};

/** Every input (X, W and B when given) is differentiated. */
function convCase(name: string, opType: 'Conv' | 'ConvTranspose', shapes: number[][], attrs: Record<string, AttrInput>): CheckCase {
  return { name, ...float32, inputs: shapes.map((shape) => ({ shape })), build: (b, inputs) => b.op1(opType, inputs, attrs) };
}

const cases: CheckCase[] = [
  convCase('Conv2D 3x3 pad 1 stride 1 with bias', 'Conv', [[2, 3, 5, 5], [4, 3, 3, 3], [4]], { pads: [1, 1, 1, 1] }),
  convCase('Conv2D 3x3 stride 2 pad 1 (output_padding needed)', 'Conv', [[2, 2, 6, 6], [3, 2, 3, 3], [3]], { strides: [2, 2], pads: [1, 1, 1, 1] }),
  convCase('Conv2D asymmetric pads [0,1,1,0]', 'Conv', [[2, 2, 5, 4], [3, 2, 3, 3], [3]], { pads: [0, 1, 1, 0] }),
  convCase('Conv2D stride 2, asymmetric pads [1,0,0,1], odd sizes', 'Conv', [[2, 2, 5, 6], [2, 2, 3, 2], [2]], { strides: [2, 2], pads: [1, 0, 0, 1] }),
  convCase('Conv2D dilation 2', 'Conv', [[2, 2, 6, 6], [2, 2, 3, 3], [2]], { dilations: [2, 2], pads: [1, 1, 1, 1] }),
  convCase('Conv2D groups 2', 'Conv', [[2, 4, 5, 5], [4, 2, 3, 3], [4]], { group: 2, pads: [1, 1, 1, 1] }),
  convCase('Conv2D depthwise (group = C) stride 2', 'Conv', [[2, 3, 5, 5], [3, 1, 3, 3], [3]], { group: 3, strides: [2, 2], pads: [1, 1, 1, 1] }),
  convCase('Conv2D depthwise with channel multiplier 2', 'Conv', [[2, 2, 4, 4], [4, 1, 3, 3], [4]], { group: 2, pads: [1, 1, 1, 1] }),
  convCase('Conv2D 1x1', 'Conv', [[2, 3, 4, 4], [4, 3, 1, 1], [4]], {}),
  convCase('Conv2D without bias', 'Conv', [[2, 2, 5, 5], [3, 2, 3, 3]], {}),
  convCase('Conv2D auto_pad SAME_UPPER stride 2', 'Conv', [[2, 2, 5, 6], [3, 2, 3, 3], [3]], { auto_pad: 'SAME_UPPER', strides: [2, 2] }),
  convCase('Conv1D stride 2', 'Conv', [[2, 3, 7], [4, 3, 3], [4]], { strides: [2], pads: [1, 1] }),
  convCase('ConvTranspose2D stride 1', 'ConvTranspose', [[2, 3, 4, 4], [3, 2, 3, 3], [2]], { pads: [1, 1, 1, 1] }),
  convCase('ConvTranspose2D stride 2 with output_padding', 'ConvTranspose', [[2, 2, 3, 3], [2, 3, 3, 3], [3]], { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] }),
  convCase('ConvTranspose2D group 2, asymmetric pads', 'ConvTranspose', [[2, 4, 3, 3], [4, 1, 2, 3], [2]], { group: 2, strides: [2, 1], pads: [0, 1, 1, 0] }),
  convCase('ConvTranspose1D dilation 2, output_shape', 'ConvTranspose', [[2, 2, 4], [2, 3, 3], [3]], { dilations: [2], strides: [2], output_shape: [10] }),
  {
    name: 'two Convs sharing X accumulate its gradient',
    ...float32,
    inputs: [{ shape: [2, 2, 4, 4] }, { shape: [3, 2, 3, 3] }, { shape: [3, 2, 1, 1] }],
    build: (b, [x, w1, w2]) => b.add(b.op1('Conv', [x, w1], { pads: [1, 1, 1, 1] }), b.op1('Conv', [x, w2])),
  },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float32 vs float64 reference)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-3, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

const inferenceCases: { name: string; opType: string; x: number[]; w: number[]; attrs: Record<string, AttrInput> }[] = [
  { name: 'Conv stride 2 pad 1', opType: 'Conv', x: [2, 2, 6, 7], w: [3, 2, 3, 3], attrs: { strides: [2, 2], pads: [1, 1, 1, 1] } },
  { name: 'Conv SAME_UPPER stride 2', opType: 'Conv', x: [1, 2, 7, 6], w: [3, 2, 3, 3], attrs: { strides: [2, 2], auto_pad: 'SAME_UPPER' } },
  { name: 'Conv SAME_LOWER stride 3', opType: 'Conv', x: [1, 2, 7, 8], w: [3, 2, 2, 3], attrs: { strides: [3, 3], auto_pad: 'SAME_LOWER' } },
  { name: 'Conv VALID stride 3', opType: 'Conv', x: [1, 2, 8, 7], w: [3, 2, 2, 3], attrs: { strides: [3, 3], auto_pad: 'VALID' } },
  { name: 'ConvTranspose stride 2 output_padding', opType: 'ConvTranspose', x: [1, 2, 3, 4], w: [2, 3, 3, 3], attrs: { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 0] } },
];

for (const c of inferenceCases) {
  test(`inferred output shape of ${c.name} equals ONNX Runtime's`, async () => {
    const g = new Graph();
    const b = new GraphBuilder(g);
    const x = b.input('x', DType.FLOAT, c.x);
    const w = b.input('w', DType.FLOAT, c.w);
    const y = b.output(b.op1(c.opType, [x, w], c.attrs));
    const session = await Session.create(g, { threads: 1 });
    const feeds = { x: toOrtTensor(Tensor.zeros(DType.FLOAT, c.x)), w: toOrtTensor(Tensor.zeros(DType.FLOAT, c.w)) };
    const out = await session.run(feeds);
    await session.release();
    assert.deepEqual(b.staticShape(y), [...out[y].dims]);
  });
}

test('Conv gradients keep a symbolic batch dim', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, ['N', 2, 5, 5]);
  const w = b.input('w', DType.FLOAT, [3, 2, 3, 3]);
  const y = b.op1('Conv', [x, w], { strides: [2, 2], pads: [1, 1, 1, 1] });
  assert.deepEqual(b.shape(y), ['N', 3, 3, 3]);
  const grads = differentiate(g, { loss: b.sumAll(b.mul(y, y)), wrt: [x, w] });
  assert.deepEqual(b.shape(grads.get(x)!), ['N', 2, 5, 5]);
  assert.deepEqual(b.shape(grads.get(w)!), [3, 2, 3, 3]);
});

test('convsFromPatches recomputes a one-group Conv from its weight-gradient patches: same Y and gradients', async () => {
  const build = () => {
    const g = new Graph();
    const b = new GraphBuilder(g);
    const x = b.input('x', DType.FLOAT, [2, 16, 6, 5]);
    const w = b.input('w', DType.FLOAT, [8, 16, 3, 3]);
    const bias = b.input('bias', DType.FLOAT, [8]);
    const y = b.op1('Conv', [x, w, bias], { pads: [1, 1, 1, 1] });
    const loss = b.sumAll(b.mul(y, y));
    const grads = differentiate(g, { loss, wrt: [x, w, bias] });
    for (const v of [y, ...[x, w, bias].map((p) => grads.get(p)!)]) b.output(v);
    return g;
  };
  const plain = build();
  const rewritten = build();
  assert.equal(convsFromPatches(rewritten), 1);
  const forwardConvs = (g: Graph) => g.nodes.filter((n) => n.opType === 'Conv' && n.inputs[1] === 'w').length;
  assert.equal(forwardConvs(plain), 1);
  assert.equal(forwardConvs(rewritten), 0);
  let seed = 3;
  const random = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1);
  const feeds = { x: toOrtTensor(Tensor.float([2, 16, 6, 5], random(960))), w: toOrtTensor(Tensor.float([8, 16, 3, 3], random(1152))), bias: toOrtTensor(Tensor.float([8], random(8))) };
  const run = async (g: Graph) => {
    const s = await Session.create(g, { threads: 1 });
    const out = await s.run(feeds);
    await s.release();
    return g.outputs.map((o) => out[o.name].data as Float32Array);
  };
  const [want, got] = [await run(plain), await run(rewritten)];
  ['Y', 'dX', 'dW', 'dB'].forEach((what, k) => {
    const scale = Math.max(...want[k].map(Math.abs));
    want[k].forEach((v, i) => assert.ok(Math.abs(got[k][i] - v) <= 1e-5 * scale, `${what}[${i}]: ${got[k][i]} vs ${v}`));
  });
});

test('convsFromPatches leaves convs with few patch rows (first layers) to ORT', () => {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [2, 1, 6, 6]);
  const w = b.input('w', DType.FLOAT, [4, 1, 3, 3]);
  differentiate(g, { loss: b.sumAll(b.op1('Conv', [x, w])), wrt: [w] });
  assert.equal(convsFromPatches(g), 0);
});
