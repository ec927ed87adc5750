import type { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInt, Dim } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { dimProduct, normalizeAxis, requireInput } from './shape-utils.js';
import { zerosLike, zerosOfShape } from './tensor-ops.js';

// Gather-style ops read data at indices; their gradient scatters dy back with reduction 'add' (opset 16+)
// so that an index read several times (an embedding row used by several tokens) sums its contributions,
// always with ScatterElements, whose reducing kernel is single-threaded (ScatterND-add races, see gatherVjp).
// A token embedding (axis-0 Gather from a [V, C] table) with a small vocabulary takes the one-hot product
// instead, which ORT runs faster there (bench/embedding-grad.ts, docs/decisions.md).

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
 * Vocabularies up to this size take the embedding gradient as a one-hot product, larger ones ScatterElements-add.
 * Measured with bench/embedding-grad.ts (ids [32, 128], C = 128, 2 threads): see docs/decisions.md.
 */
export const ONEHOT_EMBEDDING_MAX_VOCABULARY = 256;

export type EmbeddingGradientMethod = 'onehot' | 'scatter';

/** The method gatherVjp uses for a [V, C] table: the one-hot product up to the threshold, else a scatter. */
export function embeddingGradientMethod(vocabulary: number): EmbeddingGradientMethod {
  return vocabulary <= ONEHOT_EMBEDDING_MAX_VOCABULARY ? 'onehot' : 'scatter';
}

/**
 * Gradient of Gather(table [V, C], ids, axis 0) with respect to the table, from dy [...ids, C]:
 *   'onehot':  dW = OneHot(ids)^T dY, one MatMul of [V, N] by [N, C], N = the number of ids (memory: V*N values);
 *   'scatter': dW = ScatterElements(zeros [V, C], ids broadcast to [N, C], dY [N, C], axis 0, reduction 'add').
 * Both count negative ids from the end, as Gather does.
 */
export function embeddingGradient(b: GraphBuilder, ids: string, dy: string, vocabulary: number, method = embeddingGradientMethod(vocabulary)): string {
  const dyShape = b.shape(dy);
  const width = dyShape[dyShape.length - 1];
  if (typeof width !== 'number') throw new Error(`embeddingGradient: the embedding width of dy [${dyShape}] must be static`);
  const index = b.cast(ids, DType.INT64);
  if (method === 'scatter') {
    const zeros = zerosOfShape(b, [vocabulary, width], b.dtype(dy), () => b.ints([vocabulary, width]));
    const rows = b.op1('Expand', [b.reshape(index, [-1, 1]), b.ints([1, width])]);
    return b.op1('ScatterElements', [zeros, rows, b.reshape(dy, [-1, width])], { axis: 0, reduction: 'add' });
  }
  // The one-hot is built transposed, [V, N] = Equal(arange(V)[:, None], ids[None, :]), so dW is one plain MatMul.
  // Equal + Cast ran faster than ORT's OneHot here (bench/embedding-grad.ts), and OneHot has no float64 kernel.
  const positions = b.constant(Tensor.int64([vocabulary, 1], Array.from({ length: vocabulary }, (_, i) => i)));
  const flat = b.reshape(index, [1, -1]);
  const wrapped = b.where(b.less(flat, b.ints([0])), b.add(flat, b.ints([vocabulary])), flat);
  const oneHotT = b.castLike(b.equal(positions, wrapped), dy);
  return b.matmul(oneHotT, b.reshape(dy, [-1, width]));
}

/**
 * dy of Gather(data, indices, axis) with its index dims flattened into one, D[:axis] + [M] + D[axis+1:]
 * (M = the number of indices), from static dims or, where a dim is symbolic, from Shape(dy) at run time.
 */
function flattenIndexDims(b: GraphBuilder, dy: string, axis: number, q: number): string {
  if (q === 1) return dy;
  const shape = b.shape(dy);
  const target: Dim[] = [...shape.slice(0, axis), dimProduct(shape.slice(axis, axis + q)), ...shape.slice(axis + q)];
  if (target.every((d) => typeof d === 'number')) return b.reshape(dy, target as number[]);
  const dims = b.shapeOf(dy);
  const part = (from: number, to: number) => b.op1('Slice', [dims, b.ints([from]), b.ints([to])]);
  const runtime = b.op1('Concat', [part(0, axis), b.ints([-1]), part(axis + q, shape.length)], { axis: 0 });
  return b.op1('Reshape', [dy, runtime], {}, { types: [{ dtype: b.dtype(dy), shape: target }] });
}

/**
 * dData = ScatterElements(zeros, indices, dy, axis, reduction 'add') with dy's index dims flattened and the
 * indices broadcast along the other axes. Not ScatterND-add: ORT's CPU kernel splits ScatterND's update
 * slices across intra-op threads with no synchronisation, so repeated indices lose updates when it runs on
 * more than one thread (measured: errors of order 1 in dW at 2 threads, bench/embedding-grad.ts; ORT issue
 * #18048); ScatterElements with a reduction runs on one thread. An axis-0 gather from a static 2-D table (a
 * token embedding) goes through embeddingGradient, which picks the faster method for its vocabulary.
 */
function gatherVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const [data, indices] = [c.input(0), c.input(1)];
  const shape = b.shape(data);
  const rank = shape.length;
  const axis = gatherAxis(c.node, rank);
  if (axis === 0 && rank === 2 && shape.every((d) => typeof d === 'number')) return [embeddingGradient(b, indices, dy, shape[0] as number)];
  const updates = flattenIndexDims(b, dy, axis, b.rank(indices));
  const alongAxis = Array.from({ length: rank }, (_, i) => (i === axis ? -1 : 1));
  const updatesShape = b.shape(updates);
  const target = updatesShape.every((d) => typeof d === 'number') ? b.ints(updatesShape as number[]) : b.shapeOf(updates);
  const index = b.op1('Expand', [b.reshape(b.cast(indices, DType.INT64), alongAxis), target], {}, { types: [{ dtype: DType.INT64, shape: updatesShape }] });
  return [b.op1('ScatterElements', [zerosLike(b, data), index, updates], { axis, reduction: 'add' })];
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
