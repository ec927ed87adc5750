import type { Dim } from '../ir/graph.js';
import { attrInt, attrInts } from '../ir/graph.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { normalizeAxis, requireInput } from './shape-utils.js';

/** Reduction axes from the axes input (ReduceSum since opset 13) or attribute (the others until opset 18). */
export function reduceAxes(ctx: { node: InferContext['node'] }, rank: number, axesInput?: number[]): number[] {
  const axes = axesInput ?? attrInts(ctx.node, 'axes', undefined);
  if (!axes || axes.length === 0) {
    return attrInt(ctx.node, 'noop_with_empty_axes', 0) ? [] : Array.from({ length: rank }, (_, i) => i);
  }
  return axes.map((a) => normalizeAxis(a, rank, ctx.node)).sort((a, b) => a - b);
}

function axesFromContext(ctx: InferContext): number[] {
  const x = requireInput(ctx, 0);
  const axesInput = ctx.node.inputs[1] ? ctx.constant(1)?.toNumbers() : undefined;
  if (ctx.node.inputs[1] && !axesInput) throw new Error(`node '${ctx.node.name}' (${ctx.node.opType}): axes must be a constant`);
  return reduceAxes(ctx, x.shape.length, axesInput);
}

function inferReduce(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const axes = new Set(axesFromContext(ctx));
  const keep = attrInt(ctx.node, 'keepdims', 1) === 1;
  const shape: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!axes.has(i)) shape.push(d);
    else if (keep) shape.push(1);
  });
  return [{ dtype: x.dtype, shape }];
}

/** Axes of a reduce node as the VJP sees them (constant input or attribute). */
function vjpAxes(c: VjpContext): number[] {
  const x = c.input(0);
  const rank = c.b.rank(x);
  const axesInput = c.node.inputs[1] ? c.b.constantValue(c.node.inputs[1])?.toNumbers() : undefined;
  return reduceAxes(c, rank, axesInput);
}

/** Restores reduced axes (if keepdims was 0) so the gradient broadcasts back over x. */
function keepDims(c: VjpContext, dy: string, axes: number[]): string {
  return attrInt(c.node, 'keepdims', 1) === 1 || axes.length === 0 ? dy : c.b.unsqueeze(dy, axes);
}

/** Broadcasts `g` to x's shape (Expand with Shape(x)), keeping x's static type. */
export function expandLike(c: VjpContext, g: string, x: string): string {
  const { b } = c;
  return b.op1('Expand', [g, b.shapeOf(x)], {}, { types: [b.type(x)] });
}

/** ReduceMax / ReduceMin: the gradient goes to the elements equal to the result, split evenly among ties. */
function extremumGradient(c: VjpContext, x: string, axes: number[], dy: string): string {
  const { b } = c;
  const y = keepDims(c, c.output(0), axes);
  const mask = b.castLike(b.equal(x, y), x);
  const count = b.op1('ReduceSum', [mask, b.ints(axes)], { keepdims: 1 });
  return b.mul(mask, b.div(dy, count));
}

/**
 * A reduction with axes as input 1 or attribute. `grad` (for the differentiable ones) gets x, the reduced
 * axes and dy with the reduced axes restored (keepdims), and returns dx.
 */
function reduction(opType: string, grad?: (c: VjpContext, x: string, axes: number[], dy: string) => string): OpDef {
  const op: OpDef = { opType, domain: '', infer: inferReduce, nonDifferentiable: [1] };
  if (grad) {
    op.vjp = (c) => {
      const axes = vjpAxes(c);
      return [grad(c, c.input(0), axes, keepDims(c, c.dy(0)!, axes))];
    };
  }
  return op;
}

export const reduceOps: OpDef[] = [
  reduction('ReduceSum', (c, x, _axes, dy) => expandLike(c, dy, x)),
  reduction('ReduceMean', (c, x, axes, dy) => {
    const { b } = c;
    const shape = b.shape(x);
    const dims = axes.map((a) => shape[a]);
    let g: string;
    if (dims.every((d) => typeof d === 'number')) {
      const count = (dims as number[]).reduce((p, q) => p * q, 1);
      g = b.mul(dy, b.scalarLike(1 / count, dy));
    } else {
      // Symbolic dims: divide by the element count computed at run time.
      const n = b.op1('Size', [x]);
      const m = b.op1('Size', [c.output(0)]);
      g = b.div(b.mul(dy, b.castLike(m, dy)), b.castLike(n, dy));
    }
    return expandLike(c, g, x);
  }),
  reduction('ReduceSumSquare', (c, x, _axes, dy) => c.b.mul(expandLike(c, dy, x), c.b.mul(x, c.b.scalarLike(2, x)))),
  reduction('ReduceMax', extremumGradient),
  reduction('ReduceMin', extremumGradient),
  // |x|_1 along the axes: sign(x) (0 at 0, PyTorch's subgradient).
  reduction('ReduceL1', (c, x, _axes, dy) => c.b.mul(expandLike(c, dy, x), c.b.op1('Sign', [x]))),
  // |x|_2: x / |x|_2, and 0 where the norm is 0 (PyTorch's norm backward masks the same case).
  reduction('ReduceL2', (c, x, axes, dy) => {
    const { b } = c;
    const y = expandLike(c, keepDims(c, c.output(0), axes), x);
    const zero = b.scalarLike(0, x);
    const ratio = b.where(b.equal(y, zero), zero, b.div(x, y));
    return b.mul(expandLike(c, dy, x), ratio);
  }),
  // log sum exp(x): softmax of x over the axes, exp(x - y).
  reduction('ReduceLogSumExp', (c, x, axes, dy) => {
    const { b } = c;
    return b.mul(expandLike(c, dy, x), b.exp(b.sub(x, keepDims(c, c.output(0), axes))));
  }),
  // log sum x: 1 / sum x = exp(-y), broadcast.
  reduction('ReduceLogSum', (c, x, axes, dy) => {
    const { b } = c;
    return expandLike(c, b.mul(dy, b.exp(b.neg(keepDims(c, c.output(0), axes)))), x);
  }),
  reduction('ReduceProd'),
  { opType: 'ArgMax', domain: '', infer: inferArgExtremum },
  { opType: 'ArgMin', domain: '', infer: inferArgExtremum },
  // CumSum (HF decoders' position_ids = attention_mask.cumsum(-1) - 1): dx is the cumulative sum of dy in the
  // other direction, y_i = sum_{j <= i} x_j giving dx_j = sum_{i >= j} dy_i (strict inequalities when exclusive).
  {
    opType: 'CumSum',
    domain: '',
    infer: (ctx) => [requireInput(ctx, 0)],
    nonDifferentiable: [1],
    vjp: (c) => {
      const dy = c.dy(0);
      if (!dy) return [];
      const reverse = attrInt(c.node, 'reverse', 0) === 1 ? 0 : 1;
      return [c.b.op1('CumSum', [dy, c.input(1)], { exclusive: attrInt(c.node, 'exclusive', 0), reverse })];
    },
  },
];

/** ArgMax / ArgMin: int64 indices with the axis removed or kept as 1. */
function inferArgExtremum(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const axis = normalizeAxis(attrInt(ctx.node, 'axis', 0), x.shape.length, ctx.node);
  const keep = attrInt(ctx.node, 'keepdims', 1) === 1;
  const shape = x.shape.flatMap((d, i) => (i !== axis ? [d] : keep ? [1] : []));
  return [{ dtype: 7, shape }];
}

defineOps(reduceOps);
