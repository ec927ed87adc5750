import { GraphBuilder } from '../ir/builder';
import { attrInt, Node } from '../ir/graph';
import { defineOps, OpDef } from '../ops/registry';
import { normalizeAxis, requireInput } from '../ops/shape-utils';
import { QATKIT } from './fake-quantize-op';

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
 * ai.qatkit.AbsmaxQuantize(x) -> dynamic symmetric quantization with s = max|x| / qmax over the last axis (per
 * token; BitLinear's 8-bit activations) or over the whole tensor (per_token = 0). Backward: straight-through.
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
    const rank = b.rank(x);
    const axes = attrInt(node, 'per_token', 1) ? [rank - 1] : Array.from({ length: rank }, (_, i) => i);
    const absmax = b.op1('ReduceMax', [b.abs(x)], { axes, keepdims: 1 });
    const s = b.div(b.op1('Max', [absmax, b.scalarLike(1e-8, x)]), b.scalarLike(qmax, x));
    const q = b.op1('Clip', [b.op1('Round', [b.div(x, s)]), b.scalarLike(-qmax - 1, x), b.scalarLike(qmax, x)]);
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

defineOps([binaryQuantize, ternaryQuantize, absmaxQuantize, pactQuantize]);
