import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { correctCount, distillationKl, softmaxCrossEntropy } from '../../src/train/losses';
import { checkGradient } from '../../src/autodiff/check';

const logits = [2, 0.5, -1, 0.1, 0.2, 3];
const labels = [0, 2];

function logSoftmax(row: number[]) {
  const m = Math.max(...row);
  const z = Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0)) + m;
  return row.map((v) => v - z);
}

async function evalScalar(build: (b: GraphBuilder, x: string, y: string) => string) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const x = b.input('x', DType.FLOAT, [2, 3]);
  const y = b.input('y', DType.INT64, [2]);
  const out = b.output(build(b, x, y));
  const s = await Session.create(g, { threads: 1 });
  const r = await s.run({ x: toOrtTensor(Tensor.float([2, 3], logits)), y: toOrtTensor(Tensor.int64([2], labels)) });
  return (r[out].data as Float32Array)[0];
}

test('softmax cross-entropy equals -mean(log p[label]); label smoothing mixes in the uniform target', async () => {
  const rows = [logits.slice(0, 3), logits.slice(3)].map(logSoftmax);
  const plain = -(rows[0][0] + rows[1][2]) / 2;
  assert.ok(Math.abs((await evalScalar((b, x, y) => softmaxCrossEntropy(b, x, y, 3))) - plain) < 1e-6);
  const eps = 0.1;
  const smooth = rows.reduce((s, r, i) => s - r.reduce((t, lp, k) => t + lp * ((k === labels[i] ? 1 - eps : 0) + eps / 3), 0), 0) / 2;
  assert.ok(Math.abs((await evalScalar((b, x, y) => softmaxCrossEntropy(b, x, y, 3, eps))) - smooth) < 1e-6);
});

test('correct count counts argmax hits', async () => {
  assert.equal(await evalScalar((b, x, y) => correctCount(b, x, y)), 2);
});

test('distillation KL is T^2 * KL(teacher || student) at temperature T, and zero for identical logits', async () => {
  const T = 2;
  const teacher = [1, 0, -1, 0.5, 0.5, 0];
  const expected =
    [0, 1].reduce((s, i) => {
      const ps = logSoftmax(logits.slice(3 * i, 3 * i + 3).map((v) => v / T));
      const pt = logSoftmax(teacher.slice(3 * i, 3 * i + 3).map((v) => v / T));
      return s + pt.reduce((t, lt, k) => t + Math.exp(lt) * (lt - ps[k]), 0);
    }, 0) / 2 * T * T;
  const got = await evalScalar((b, x) => distillationKl(b, x, b.constant(Tensor.float([2, 3], teacher)), T));
  assert.ok(Math.abs(got - expected) < 1e-6, `${got} vs ${expected}`);
  assert.ok(Math.abs(await evalScalar((b, x) => distillationKl(b, x, x, T))) < 1e-6);
});

test('gradient of the cross-entropy and distillation losses match finite differences', async () => {
  const ce = await checkGradient({
    name: 'cross-entropy with smoothing',
    inputs: [{ shape: [2, 3] }, { shape: [2], dtype: 'int64', values: labels }],
    build: (b, [x, y]) => softmaxCrossEntropy(b, x, y, 3, 0.1),
  });
  assert.ok(ce.relativeError < 1e-6, JSON.stringify(ce));
  const kl = await checkGradient({
    name: 'distillation KL',
    inputs: [{ shape: [2, 3] }, { shape: [2, 3] }],
    build: (b, [x, t]) => distillationKl(b, x, t, 3),
  });
  assert.ok(kl.relativeError < 1e-6, JSON.stringify(kl));
});
