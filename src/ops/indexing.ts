import { DType } from '../ir/dtype';
import { attrInt, Dim } from '../ir/graph';
import { defineOps, InferContext, OpDef, VjpContext } from './registry';
import { normalizeAxis, requireInput } from './shape-utils';
import { zerosLike, zerosOfShape } from './tensor-ops';

// Gather-style ops read data at indices; their gradient scatters dy back with reduction 'add' (opset 16+)
// so that an index read several times (an embedding row used by several tokens) sums its contributions.

function gatherAxis(node: InferContext['node'], rank: number): number {
  return normalizeAxis(attrInt(node, 'axis', 0), rank, node);
}

function inferGather(ctx: InferContext) {
  const data = requireInput(ctx, 0);
  const indices = requireInput(ctx, 1);
  const axis = gatherAxis(ctx.node, data.shape.length);
  const shape: Dim[] = [...data.shape.slice(0, axis), ...indices.shape, ...data.shape.slice(axis + 1)];
  return [{ dtype: data.dtype, shape }];
}

/**
 * dData = ScatterND(zeros, indices[..., None], dy, reduction='add') on data with the gathered axis moved
 * to the front (ScatterND indexes leading axes), then moved back.
 */
function gatherVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const [data, indices] = [c.input(0), c.input(1)];
  const shape = b.shape(data);
  const rank = shape.length;
  const axis = gatherAxis(c.node, rank);
  const q = b.rank(indices);
  const index = b.unsqueeze(b.cast(indices, DType.INT64), [q]);
  if (axis === 0) return [b.op1('ScatterND', [zerosLike(b, data), index, dy], { reduction: 'add' })];

  // dy is data[:axis] + indices + data[axis+1:]; ScatterND wants indices + data[:axis] + data[axis+1:].
  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
  const dyPerm = [...range(axis, axis + q), ...range(0, axis), ...range(axis + q, b.rank(dy))];
  const dataPerm = [axis, ...range(0, axis), ...range(axis + 1, rank)];
  const movedShape = dataPerm.map((p) => shape[p]);
  const zeros = zerosOfShape(b, movedShape, b.dtype(dy), () =>
    b.op1('Gather', [b.shapeOf(data), b.ints(dataPerm)], { axis: 0 }),
  );
  const scattered = b.op1('ScatterND', [zeros, index, b.transpose(dy, dyPerm)], { reduction: 'add' });
  return [b.transpose(scattered, dataPerm.map((_, i) => dataPerm.indexOf(i)))];
}

/** dData = ScatterElements(zeros, indices, dy, axis, reduction='add'). */
function gatherElementsVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const data = c.input(0);
  const axis = gatherAxis(c.node, b.rank(data));
  const indices = b.cast(c.input(1), DType.INT64);
  return [b.op1('ScatterElements', [zerosLike(b, data), indices, dy], { axis, reduction: 'add' })];
}

const inferLikeData = (ctx: InferContext) => [requireInput(ctx, 0)];

export const indexingOps: OpDef[] = [
  { opType: 'Gather', domain: '', infer: inferGather, vjp: gatherVjp, nonDifferentiable: [1] },
  {
    opType: 'GatherElements',
    domain: '',
    infer: (ctx) => [{ dtype: requireInput(ctx, 0).dtype, shape: requireInput(ctx, 1).shape }],
    vjp: gatherElementsVjp,
    nonDifferentiable: [1],
  },
  // Scatters are emitted by the rules above; they have no gradient rule of their own yet.
  { opType: 'ScatterND', domain: '', infer: inferLikeData, nonDifferentiable: [1] },
  { opType: 'ScatterElements', domain: '', infer: inferLikeData, nonDifferentiable: [1] },
];

defineOps(indexingOps);
