import type { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInt, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { inferSame } from './elementwise.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { normalizeAxis, requireInput } from './shape-utils.js';

/**
 * The axes one softmax normalizes over. Opset 13 changed the semantics: from 13 on, one axis (default -1);
 * before, the input is coerced to 2-D at `axis` (default 1), so every axis from `axis` on is normalized.
 */
export function softmaxAxes(node: Node, b: GraphBuilder, rank: number): number[] {
  const opset = b.graph.opsets[''] ?? b.graph.opsets['ai.onnx'] ?? 17;
  if (opset >= 13) return [normalizeAxis(attrInt(node, 'axis', -1), rank, node)];
  const first = normalizeAxis(attrInt(node, 'axis', 1), rank, node);
  return Array.from({ length: rank - first }, (_, i) => first + i);
}

function softmaxVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const y = c.output(0);
  const axes = softmaxAxes(c.node, b, b.rank(y));
  // Softmax: dx = y * (dy - sum(dy * y)); LogSoftmax: dx = dy - exp(y) * sum(dy) (sums over the axes).
  if (c.node.opType === 'Softmax') return [b.mul(y, b.sub(dy, b.reduceSum(b.mul(dy, y), axes)))];
  return [b.sub(dy, b.mul(b.exp(y), b.reduceSum(dy, axes)))];
}

const QATKIT = 'ai.qatkit';

/** Swaps the last two axes of a rank >= 2 value. */
function swapLastTwo(b: GraphBuilder, v: string): string {
  const r = b.rank(v);
  return b.transpose(v, [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2]);
}

/**
 * ai.qatkit.SoftmaxAttention(Q [..., T, D], K [..., S, D], V [..., S, E], Mask? broadcastable to [..., T, S])
 * -> (O [..., T, E], P [..., T, S]): P = softmax(Q K^T + Mask) over S, O = P V; the attention core of a
 * transformer (the caller scales Q). Lowered to exactly those standard ops; P is kept for the backward.
 */
function inferSoftmaxAttention(ctx: InferContext) {
  const [q, k, v] = [requireInput(ctx, 0), requireInput(ctx, 1), requireInput(ctx, 2)];
  if (q.shape.length < 2 || k.shape.length !== q.shape.length || v.shape.length !== q.shape.length) {
    throw new Error(`node '${ctx.node.name}' (SoftmaxAttention): Q, K, V must have one rank >= 2, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  const lead = q.shape.slice(0, -1);
  return [
    { dtype: q.dtype, shape: [...lead, v.shape[v.shape.length - 1]] },
    { dtype: q.dtype, shape: [...lead, k.shape[k.shape.length - 2]] },
  ];
}

function lowerSoftmaxAttention(node: Node, b: GraphBuilder): void {
  const [q, k, v, mask] = node.inputs;
  const product = b.matmul(q, swapLastTwo(b, k));
  const scores = mask ? b.add(product, mask) : product;
  const p = b.op1('Softmax', [scores], { axis: -1 }, { outputs: [node.outputs[1]] });
  b.op1('MatMul', [p, v], {}, { outputs: [node.outputs[0]] });
}

/**
 * dV = P^T dO, dP = dO V^T, and the softmax backward dS = P * (dP - r) with r = rowsum(dP * P) read as
 * rowsum(dO * O) (r_t = sum_s P_ts sum_e dO_te V_se = sum_e dO_te O_te): a reduction over E instead of S, and
 * no full [..., T, S] product (Dao et al. 2022, FlashAttention, eq. of D_i). dQ = dS K, dK = dS^T Q. The mask
 * takes the gradient dS summed over its broadcast axes when it asks for one.
 */
function softmaxAttentionVjp(c: VjpContext) {
  const { b } = c;
  if (c.dy(1)) throw new Error(`node '${c.node.name}' (SoftmaxAttention): output 1 (P, saved for the backward) lies on the path to the loss`);
  const dO = c.dy(0);
  if (!dO) return [];
  const [q, k, v, mask] = [c.input(0), c.input(1), c.input(2), c.node.inputs[3]];
  const [o, p] = [c.output(0), c.output(1)];
  // dV = (dO^T P)^T and dK = (Q^T dS)^T: ORT merges the transposes of dO and Q with the ones that made the heads,
  // and multiplies with plain MatMuls; P^T dO and dS^T Q as MatMul(A^T, B) become FusedMatMul(transA), which MLAS
  // runs at a third of the speed on these [T, D] blocks (bench/README.md, issue 10).
  const dV = c.wants(2) ? b.unbroadcast(swapLastTwo(b, b.matmul(swapLastTwo(b, dO), p)), b.shape(v)) : undefined;
  if (!c.wants(0) && !c.wants(1) && !(mask && c.wants(3))) return [undefined, undefined, dV];
  const r = b.reduceSum(b.mul(dO, o), [b.rank(o) - 1], true);
  const dS = b.mul(p, b.sub(b.matmul(dO, swapLastTwo(b, v)), r));
  const dQ = c.wants(0) ? b.unbroadcast(b.matmul(dS, k), b.shape(q)) : undefined;
  const dK = c.wants(1) ? b.unbroadcast(swapLastTwo(b, b.matmul(swapLastTwo(b, q), dS)), b.shape(k)) : undefined;
  const dMask = mask && c.wants(3) ? b.unbroadcast(dS, b.shape(mask)) : undefined;
  return [dQ, dK, dV, dMask];
}

/**
 * ai.qatkit.SoftmaxCrossEntropy(Logits [..., V], Targets int64 [...]) -> (Loss [], LogP [..., V]): the mean over
 * every position of -log softmax(Logits)[target], the language-model loss. Lowered to LogSoftmax, GatherElements
 * and ReduceMean; LogP is kept for the backward, dLogits = (exp(LogP) - onehot(Targets)) * dLoss / N, three
 * full-size passes (Exp, the one-hot subtraction as a ScatterElements add, the scale) where differentiating the
 * lowered ops takes six. Needs static shapes (N is a constant).
 */
function inferSoftmaxCrossEntropy(ctx: InferContext) {
  const [logits, targets] = [requireInput(ctx, 0), requireInput(ctx, 1)];
  if (targets.shape.length !== logits.shape.length - 1) {
    throw new Error(`node '${ctx.node.name}' (SoftmaxCrossEntropy): targets [${targets.shape}] must have the shape of logits [${logits.shape}] without its last axis`);
  }
  return [{ dtype: logits.dtype, shape: [] }, logits];
}

function lowerSoftmaxCrossEntropy(node: Node, b: GraphBuilder): void {
  const [logits, targets] = node.inputs;
  const rank = b.rank(logits);
  const logp = b.op1('LogSoftmax', [logits], { axis: -1 }, { outputs: [node.outputs[1]] });
  const picked = b.op1('GatherElements', [logp, b.unsqueeze(targets, [rank - 1])], { axis: rank - 1 });
  b.op1('Neg', [b.op1('ReduceMean', [picked], { keepdims: 0 })], {}, { outputs: [node.outputs[0]] });
}

function softmaxCrossEntropyVjp(c: VjpContext) {
  const { b } = c;
  if (c.dy(1)) throw new Error(`node '${c.node.name}' (SoftmaxCrossEntropy): output 1 (LogP, saved for the backward) lies on the path to the loss`);
  const dLoss = c.dy(0);
  if (!dLoss || !c.wants(0)) return [];
  const [logits, targets] = [c.input(0), c.input(1)];
  const shape = b.shape(targets);
  if (!shape.every((d) => typeof d === 'number')) throw new Error(`node '${c.node.name}' (SoftmaxCrossEntropy): targets need a static shape, got [${shape}]`);
  const dims = [...(shape as number[]), 1];
  const count = dims.reduce((p, q) => p * q, 1);
  const rank = b.rank(logits);
  const minusOne = b.castLike(b.constant(new Tensor(DType.FLOAT, dims, new Float32Array(count).fill(-1))), logits);
  const residual = b.op1('ScatterElements', [b.exp(c.output(1)), b.unsqueeze(targets, [rank - 1]), minusOne], { axis: rank - 1, reduction: 'add' });
  return [b.mul(residual, b.mul(dLoss, b.scalarLike(1 / count, logits)))];
}

export const softmaxOps: OpDef[] = [
  { opType: 'Softmax', domain: '', infer: inferSame, vjp: softmaxVjp },
  { opType: 'LogSoftmax', domain: '', infer: inferSame, vjp: softmaxVjp },
  { opType: 'SoftmaxAttention', domain: QATKIT, infer: inferSoftmaxAttention, vjp: softmaxAttentionVjp, lower: lowerSoftmaxAttention },
  { opType: 'SoftmaxCrossEntropy', domain: QATKIT, infer: inferSoftmaxCrossEntropy, vjp: softmaxCrossEntropyVjp, lower: lowerSoftmaxCrossEntropy, nonDifferentiable: [1] },
];

defineOps(softmaxOps);
