import type { GraphBuilder } from '../ir/builder.js';
import { attrFloat, attrString, Node } from '../ir/graph.js';
import { inferSame, unary } from './elementwise.js';
import { refuseStatisticGradients } from './norm.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { requireInput } from './shape-utils.js';

/**
 * Activations: shape is the input's, and dx = dy * f'(x), where f' is built from x or from the output y
 * (whichever needs fewer nodes). Float attributes are stored as float32 in ONNX, so constants derived from
 * them go through Math.fround to match what ONNX Runtime computes with.
 */

const QATKIT = 'ai.qatkit';
/** SELU's defaults (ONNX Selu-6, from Klambauer et al. 2017). */
const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;

const activation = unary;

const x = (c: VjpContext) => c.input(0);
const y = (c: VjpContext) => c.output(0);
const alphaOf = (node: Node, fallback: number) => Math.fround(attrFloat(node, 'alpha', fallback));

/** 1 where lo < v < hi, else 0, in v's dtype (the derivative of a clamp; kinks count as outside). */
function insideMask(b: GraphBuilder, v: string, lo: number, hi: number): string {
  const inside = b.op1('And', [b.greater(v, b.scalarLike(lo, v)), b.less(v, b.scalarLike(hi, v))]);
  return b.castLike(inside, v);
}

type GeluApproximation = 'none' | 'tanh';

function geluApproximation(node: Node): GeluApproximation {
  const a = attrString(node, 'approximate', 'none');
  if (a !== 'none' && a !== 'tanh') {
    throw new Error(`node '${node.name}' (Gelu): approximate must be 'none' or 'tanh', got '${a}'`);
  }
  return a;
}

// GELU (Hendrycks & Gimpel 2016, arXiv:1606.08415): x * Phi(x), Phi the standard normal CDF; the 'tanh'
// form replaces Phi(x) with 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
const SQRT_HALF = Math.SQRT1_2;
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const GELU_CUBIC = 0.044715;

/** u = sqrt(2/pi) * (x + 0.044715 x^3), the argument of tanh in the approximate GELU. */
function geluTanhArgument(b: GraphBuilder, v: string): string {
  const cube = b.mul(b.mul(v, v), v);
  return b.mul(b.add(v, b.mul(cube, b.scalarLike(GELU_CUBIC, v))), b.scalarLike(SQRT_2_OVER_PI, v));
}

/** GELU in standard ONNX ops (Erf or Tanh), writing into `out` when given. */
export function emitGelu(b: GraphBuilder, v: string, approximation: GeluApproximation, out?: string): string {
  const half = b.scalarLike(0.5, v);
  const one = b.scalarLike(1, v);
  const inner =
    approximation === 'none'
      ? b.op1('Erf', [b.mul(v, b.scalarLike(SQRT_HALF, v))])
      : b.tanh(geluTanhArgument(b, v));
  const halfX = b.mul(v, half);
  return b.op1('Mul', [halfX, b.add(inner, one)], {}, out ? { outputs: [out] } : {});
}

/**
 * Exact GELU as PyTorch exports it, 0.5 x (1 + erf(x / sqrt(2))) with a Div: the form ONNX Runtime's GeluFusion
 * matches (onnxruntime/core/optimizer/gelu_fusion.cc), so an inference graph runs one Gelu kernel instead of five
 * nodes. x / sqrt(2) and x * sqrt(1/2) (emitGelu, the form training's passes expect) differ by at most an ulp.
 */
export function emitFusableGelu(b: GraphBuilder, v: string): string {
  const inner = b.op1('Erf', [b.op1('Div', [v, b.scalarLike(Math.SQRT2, v)])]);
  return b.mul(b.mul(v, b.scalarLike(0.5, v)), b.add(inner, b.scalarLike(1, v)));
}

/** d GELU / dx. Exact: Phi(x) + x phi(x). Tanh form: 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx. */
function geluDerivative(b: GraphBuilder, v: string, approximation: GeluApproximation): string {
  const half = b.scalarLike(0.5, v);
  const one = b.scalarLike(1, v);
  if (approximation === 'none') {
    const cdf = b.mul(b.add(b.op1('Erf', [b.mul(v, b.scalarLike(SQRT_HALF, v))]), one), half);
    const pdf = b.mul(b.exp(b.mul(b.mul(v, v), b.scalarLike(-0.5, v))), b.scalarLike(INV_SQRT_2PI, v));
    return b.add(cdf, b.mul(v, pdf));
  }
  const t = b.tanh(geluTanhArgument(b, v));
  const du = b.mul(b.add(b.mul(b.mul(v, v), b.scalarLike(3 * GELU_CUBIC, v)), one), b.scalarLike(SQRT_2_OVER_PI, v));
  const sech2 = b.sub(one, b.mul(t, t));
  return b.mul(b.add(b.add(one, t), b.mul(b.mul(v, sech2), du)), half);
}

const geluVjp = (c: VjpContext, dy: string) => c.b.mul(dy, geluDerivative(c.b, x(c), geluApproximation(c.node)));

/**
 * Training form of exact GELU, ai.qatkit.GeluTrain(X) -> (Y, Phi, Z): Z = X / sqrt(2), Phi = (1 + erf(Z)) / 2 (the
 * standard normal CDF, as HardSigmoid(erf(Z), 0.5, 0.5), which never clips since |erf| <= 1), Y = X * Phi, bit for
 * bit the Erf form's Y. Phi and Z are saved for the backward, which then needs no second Erf:
 * dX = dY * (Phi + X phi(X)) with X phi(X) = Z exp(-Z^2) / sqrt(pi), written Z / exp(Z^2) (0 where exp overflows).
 * Four full-size passes forward and six backward, where the Erf form's autodiff takes five and eleven.
 */
export function emitGeluTrain(b: GraphBuilder, v: string, outputs: [string, string, string]): void {
  const [y, phi, z] = outputs;
  b.op1('Mul', [v, b.scalarLike(SQRT_HALF, v)], {}, { outputs: [z] });
  b.op1('HardSigmoid', [b.op1('Erf', [z])], { alpha: 0.5, beta: 0.5 }, { outputs: [phi] });
  b.op1('Mul', [v, phi], {}, { outputs: [y] });
}

function geluTrainVjp(c: VjpContext) {
  refuseStatisticGradients(c, [1, 2], 'Phi / Z, saved for the backward');
  const dy = c.dy(0);
  if (!dy) return [];
  const { b } = c;
  const [phi, z] = [c.output(1), c.output(2)];
  const xPdf = b.mul(b.div(z, b.exp(b.mul(z, z))), b.scalarLike(1 / Math.sqrt(Math.PI), z));
  return [b.mul(dy, b.add(phi, xPdf))];
}

/** PRelu: x for x >= 0, slope x below (slope broadcast to x, unidirectionally); dslope sums x dy where x < 0. */
function preluVjp(c: VjpContext): (string | undefined)[] {
  const dy = c.dy(0);
  if (!dy) return [];
  const { b } = c;
  const negative = b.less(x(c), b.scalarLike(0, dy));
  const slope = c.input(1);
  return [
    c.wants(0) ? b.where(negative, b.mul(dy, slope), dy) : undefined,
    c.wants(1) ? b.unbroadcast(b.where(negative, b.mul(dy, x(c)), b.scalarLike(0, dy)), b.shape(slope)) : undefined,
  ];
}

const inferThreeLike = (ctx: InferContext) => {
  const t = requireInput(ctx, 0);
  return [t, t, t];
};

export const activationOps: OpDef[] = [
  activation('Relu', (c, dy) => c.b.mul(dy, c.b.castLike(c.b.greater(x(c), c.b.scalarLike(0, dy)), dy))),
  activation('LeakyRelu', (c, dy) => {
    const { b } = c;
    return b.where(b.greater(x(c), b.scalarLike(0, dy)), dy, b.mul(dy, b.scalarLike(alphaOf(c.node, 0.01), dy)));
  }),
  // ELU (Clevert et al. 2015): alpha (e^x - 1) for x <= 0, whose derivative alpha e^x = y + alpha.
  activation('Elu', (c, dy) => {
    const { b } = c;
    const alpha = alphaOf(c.node, 1);
    return b.where(b.greater(x(c), b.scalarLike(0, dy)), dy, b.mul(dy, b.add(y(c), b.scalarLike(alpha, dy))));
  }),
  // SELU (Klambauer et al. 2017): gamma x for x > 0, gamma alpha (e^x - 1) else; slope gamma, or y + gamma alpha.
  activation('Selu', (c, dy) => {
    const { b } = c;
    const alpha = alphaOf(c.node, SELU_ALPHA);
    const gamma = Math.fround(attrFloat(c.node, 'gamma', SELU_GAMMA));
    const negative = b.add(y(c), b.scalarLike(Math.fround(gamma * alpha), dy));
    return b.mul(dy, b.where(b.greater(x(c), b.scalarLike(0, dy)), b.scalarLike(gamma, dy), negative));
  }),
  // CELU (Barron 2017): alpha (e^{x/alpha} - 1) for x <= 0, derivative e^{x/alpha} = y / alpha + 1.
  activation('Celu', (c, dy) => {
    const { b } = c;
    const alpha = alphaOf(c.node, 1);
    const negative = b.add(b.mul(y(c), b.scalarLike(1 / alpha, dy)), b.scalarLike(1, dy));
    return b.where(b.greater(x(c), b.scalarLike(0, dy)), dy, b.mul(dy, negative));
  }),
  // x where x > alpha, else 0.
  activation('ThresholdedRelu', (c, dy) => c.b.mul(dy, c.b.castLike(c.b.greater(x(c), c.b.scalarLike(alphaOf(c.node, 1), dy)), dy))),
  // Softsign x / (1 + |x|): derivative 1 / (1 + |x|)^2.
  activation('Softsign', (c, dy) => {
    const { b } = c;
    const den = b.add(b.op1('Abs', [x(c)]), b.scalarLike(1, dy));
    return b.div(dy, b.mul(den, den));
  }),
  // Mish (Misra 2019; opset 18) x tanh(softplus(x)): tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2).
  activation('Mish', (c, dy) => {
    const { b } = c;
    const t = b.tanh(b.op1('Softplus', [x(c)]));
    const sech2 = b.sub(b.scalarLike(1, dy), b.mul(t, t));
    return b.mul(dy, b.add(t, b.mul(b.mul(x(c), b.sigmoid(x(c))), sech2)));
  }),
  // sigma' = y (1 - y); tanh' = 1 - y^2.
  activation('Sigmoid', (c, dy) => c.b.mul(dy, c.b.mul(y(c), c.b.sub(c.b.scalarLike(1, dy), y(c))))),
  activation('Tanh', (c, dy) => c.b.mul(dy, c.b.sub(c.b.scalarLike(1, dy), c.b.mul(y(c), y(c))))),
  // erf'(x) = 2/sqrt(pi) exp(-x^2).
  activation('Erf', (c, dy) => {
    const { b } = c;
    const g = b.exp(b.neg(b.mul(x(c), x(c))));
    return b.mul(dy, b.mul(g, b.scalarLike(2 / Math.sqrt(Math.PI), dy)));
  }),
  // softplus(x) = log(1 + e^x); its derivative is sigmoid(x).
  activation('Softplus', (c, dy) => c.b.mul(dy, c.b.sigmoid(x(c)))),
  // HardSigmoid = max(0, min(1, alpha x + beta)) (defaults 0.2, 0.5): slope alpha strictly inside (0, 1).
  activation('HardSigmoid', (c, dy) => {
    const { b } = c;
    const alpha = alphaOf(c.node, 0.2);
    const beta = Math.fround(attrFloat(c.node, 'beta', 0.5));
    const z = b.add(b.mul(x(c), b.scalarLike(alpha, dy)), b.scalarLike(beta, dy));
    return b.mul(dy, b.mul(insideMask(b, z, 0, 1), b.scalarLike(alpha, dy)));
  }),
  // HardSwish = x * HardSigmoid(x) with alpha = 1/6, beta = 0.5: d/dx = hs(x) + x/6 inside (-3, 3).
  activation('HardSwish', (c, dy) => {
    const { b } = c;
    const hs = b.op1('HardSigmoid', [x(c)], { alpha: 1 / 6, beta: 0.5 });
    const slope = b.mul(b.mul(x(c), insideMask(b, x(c), -3, 3)), b.scalarLike(1 / 6, dy));
    return b.mul(dy, b.add(hs, slope));
  }),
  { opType: 'PRelu', domain: '', infer: inferSame, vjp: preluVjp },
  // Gelu is a standard op from opset 20 on; graphs at lower opsets use ai.qatkit.Gelu, lowered below.
  activation('Gelu', geluVjp),
  {
    ...activation('Gelu', geluVjp, QATKIT),
    lower: (node, b) => {
      emitGelu(b, node.inputs[0], geluApproximation(node), node.outputs[0]);
    },
  },
  {
    opType: 'GeluTrain',
    domain: QATKIT,
    infer: inferThreeLike,
    vjp: geluTrainVjp,
    lower: (node, b) => emitGeluTrain(b, node.inputs[0], node.outputs as [string, string, string]),
  },
];

defineOps(activationOps);
