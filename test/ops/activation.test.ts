import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { attrFloat, attrString, Graph, Node } from '../../src/ir/graph';
import { Tensor } from '../../src/ir/tensor';
import { Session } from '../../src/runtime/session';
import { toOrtTensor } from '../../src/runtime/tensors';
import { Rng } from '../../src/train/rng';

// ---- float64 references for the ops ORT runs only in float32 (Erf, Gelu, Softplus, HardSigmoid, HardSwish) ----
// ---- and for x * Sigmoid(x), which ORT fuses into com.microsoft.QuickGelu, a float32-only kernel ----

/**
 * erf in float64: Maclaurin series for |x| < 1.5 (little cancellation there), and beyond, 80 terms of the
 * continued fraction erfc(x) = e^{-x^2}/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
 * (Abramowitz & Stegun 7.1.5 and 7.1.14). Both agree with a correctly rounded erf to ~1e-16.
 */
function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax < 1.5) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let k = ax;
  for (let n = 80; n >= 1; n--) k = ax + n / 2 / k;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / k;
  return Math.sign(x) * (1 - erfc);
}

function gelu64(x: number, approximate: string): number {
  if (approximate === 'tanh') return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  return 0.5 * x * (1 + erf64(x / Math.SQRT2));
}

const hardSigmoid64 = (x: number, alpha: number, beta: number) => Math.max(0, Math.min(1, alpha * x + beta));

const unary64: Record<string, (x: number, node: Node) => number> = {
  Erf: (x) => erf64(x),
  Gelu: (x, n) => gelu64(x, attrString(n, 'approximate', 'none')),
  Softplus: (x) => Math.log1p(Math.exp(x)),
  HardSigmoid: (x, n) => hardSigmoid64(x, Math.fround(attrFloat(n, 'alpha', 0.2)), Math.fround(attrFloat(n, 'beta', 0.5))),
  HardSwish: (x) => x * hardSigmoid64(x, 1 / 6, 0.5),
  Sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  Elu: (x, n) => (x > 0 ? x : Math.fround(attrFloat(n, 'alpha', 1)) * Math.expm1(x)),
  Selu: (x) => 1.05070102214813232421875 * (x > 0 ? x : 1.67326319217681884765625 * Math.expm1(x)),
  Celu: (x, n) => {
    const alpha = Math.fround(attrFloat(n, 'alpha', 1));
    return Math.max(0, x) + Math.min(0, alpha * Math.expm1(x / alpha));
  },
  ThresholdedRelu: (x, n) => (x > Math.fround(attrFloat(n, 'alpha', 1)) ? x : 0),
  Softsign: (x) => x / (1 + Math.abs(x)),
  Mish: (x) => x * Math.tanh(Math.log1p(Math.exp(x))),
};

/** Evaluates the checker's loss graph (unary op(s) under test, Mul by weights, ReduceSum) in float64. */
function forward64(graph: Graph, feeds: Map<string, Tensor>, loss: string): number {
  const values = new Map<string, Float64Array>();
  for (const [name, t] of [...graph.initializers, ...feeds]) values.set(name, Float64Array.from(t.toNumbers()));
  const get = (name: string) => values.get(name) ?? assert.fail(`forward64: value '${name}' not computed`);
  for (const n of graph.nodes) {
    const f = unary64[n.opType];
    if (f) values.set(n.outputs[0], get(n.inputs[0]).map((v) => f(v, n)));
    else if (n.opType === 'PRelu') {
      // Slope [C, 1, 1] against x [N, C, H, W]: channel (i / (H W)) mod C.
      const [x, slope] = [get(n.inputs[0]), get(n.inputs[1])];
      const hw = x.length / (graph.typeOf(n.inputs[0]).shape as number[]).slice(0, 2).reduce((p, q) => p * q, 1);
      values.set(n.outputs[0], x.map((v, i) => (v < 0 ? slope[Math.floor(i / hw) % slope.length] * v : v)));
    }
    else if (n.opType === 'Mul') {
      const [a, b] = [get(n.inputs[0]), get(n.inputs[1])];
      assert.equal(a.length, b.length, 'forward64 multiplies equal shapes only');
      values.set(n.outputs[0], a.map((v, i) => v * b[i]));
    } else if (n.opType === 'ReduceSum') values.set(n.outputs[0], Float64Array.of(get(n.inputs[0]).reduce((s, v) => s + v, 0)));
    else assert.fail(`forward64 does not evaluate ${n.opType}`);
  }
  return get(loss)[0];
}

test('erf64 matches a correctly rounded erf to 1e-15', () => {
  // Reference values: CPython's math.erf.
  const table: [number, number][] = [
    [0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [1.5, 0.9661051464753108],
    [2, 0.9953222650189527], [2.9, 0.9999589021219005], [3, 0.9999779095030014], [3.5, 0.9999992569016276], [-1.25, -0.9229001282564582], [4.5, 0.9999999998033839],
  ];
  for (const [x, want] of table) assert.ok(Math.abs(erf64(x) - want) < 1e-15, `erf(${x}) = ${erf64(x)}, want ${want}`);
});

// ---- cases ----

/** Values in [0.2, 1.5] with random sign: no finite-difference step crosses a kink at 0. */
const awayFromZero = { sample: (r: Rng) => (r.uniform() < 0.5 ? -1 : 1) * r.range(0.2, 1.5) };
const wide = { sample: (r: Rng) => r.range(-3, 3) };
const float32 = { precision: 'float32' as const, forward64 };
/** Opset 20 makes Gelu a standard op. */
const opset20 = (b: GraphBuilder) => (b.graph.opsets[''] = 20);

const cases: CheckCase[] = [
  { name: 'Relu', inputs: [{ shape: [3, 4], ...awayFromZero }], build: (b, [x]) => b.relu(x) },
  { name: 'LeakyRelu default alpha', inputs: [{ shape: [3, 4], ...awayFromZero }], build: (b, [x]) => b.op1('LeakyRelu', [x]) },
  { name: 'LeakyRelu alpha 0.3', inputs: [{ shape: [3, 4], ...awayFromZero }], build: (b, [x]) => b.op1('LeakyRelu', [x], { alpha: 0.3 }) },
  { name: 'Sigmoid', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.sigmoid(x) },
  { name: 'Tanh', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.tanh(x) },
  { name: 'Erf', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.op1('Erf', [x]), ...float32 },
  { name: 'Gelu (opset 20, exact)', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => (opset20(b), b.op1('Gelu', [x])), ...float32 },
  { name: 'Gelu (opset 20, tanh)', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => (opset20(b), b.op1('Gelu', [x], { approximate: 'tanh' })), ...float32 },
  { name: 'ai.qatkit.Gelu exact', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.op1('Gelu', [x], {}, { domain: 'ai.qatkit' }), ...float32 },
  { name: 'ai.qatkit.Gelu tanh', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.op1('Gelu', [x], { approximate: 'tanh' }, { domain: 'ai.qatkit' }), ...float32 },
  { name: 'Softplus', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.op1('Softplus', [x]), ...float32 },
  // Kinks at x = -2.5 and 2.5 (defaults) and at -3, 3 (HardSwish); the values stay clear of them.
  { name: 'HardSigmoid defaults', inputs: [{ shape: [6], values: [-3.2, -2.4, -0.7, 0.1, 1.9, 2.7] }], build: (b, [x]) => b.op1('HardSigmoid', [x]), ...float32 },
  { name: 'HardSigmoid alpha 0.5 beta 0.25', inputs: [{ shape: [6], values: [-1, -0.3, 0.2, 1.2, 1.6, -0.6] }], build: (b, [x]) => b.op1('HardSigmoid', [x], { alpha: 0.5, beta: 0.25 }), ...float32 },
  { name: 'HardSwish', inputs: [{ shape: [6], values: [-3.5, -2.9, -0.4, 0.8, 2.8, 3.3] }], build: (b, [x]) => b.op1('HardSwish', [x]), ...float32 },
  // ELU family (kink at 0; Elu, Selu and Celu are smooth in value there but their slopes jump).
  { name: 'Elu', inputs: [{ shape: [3, 4], ...awayFromZero }], build: (b, [x]) => b.op1('Elu', [x], { alpha: 0.7 }), ...float32 },
  { name: 'Selu', inputs: [{ shape: [3, 4], ...awayFromZero }], build: (b, [x]) => b.op1('Selu', [x]), ...float32 },
  { name: 'Celu', inputs: [{ shape: [3, 4], ...awayFromZero }], build: (b, [x]) => b.op1('Celu', [x], { alpha: 1.5 }), ...float32 },
  { name: 'ThresholdedRelu', inputs: [{ shape: [6], values: [-1, 0.2, 0.45, 0.6, 1.3, 2] }], build: (b, [x]) => b.op1('ThresholdedRelu', [x], { alpha: 0.5 }), ...float32 },
  { name: 'Softsign', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.op1('Softsign', [x]), ...float32 },
  { name: 'Mish (opset 18)', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => ((b.graph.opsets[''] = 18), b.op1('Mish', [x])), ...float32 },
  // nn.PReLU(C) exports its slope as [C, 1, 1]: both x's and the slope's gradients.
  { name: 'PRelu per channel', inputs: [{ shape: [2, 3, 2, 2], ...awayFromZero }, { shape: [3, 1, 1], sample: (r: Rng) => r.range(0.05, 0.5) }], build: (b, [x, slope]) => b.op1('PRelu', [x, slope]), ...float32 },
  // Chains: one value through two branches must accumulate both contributions.
  { name: 'chain tanh(x) * sigmoid(x)', inputs: [{ shape: [5], ...wide }], build: (b, [x]) => b.mul(b.tanh(x), b.sigmoid(x)) },
  { name: 'chain relu(x) * x', inputs: [{ shape: [6], ...awayFromZero }], build: (b, [x]) => b.mul(b.relu(x), x) },
  // SiLU as PyTorch exports it (x * Sigmoid(x)), and Llama's SwiGLU gate silu(a) * b.
  { name: 'chain SiLU x * sigmoid(x)', inputs: [{ shape: [2, 5], ...wide }], build: (b, [x]) => b.mul(x, b.sigmoid(x)), ...float32 },
  { name: 'chain SwiGLU silu(a) * b', inputs: [{ shape: [2, 4], ...wide }, { shape: [2, 4] }], build: (b, [a, v]) => b.mul(b.mul(a, b.sigmoid(a)), v), ...float32 },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (${c.precision ?? 'float64'})`, async () => {
    const r = await checkGradient(c);
    const tolerance = c.precision === 'float32' ? 1e-3 : 1e-6;
    assert.ok(r.relativeError < tolerance, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}

test('ai.qatkit.Gelu lowers to standard ops that compute GELU', async () => {
  const xs = [-3, -1.5, -0.3, 0, 0.4, 1, 2.2, 3.1];
  for (const approximate of ['none', 'tanh']) {
    const g = new Graph();
    const b = new GraphBuilder(g);
    const x = b.input('x', DType.FLOAT, [xs.length]);
    b.output(b.op1('Gelu', [x], { approximate }, { domain: 'ai.qatkit' }));
    const session = await Session.create(g, { threads: 1 });
    assert.ok(session.graph.nodes.every((n) => n.domain === ''), 'lowered graph still has custom ops');
    const out = await session.run({ x: toOrtTensor(Tensor.float([xs.length], xs)) });
    const got = out[g.outputs[0].name].data as Float32Array;
    xs.forEach((v, i) => assert.ok(Math.abs(got[i] - gelu64(v, approximate)) < 1e-6, `gelu(${v}, ${approximate}) = ${got[i]}, want ${gelu64(v, approximate)}`));
    await session.release();
  }
});
