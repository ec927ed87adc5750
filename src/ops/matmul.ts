import type { GraphBuilder } from '../ir/builder.js';
import { attrFloat, attrInt, Dim, Node, Shape } from '../ir/graph.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { broadcastShapes, requireInput } from './shape-utils.js';

/** Checks that contracted dims agree where both are known. */
function checkContraction(k1: Dim, k2: Dim, node: Node, a: Shape, b: Shape): void {
  if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) {
    throw new Error(`node '${node.name}' (${node.opType}): inner dims differ, A [${a}] and B [${b}]`);
  }
}

/** numpy.matmul shapes: 1-D operands are promoted to matrices and the added dim removed again. */
function inferMatMul(ctx: InferContext) {
  const a = requireInput(ctx, 0);
  const b = requireInput(ctx, 1).shape;
  if (a.shape.length === 0 || b.length === 0) throw new Error(`node '${ctx.node.name}' (MatMul): operands must have rank >= 1`);
  const pa = a.shape.length === 1 ? [1, a.shape[0]] : a.shape;
  const pb = b.length === 1 ? [b[0], 1] : b;
  checkContraction(pa[pa.length - 1], pb[pb.length - 2], ctx.node, a.shape, b);
  const batch = broadcastShapes([pa.slice(0, -2), pb.slice(0, -2)], ctx.node);
  const shape: Dim[] = [...batch];
  if (a.shape.length > 1) shape.push(pa[pa.length - 2]);
  if (b.length > 1) shape.push(pb[pb.length - 1]);
  return [{ dtype: a.dtype, shape }];
}

/** Swaps the last two axes. */
function swapLast(b: GraphBuilder, v: string): string {
  const r = b.rank(v);
  const perm = Array.from({ length: r }, (_, i) => i);
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return b.transpose(v, perm);
}

/**
 * dA = dY B^T and dB = A^T dY on matrices (1-D operands promoted as in the forward), each summed over
 * the batch dims it was broadcast along.
 */
function matmulVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const [a, w] = [c.input(0), c.input(1)];
  const aVector = b.rank(a) === 1;
  const wVector = b.rank(w) === 1;
  const pa = aVector ? b.unsqueeze(a, [0]) : a;
  const pw = wVector ? b.unsqueeze(w, [1]) : w;
  const outRank = Math.max(b.rank(pa), b.rank(pw));
  const restore = [...(aVector ? [outRank - 2] : []), ...(wVector ? [outRank - 1] : [])];
  const g = restore.length ? b.unsqueeze(dy, restore) : dy;

  let da: string | undefined;
  let dw: string | undefined;
  if (c.wants(0)) {
    da = b.unbroadcast(b.matmul(g, swapLast(b, pw)), b.shape(pa));
    if (aVector) da = b.squeeze(da, [0]);
  }
  if (c.wants(1)) {
    dw = weightGradient(b, pa, pw, g) ?? b.unbroadcast(b.matmul(swapLast(b, pa), g), b.shape(pw));
    if (wVector) dw = b.squeeze(dw, [1]);
  }
  return [da, dw];
}

/**
 * A batched input times a 2-D weight (a linear layer): fold the batch dims into rows so dW is one
 * 2-D Gemm, A^T dY, instead of a batched MatMul followed by a ReduceSum. Needs static K and N.
 */
function weightGradient(b: GraphBuilder, a: string, w: string, g: string): string | undefined {
  const aShape = b.shape(a);
  const wShape = b.shape(w);
  if (wShape.length !== 2 || aShape.length <= 2) return undefined;
  const [k, n] = wShape;
  if (typeof k !== 'number' || typeof n !== 'number') return undefined;
  const rows = b.reshape(a, [-1, k]);
  const grads = b.reshape(g, [-1, n]);
  return b.op1('Gemm', [rows, grads], { transA: 1 });
}

function inferGemm(ctx: InferContext) {
  const a = requireInput(ctx, 0);
  const w = requireInput(ctx, 1).shape;
  if (a.shape.length !== 2 || w.length !== 2) {
    throw new Error(`node '${ctx.node.name}' (Gemm): A and B must be 2-D, got [${a.shape}] and [${w}]`);
  }
  const transA = attrInt(ctx.node, 'transA', 0) === 1;
  const transB = attrInt(ctx.node, 'transB', 0) === 1;
  const [m, k1] = transA ? [a.shape[1], a.shape[0]] : a.shape;
  const [k2, n] = transB ? [w[1], w[0]] : w;
  checkContraction(k1, k2, ctx.node, a.shape, w);
  const shape = [m, n];
  const cType = ctx.inputs[2];
  if (cType) broadcastShapes([shape, cType.shape], ctx.node); // C must broadcast to [M, N]
  return [{ dtype: a.dtype, shape }];
}

/** Gemm(P, Q) with the given transposes and scale, without C. */
function gemm(b: GraphBuilder, p: string, q: string, transP: boolean, transQ: boolean, alpha: number): string {
  const attrs: Record<string, number> = { transA: transP ? 1 : 0, transB: transQ ? 1 : 0 };
  if (alpha !== 1) attrs.alpha = alpha;
  return b.op1('Gemm', [p, q], attrs);
}

/**
 * Y = alpha A' B' + beta C with A' = A^T if transA, B' = B^T if transB. Then dA' = alpha dY B'^T and
 * dB' = alpha A'^T dY; a transposed operand's gradient is the transpose of that, written as one Gemm.
 */
function gemmVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const [a, w] = [c.input(0), c.input(1)];
  const transA = attrInt(c.node, 'transA', 0) === 1;
  const transB = attrInt(c.node, 'transB', 0) === 1;
  const alpha = Math.fround(attrFloat(c.node, 'alpha', 1));
  const beta = Math.fround(attrFloat(c.node, 'beta', 1));
  let da: string | undefined;
  let dw: string | undefined;
  if (c.wants(0)) {
    // transA=0: dA = dY B'^T;  transA=1: dA = B' dY^T.
    da = transA ? gemm(b, w, dy, transB, true, alpha) : gemm(b, dy, w, false, !transB, alpha);
  }
  if (c.wants(1)) {
    // transB=0: dB = A'^T dY;  transB=1: dB = dY^T A'.
    dw = transB ? gemm(b, dy, a, true, transA, alpha) : gemm(b, a, dy, !transA, false, alpha);
  }
  let dc: string | undefined;
  if (c.node.inputs[2] && c.wants(2)) {
    const scaled = beta === 1 ? dy : b.mul(dy, b.scalarLike(beta, dy));
    dc = b.unbroadcast(scaled, b.shape(c.input(2)));
  }
  return [da, dw, dc];
}

export const matmulOps: OpDef[] = [
  { opType: 'MatMul', domain: '', infer: inferMatMul, vjp: matmulVjp },
  { opType: 'Gemm', domain: '', infer: inferGemm, vjp: gemmVjp },
];

defineOps(matmulOps);
