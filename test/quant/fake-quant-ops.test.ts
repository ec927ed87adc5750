import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import '../../src/quant';
import { differentiate } from '../../src/autodiff/grad';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { QATKIT, fakeQuantizeValue, roundHalfEven } from '../../src/quant';

const f = Math.fround;

/** Runs op(x, ...params) with loss = sum(y * w); returns y and the gradients of every input. */
async function run(opType: string, inputs: { name: string; dims: number[]; values: number[] }[], attrs: Record<string, number | string>, w?: number[]) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const names = inputs.map((i) => b.input(i.name, DType.FLOAT, i.dims));
  const y = b.op1(opType, names, attrs, { domain: QATKIT });
  const n = inputs[0].values.length;
  const weights = w ?? Array.from({ length: n }, (_, i) => 1 + i * 0.25);
  const loss = b.sumAll(b.mul(y, b.constant(Tensor.float(inputs[0].dims, weights))));
  const grads = differentiate(g, { loss, wrt: names });
  b.output(y);
  const gradOut = names.map((nm) => b.output(b.identity(grads.get(nm)!)));
  const s = await Session.create(g, { threads: 1 });
  const feeds = Object.fromEntries(inputs.map((i) => [i.name, toOrtTensor(Tensor.float(i.dims, i.values))]));
  const r = await s.run(feeds);
  return { y: Array.from(r[y].data as Float32Array), grads: gradOut.map((o) => Array.from(r[o].data as Float32Array)), weights };
}

const near = (a: number[], b: number[], tol = 1e-6) => {
  assert.equal(a.length, b.length);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= tol * Math.max(1, Math.abs(b[i])), `index ${i}: ${v} vs ${b[i]} (all: ${a} vs ${b})`));
};

test('roundHalfEven rounds ties to even like ONNX Round (Math.round does not)', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6].map(roundHalfEven).map((v) => v + 0), [0, 2, 2, 0, -2, -2, 2, 3]);
});

test('FakeQuantize per-tensor: closed form with ties to even, zero point, and clamping', async () => {
  const x = [-1.3, -0.25, 0, 0.05, 0.15, 0.25, 0.35, 1.0, 5.0, -5.0];
  const [s, z, qmin, qmax] = [0.1, 3, 0, 15];
  const { y } = await run('FakeQuantize', [{ name: 'x', dims: [10], values: x }, { name: 's', dims: [], values: [s] }, { name: 'z', dims: [], values: [z] }], { qmin, qmax });
  near(y, x.map((v) => f(fakeQuantizeValue(f(f(v) / f(s)) * f(s), f(s), z, qmin, qmax))), 1e-6);
  // 0.25 / 0.1 = 2.5 ties to 2 (not 3) before adding z.
  near([y[5]], [f(0.2)], 1e-6);
});

test('FakeQuantize STE: gradient passes inside [qmin, qmax] and is zero outside', async () => {
  const x = [-2, -0.9, 0, 0.5, 0.9, 2];
  const { grads, weights } = await run('FakeQuantize', [{ name: 'x', dims: [6], values: x }, { name: 's', dims: [], values: [0.25] }, { name: 'z', dims: [], values: [0] }], { qmin: -4, qmax: 3 });
  // v = round(x/s): -8, -4 (inside), 0, 2, 4 (> 3: outside), 8
  near(grads[0], [0, weights[1], weights[2], weights[3], 0, 0]);
  near(grads[1], [0]); // observer-fed scale: no gradient
});

test('FakeQuantize per-channel (axis 0) uses one scale per output channel', async () => {
  const x = [0.3, -0.7, 1.2, 0.3, -0.7, 1.2];
  const s = [0.5, 0.25];
  const { y } = await run('FakeQuantize', [{ name: 'x', dims: [2, 3], values: x }, { name: 's', dims: [2], values: s }, { name: 'z', dims: [2], values: [0, 0] }], { qmin: -2, qmax: 1, axis: 0 });
  near(y, x.map((v, i) => fakeQuantizeValue(f(v) / f(s[Math.floor(i / 3)]), 1, 0, -2, 1) * s[Math.floor(i / 3)]));
});

test('FakeQuantize per-group (axis 0, group 2) on a [4, 2] weight uses scales of shape [2, 2]', async () => {
  const x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
  const s = [0.1, 0.2, 0.3, 0.4]; // [groups=2, N=2]
  const { y } = await run('FakeQuantize', [{ name: 'x', dims: [4, 2], values: x }, { name: 's', dims: [2, 2], values: s }, { name: 'z', dims: [2, 2], values: [0, 0, 0, 0] }], { qmin: -8, qmax: 7, axis: 0, group_size: 2 });
  const expected = x.map((v, i) => {
    const row = Math.floor(i / 2), col = i % 2;
    const sc = s[Math.floor(row / 2) * 2 + col];
    return fakeQuantizeValue(f(v) / f(sc), 1, 0, -8, 7) * sc;
  });
  near(y, expected);
});

test('LSQ scale gradient: (round(x/s) - x/s) inside, qmin or qmax outside, times grad_scale', async () => {
  const x = [-3, -0.3, 0.1, 0.45, 3];
  const s = 0.2, g = 0.5, qmin = -4, qmax = 3;
  const { grads, weights } = await run('FakeQuantize', [{ name: 'x', dims: [5], values: x }, { name: 's', dims: [], values: [s] }, { name: 'z', dims: [], values: [0] }], { qmin, qmax, learn_scale: 1, grad_scale: g });
  const local = x.map((v) => {
    const t = f(f(v) / f(s));
    const r = roundHalfEven(t);
    return r < qmin ? qmin : r > qmax ? qmax : r - t;
  });
  near(grads[1], [g * local.reduce((acc, l, i) => acc + l * weights[i], 0)], 1e-5);
});

test('SEQ (ParetoQ, level_offset 1/2): 2-bit levels {-1.5, -0.5, 0.5, 1.5} s, ties to even, clamped', async () => {
  const s = 0.25;
  // x / s: -3 (clamped), -1.2, -0.5 (tie: -1 -> level -0.5), 0 (tie: -0.5 rounds to 0 -> level 0.5), 0.3, 1.5 (tie: 1 -> level 1.5), 2 (tie 1.5 -> 2, clamped), 9
  const x = [-0.75, -0.3, -0.125, 0, 0.075, 0.375, 0.5, 2.25];
  const { y } = await run('FakeQuantize', [{ name: 'x', dims: [8], values: x }, { name: 's', dims: [], values: [s] }, { name: 'z', dims: [], values: [0] }], { qmin: -2, qmax: 1, level_offset: 0.5 });
  near(y, [-1.5, -1.5, -0.5, 0.5, 0.5, 1.5, 1.5, 1.5].map((l) => l * s));
  near(y, x.map((v) => f(fakeQuantizeValue(v, s, 0, -2, 1, 0.5))));
  // No level at zero, and the grid is symmetric: the sign of x flips the level exactly (away from ties).
  const sym = [0.01, 0.2, 0.3, 0.45, 0.6];
  const { y: pos } = await run('FakeQuantize', [{ name: 'x', dims: [5], values: sym }, { name: 's', dims: [], values: [s] }, { name: 'z', dims: [], values: [0] }], { qmin: -2, qmax: 1, level_offset: 0.5 });
  const { y: neg } = await run('FakeQuantize', [{ name: 'x', dims: [5], values: sym.map((v) => -v) }, { name: 's', dims: [], values: [s] }, { name: 'z', dims: [], values: [0] }], { qmin: -2, qmax: 1, level_offset: 0.5 });
  near(neg, pos.map((v) => -v));
  assert.ok(pos.every((v) => v !== 0));
});

test('SEQ gradients: STE inside the stretched range |x / s| < 2, LSQ scale gradient (level - x/s) inside and +-1.5 outside', async () => {
  const s = 0.5, g = 0.25;
  const x = [-1.2, -0.6, 0.1, 0.7, 0.95, 1.1]; // x / s: -2.4, -1.2, 0.2, 1.4, 1.9, 2.2
  const { grads, weights } = await run('FakeQuantize', [{ name: 'x', dims: [6], values: x }, { name: 's', dims: [], values: [s] }, { name: 'z', dims: [], values: [0] }], { qmin: -2, qmax: 1, level_offset: 0.5, learn_scale: 1, grad_scale: g });
  near(grads[0], [0, weights[1], weights[2], weights[3], weights[4], 0]);
  const local = x.map((v) => {
    const t = f(f(v) / f(s));
    const q = roundHalfEven(f(t - 0.5));
    return q < -2 ? -1.5 : q > 1 ? 1.5 : q + 0.5 - t;
  });
  near(grads[1], [g * local.reduce((acc, l, i) => acc + l * weights[i], 0)], 1e-5);
});

test('LSQ+ zero-point gradient is -s where clipped and 0 inside', async () => {
  const x = [-3, 0.1, 3];
  const s = 0.5;
  const { grads, weights } = await run('FakeQuantize', [{ name: 'x', dims: [3], values: x }, { name: 's', dims: [], values: [s] }, { name: 'z', dims: [], values: [1] }], { qmin: 0, qmax: 3, learn_scale: 1, learn_zero_point: 1 });
  // v = round(x/s) + 1: -5 (below), 1 (inside), 7 (above)
  near(grads[2], [-s * (weights[0] + weights[2])]);
});

test('PACT: clip to [0, alpha], unsigned quantization; dalpha sums dy where x >= alpha', async () => {
  const x = [-1, 0.25, 0.5, 1.5, 3];
  const alpha = 1.2;
  const { y, grads, weights } = await run('PactQuantize', [{ name: 'x', dims: [5], values: x }, { name: 'a', dims: [], values: [alpha] }], { bits: 2 });
  const s = alpha / 3;
  near(y, x.map((v) => roundHalfEven(Math.min(Math.max(v, 0), alpha) / s) * s), 1e-6);
  near(grads[0], [0, weights[1], weights[2], 0, 0]);
  near(grads[1], [weights[3] + weights[4]]);
});

test('BinaryQuantize: sign times mean|x| per output channel; clipped STE', async () => {
  const x = [0.5, -1.5, 0, 2, -0.25, 0.75];
  const { y, grads, weights } = await run('BinaryQuantize', [{ name: 'x', dims: [2, 3], values: x }], { axis: 0 });
  const a0 = (0.5 + 1.5 + 0) / 3, a1 = (2 + 0.25 + 0.75) / 3;
  near(y, [a0, -a0, a0, a1, -a1, a1]);
  near(grads[0], weights.map((w, i) => (Math.abs(x[i]) <= 1 ? w : 0)));
});

test('TernaryQuantize (BitNet b1.58 absmean): codes in {-1, 0, 1} times mean|x|; STE', async () => {
  const x = [0.9, -0.1, 0.4, -1.2, 0.05, 0.6];
  const { y, grads, weights } = await run('TernaryQuantize', [{ name: 'x', dims: [6], values: x }], {});
  const gamma = x.reduce((a, v) => a + Math.abs(v), 0) / 6;
  near(y, x.map((v) => Math.max(-1, Math.min(1, roundHalfEven(v / (gamma + 1e-5)))) * gamma), 1e-6);
  assert.deepEqual(new Set(y.map((v) => Math.round(v / gamma))), new Set([1, 0, -1]));
  near(grads[0], weights);
});

test('AbsmaxQuantize per token: 8-bit with s = max|row| / 127 per row; STE', async () => {
  const x = [1, -0.5, 0.25, 0.01, -0.02, 0.03];
  const { y } = await run('AbsmaxQuantize', [{ name: 'x', dims: [2, 3], values: x }], { bits: 8 });
  const expected = x.map((v, i) => {
    const row = x.slice(Math.floor(i / 3) * 3, Math.floor(i / 3) * 3 + 3);
    const s = f(Math.max(...row.map(Math.abs)) / 127);
    return roundHalfEven(f(v) / s) * s;
  });
  near(y, expected, 1e-5);
});
