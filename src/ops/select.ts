import type { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInt, Node } from '../ir/graph.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { broadcastShapes, requireInput } from './shape-utils.js';

// Ops that pass some elements through and block others: Where, Clip, Dropout, Trilu. The gradient flows
// where the element was passed through.

function inferWhere(ctx: InferContext) {
  const shapes = [0, 1, 2].map((i) => requireInput(ctx, i).shape);
  return [{ dtype: requireInput(ctx, 1).dtype, shape: broadcastShapes(shapes, ctx.node) }];
}

/** dX = Where(cond, dy, 0), dY = Where(cond, 0, dy), each summed back to its input's shape. */
function whereVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const cond = c.input(0);
  const zero = b.scalarLike(0, dy);
  return [
    undefined,
    c.wants(1) ? b.unbroadcast(b.where(cond, dy, zero), b.shape(c.input(1))) : undefined,
    c.wants(2) ? b.unbroadcast(b.where(cond, zero, dy), b.shape(c.input(2))) : undefined,
  ];
}

/**
 * Clip(x, lo, hi) = min(max(x, lo), hi). dx = dy where lo <= x <= hi (the output equals x exactly there;
 * bounds inclusive, as torch.clamp), which also covers the min/max attributes of opset < 11. A bound fed
 * as an input (e.g. PACT's learnable alpha, Choi et al. 2018) gets the sum of dy where x was clipped to
 * it. Assumes lo <= hi (otherwise ONNX outputs hi everywhere).
 */
function clipVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const zero = b.scalarLike(0, dy);
  const dx = c.wants(0) ? b.where(b.equal(x, c.output(0)), dy, zero) : undefined;
  const boundGradient = (index: number, clipped: (bound: string) => string) =>
    c.node.inputs[index] && c.wants(index) ? b.unbroadcast(b.where(clipped(c.input(index)), dy, zero), b.shape(c.input(index))) : undefined;
  return [dx, boundGradient(1, (lo) => b.less(x, lo)), boundGradient(2, (hi) => b.greater(x, hi))];
}

function inferDropout(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  return [x, { dtype: DType.BOOL, shape: x.shape }];
}

/** A boolean/number constant input's first value, or undefined when the input is absent or not constant. */
function constantScalar(b: GraphBuilder, node: Node, index: number): number | undefined {
  const name = node.inputs[index];
  return name ? b.constantValue(name)?.toNumbers()[0] : undefined;
}

/**
 * Dropout (opset 12+): in training mode y = x * mask / (1 - ratio), so dx = dy * mask / (1 - ratio); in
 * inference mode (training_mode absent or false) y = x and dx = dy. Training mode needs the mask output.
 */
function dropoutVjp(c: VjpContext) {
  const { b, node } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const trainingName = node.inputs[2];
  const trainingConstant = constantScalar(b, node, 2);
  if (!trainingName || trainingConstant === 0) return [dy];
  const mask = node.outputs[1];
  if (!mask) {
    throw new Error(`node '${node.name}' (Dropout): a training-mode Dropout needs its mask output for the gradient; add a second output`);
  }
  const ratioConstant = node.inputs[1] ? constantScalar(b, node, 1) : 0.5;
  let scale =
    ratioConstant !== undefined
      ? b.scalarLike(1 / (1 - ratioConstant), dy)
      : b.reciprocal(b.sub(b.scalarLike(1, dy), b.castLike(c.input(1), dy)));
  // A training_mode fed at run time: the scale applies only when it is true (the mask is all true otherwise).
  if (trainingConstant === undefined) scale = b.where(c.input(2), scale, b.scalarLike(1, dy));
  return [b.mul(b.mul(dy, b.castLike(mask, dy)), scale)];
}

/**
 * Trilu keeps the upper (upper=1, the default) or lower (upper=0) triangle of the last two axes from diagonal k
 * (input 1, default 0) and zeroes the rest; a mask fixed by position, so dx = Trilu(dy) with the same k and upper.
 */
function triluVjp(c: VjpContext) {
  const dy = c.dy(0);
  if (!dy) return [];
  const k = c.node.inputs[1] ? [c.input(1)] : [];
  return [c.b.op1('Trilu', [dy, ...k], { upper: attrInt(c.node, 'upper', 1) })];
}

function inferTrilu(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  if (x.shape.length < 2) throw new Error(`node '${ctx.node.name}' (Trilu): input must have rank >= 2, got [${x.shape}]`);
  return [x];
}

export const selectOps: OpDef[] = [
  { opType: 'Where', domain: '', infer: inferWhere, vjp: whereVjp, nonDifferentiable: [0] },
  { opType: 'Clip', domain: '', infer: (ctx) => [requireInput(ctx, 0)], vjp: clipVjp },
  { opType: 'Dropout', domain: '', infer: inferDropout, vjp: dropoutVjp, nonDifferentiable: [1, 2] },
  { opType: 'Trilu', domain: '', infer: inferTrilu, vjp: triluVjp, nonDifferentiable: [1] },
];

defineOps(selectOps);
