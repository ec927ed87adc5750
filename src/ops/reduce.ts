import type { Dim } from '../ir/graph';
import { attrInt, attrInts } from '../ir/graph';
import { defineOps, InferContext, OpDef, VjpContext } from './registry';
import { normalizeAxis, requireInput } from './shape-utils';

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

export const reduceOps: OpDef[] = [
  {
    opType: 'ReduceSum',
    domain: '',
    infer: inferReduce,
    nonDifferentiable: [1],
    vjp: (c) => {
      const dy = c.dy(0)!;
      return [expandLike(c, keepDims(c, dy, vjpAxes(c)), c.input(0))];
    },
  },
  {
    opType: 'ReduceMean',
    domain: '',
    infer: inferReduce,
    nonDifferentiable: [1],
    vjp: (c) => {
      const { b } = c;
      const x = c.input(0);
      const axes = vjpAxes(c);
      const shape = b.shape(x);
      const dims = axes.map((a) => shape[a]);
      let g = keepDims(c, c.dy(0)!, axes);
      if (dims.every((d) => typeof d === 'number')) {
        const count = (dims as number[]).reduce((p, q) => p * q, 1);
        g = b.mul(g, b.scalarLike(1 / count, g));
      } else {
        // Symbolic dims: divide by the element count computed at run time.
        const n = b.op1('Size', [x]);
        const m = b.op1('Size', [c.output(0)]);
        g = b.div(b.mul(g, b.castLike(m, g)), b.castLike(n, g));
      }
      return [expandLike(c, g, x)];
    },
  },
  {
    opType: 'ReduceSumSquare',
    domain: '',
    infer: inferReduce,
    nonDifferentiable: [1],
    vjp: (c) => {
      const { b } = c;
      const x = c.input(0);
      const g = expandLike(c, keepDims(c, c.dy(0)!, vjpAxes(c)), x);
      return [b.mul(g, b.mul(x, b.scalarLike(2, x)))];
    },
  },
  {
    opType: 'ReduceMax',
    domain: '',
    infer: inferReduce,
    nonDifferentiable: [1],
    vjp: (c) => {
      // Gradient goes to the maximal elements (split evenly among ties).
      const { b } = c;
      const x = c.input(0);
      const axes = vjpAxes(c);
      const y = keepDims(c, c.output(0), axes);
      const mask = b.castLike(b.equal(x, y), x);
      const count = b.op1('ReduceSum', [mask, b.ints(axes)], { keepdims: 1 });
      const g = b.div(keepDims(c, c.dy(0)!, axes), count);
      return [b.mul(mask, g)];
    },
  },
  { opType: 'ReduceMin', domain: '', infer: inferReduce, nonDifferentiable: [1] },
  { opType: 'ReduceProd', domain: '', infer: inferReduce, nonDifferentiable: [1] },
  {
    opType: 'ArgMax',
    domain: '',
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      const axis = normalizeAxis(attrInt(ctx.node, 'axis', 0), x.shape.length, ctx.node);
      const keep = attrInt(ctx.node, 'keepdims', 1) === 1;
      const shape = x.shape.flatMap((d, i) => (i !== axis ? [d] : keep ? [1] : []));
      return [{ dtype: 7, shape }];
    },
  },
];

defineOps(reduceOps);
