import { GraphBuilder } from '../ir/builder.js';
import { attrInt, Node } from '../ir/graph.js';
import { defineOps, OpDef } from '../ops/registry.js';
import { normalizeAxis, requireInput } from '../ops/shape-utils.js';
import { QATKIT } from './fake-quantize-op.js';

/** Axes to reduce for a per-channel statistic along `axis` (all of them when axis is absent: per-tensor). */
function statAxes(node: Node, rank: number): number[] {
  if (!node.attrs.axis) return Array.from({ length: rank }, (_, i) => i);
  const axis = normalizeAxis(attrInt(node, 'axis', 0), rank, node);
  return Array.from({ length: rank }, (_, i) => i).filter((i) => i !== axis);
}

/** mean|x| per output channel (or per tensor), kept broadcastable against x. */
function absMean(b: GraphBuilder, node: Node, x: string): string {
  return b.reduceMean(b.abs(x), statAxes(node, b.rank(x)), true);
}

/** Where |x| <= limit as x's dtype (the clipped STE window). */
function within(b: GraphBuilder, x: string, limit: string): string {
  return b.castLike(b.op1('LessOrEqual', [b.abs(x), limit]), x);
}

/**
 * ai.qatkit.BinaryQuantize(x) -> alpha * sign(x), alpha = mean|x| per output channel (XNOR-Net, Rastegari et
 * al. 2016; BinaryConnect). sign(0) = +1 so every weight is one of two codes. Backward: the clipped STE of
 * BNN (Hubara et al. 2016): dx = dy where |x| <= 1, 0 elsewhere; alpha is treated as a constant.
 */
const binaryQuantize: OpDef = {
  opType: 'BinaryQuantize',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0)],
  vjp: (c) => [c.b.mul(c.dy(0)!, within(c.b, c.input(0), c.b.scalarLike(1, c.input(0))))],
  lower: (node, b) => {
    const x = node.inputs[0];
    const sign = b.where(b.op1('GreaterOrEqual', [x, b.scalarLike(0, x)]), b.scalarLike(1, x), b.scalarLike(-1, x));
    b.op1('Mul', [sign, absMean(b, node, x)], {}, { outputs: [node.outputs[0]] });
  },
};

/**
 * ai.qatkit.TernaryQuantize(x) -> gamma * clip(round(x / (gamma + eps)), -1, 1), gamma = mean|x| (BitNet b1.58,
 * Ma et al. 2024: absmean weight quantization). Backward: straight-through (dx = dy), as BitNet trains.
 */
const ternaryQuantize: OpDef = {
  opType: 'TernaryQuantize',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0)],
  vjp: (c) => [c.dy(0)!],
  lower: (node, b) => {
    const x = node.inputs[0];
    const gamma = absMean(b, node, x);
    const q = b.op1('Clip', [b.op1('Round', [b.div(x, b.add(gamma, b.scalarLike(1e-5, x)))]), b.scalarLike(-1, x), b.scalarLike(1, x)]);
    b.op1('Mul', [q, gamma], {}, { outputs: [node.outputs[0]] });
  },
};

/**
 * x as [..., K / block, block] when a block size splits the last axis (per-token-per-block), else x itself; the
 * leading dims are copied (Reshape 0) so B and T stay symbolic.
 */
function blocked(b: GraphBuilder, node: Node, x: string): string {
  const block = attrInt(node, 'block_size', 0);
  if (block <= 0) return x;
  const shape = b.shape(x);
  const k = shape.at(-1);
  if (typeof k !== 'number' || k % block !== 0) throw new Error(`node '${node.name}' (${node.opType}): last axis of size ${k} is not divisible by block_size ${block}`);
  return b.reshape(x, [...shape.slice(0, -1).map(() => 0), k / block, block]);
}

/**
 * ai.qatkit.AbsmaxQuantize(x) -> dynamic symmetric quantization with s = max|x| / qmax over the last axis (per
 * token; BitLinear's 8-bit activations, LLM.int8 / SmoothQuant's per-token int8), over each block of block_size
 * channels of the last axis (per token per block: what ORT's MatMulNBits computes at accuracy_level 4, absmax/127
 * per row per K-block), or over the whole tensor (per_token = 0). Codes clip to [-qmax - 1, qmax]; since |x| <=
 * max|x| no value reaches the clip, so the straight-through gradient (dx = dy) is the STE's exactly.
 */
const absmaxQuantize: OpDef = {
  opType: 'AbsmaxQuantize',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0)],
  vjp: (c) => [c.dy(0)!],
  lower: (node, b) => {
    const x = node.inputs[0];
    const bits = attrInt(node, 'bits', 8);
    const qmax = 2 ** (bits - 1) - 1;
    const perToken = attrInt(node, 'per_token', 1) === 1;
    const xb = perToken ? blocked(b, node, x) : x;
    const rank = b.rank(xb);
    const axes = perToken ? [rank - 1] : Array.from({ length: rank }, (_, i) => i);
    const absmax = b.op1('ReduceMax', [b.abs(xb)], { axes, keepdims: 1 });
    const s = b.div(b.op1('Max', [absmax, b.scalarLike(1e-8, x)]), b.scalarLike(qmax, x));
    const q = b.op1('Clip', [b.op1('Round', [b.div(xb, s)]), b.scalarLike(-qmax - 1, x), b.scalarLike(qmax, x)]);
    if (xb === x) b.op1('Mul', [q, s], {}, { outputs: [node.outputs[0]] });
    else b.op1('Reshape', [b.mul(q, s), b.shapeOf(x)], {}, { outputs: [node.outputs[0]], types: [b.type(x)] });
  },
};

/**
 * ai.qatkit.TokenMinMaxQuantize(x) -> dynamic asymmetric quantization per row of the last axis (per token): the
 * row's range widened to include 0, S = (max - min) / (2^bits - 1), Z = round(-min / S), codes in [0, 2^bits - 1]
 * (the DESIGN numerics contract, per row). Simulation only: ORT has no integer MatMul taking a zero point per row.
 * Every value lies inside its row's range, so nothing clips and the gradient is straight-through (dx = dy).
 */
const tokenMinMaxQuantize: OpDef = {
  opType: 'TokenMinMaxQuantize',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0)],
  vjp: (c) => [c.dy(0)!],
  lower: (node, b) => {
    const x = node.inputs[0];
    const qmax = 2 ** attrInt(node, 'bits', 8) - 1;
    const axes = [b.rank(x) - 1];
    const lo = b.op1('Min', [b.op1('ReduceMin', [x], { axes, keepdims: 1 }), b.scalarLike(0, x)]);
    const hi = b.op1('Max', [b.op1('ReduceMax', [x], { axes, keepdims: 1 }), b.scalarLike(0, x)]);
    const s = b.op1('Max', [b.div(b.sub(hi, lo), b.scalarLike(qmax, x)), b.scalarLike(1e-8, x)]);
    const z = b.op1('Round', [b.neg(b.div(lo, s))]);
    // clip(round(x/s) + z, 0, qmax) - z = clip(round(x/s), -z, qmax - z): the zero point folded into the bounds.
    const q = b.op1('Max', [b.op1('Min', [b.op1('Round', [b.div(x, s)]), b.sub(b.scalarLike(qmax, x), z)]), b.neg(z)]);
    b.op1('Mul', [q, s], {}, { outputs: [node.outputs[0]] });
  },
};

/**
 * ai.qatkit.PactQuantize(x, alpha) -> unsigned quantization of clip(x, 0, alpha) with s = alpha / (2^bits - 1)
 * (PACT, Choi et al. 2018). Backward (PACT eq. 3 with STE through the rounding): dx = dy for 0 <= x < alpha;
 * dalpha = sum(dy where x >= alpha).
 */
const pactQuantize: OpDef = {
  opType: 'PactQuantize',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0)],
  vjp: (c) => {
    const { b } = c;
    const dy = c.dy(0)!;
    const [x, alpha] = [c.input(0), c.input(1)];
    const aboveAlpha = b.op1('GreaterOrEqual', [x, alpha]);
    const belowZero = b.less(x, b.scalarLike(0, x));
    const passes = b.castLike(b.op1('Not', [b.op1('Or', [aboveAlpha, belowZero])]), dy);
    return [
      c.wants(0) ? b.mul(dy, passes) : undefined,
      c.wants(1) ? b.reshapeLike(b.unbroadcast(b.mul(dy, b.castLike(aboveAlpha, dy)), b.shape(alpha)), alpha) : undefined,
    ];
  },
  lower: (node, b) => {
    const [x, alpha] = node.inputs;
    const levels = 2 ** attrInt(node, 'bits', 8) - 1;
    const clipped = b.op1('Min', [b.relu(x), alpha]);
    const s = b.div(alpha, b.scalarLike(levels, x));
    b.op1('Mul', [b.op1('Round', [b.div(clipped, s)]), s], {}, { outputs: [node.outputs[0]] });
  },
};

defineOps([binaryQuantize, ternaryQuantize, absmaxQuantize, tokenMinMaxQuantize, pactQuantize]);
