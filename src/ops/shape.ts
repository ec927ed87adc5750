import { DType } from '../ir/dtype.js';
import { divideProducts, subDims } from '../ir/dims.js';
import type { Dim, Node } from '../ir/graph.js';
import { attrInt, attrInts, attrString } from '../ir/graph.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { broadcastShapes, dimProduct, normalizeAxis, requireInput } from './shape-utils.js';

/**
 * The elements of a shape-like input (shape, axes, repeats, Range bounds): a constant, or known element-wise from
 * the partial evaluator (numbers and symbolic dims: Shape of [N, 4] is ['N', 4]). Undefined when computed at run
 * time from values nothing knows.
 */
export function shapeInput(ctx: InferContext, i: number): Dim[] | undefined {
  if (!ctx.node.inputs[i]) return undefined;
  const t = ctx.constant(i);
  if (t) return t.toNumbers();
  return ctx.shapeValue?.(i);
}

/** A shape-like input whose numbers are needed (axes); throws naming the node where they are not known. */
function constantInts(ctx: InferContext, i: number, what: string): number[] {
  const v = shapeInput(ctx, i);
  if (!v || v.some((d) => typeof d !== 'number')) {
    throw new Error(`node '${ctx.node.name}' (${ctx.node.opType}): ${what} (input ${i}) must be a constant or follow from known dims`);
  }
  return v as number[];
}

/** Number of elements of a 1-D shape input, from its type: the output rank where the values are unknown. */
export function shapeInputLength(ctx: InferContext, i: number, what: string): number {
  const t = requireInput(ctx, i);
  const len = t.shape.length === 0 ? 1 : t.shape[0];
  if (t.shape.length > 1 || typeof len !== 'number') {
    throw new Error(`node '${ctx.node.name}' (${ctx.node.opType}): ${what} (input ${i}) has shape [${t.shape}]; need a 1-D input of static length`);
  }
  return len;
}

/** A fresh symbolic dim for axis k of a node's output (output names are unique in a graph). */
export const unknownDim = (node: Node, k: number, output = 0): string => `${node.outputs[output] || node.name}_d${k}`;

/**
 * ONNX Reshape semantics: 0 copies the input dim (unless allowzero), -1 is inferred. Target elements may be
 * symbolic; -1 then takes the input's product divided by the other dims where that divides by factors
 * ([B, T, 32] to [B, T, 4, -1] gives 8), else a fresh symbolic dim.
 */
export function reshapeDims(input: Dim[], target: Dim[], node: InferContext['node']): Dim[] {
  const allowZero = attrInt(node, 'allowzero', 0) === 1;
  const out: Dim[] = target.map((d, i) => (d === 0 && !allowZero ? input[i] : d));
  const minus = out.indexOf(-1);
  if (minus >= 0) {
    const known = out.filter((_, i) => i !== minus);
    const total = dimProduct(input);
    const rest = dimProduct(known);
    if (typeof total === 'number' && typeof rest === 'number') {
      if (rest === 0 || total % rest !== 0) throw new Error(`node '${node.name}' (Reshape): cannot reshape [${input}] to [${target}]`);
      out[minus] = total / rest;
    } else out[minus] = divideProducts(input, known) ?? unknownDim(node, minus);
  }
  return out;
}

export const shapeOps: OpDef[] = [
  {
    opType: 'Shape',
    domain: '',
    // Shape-15 start/end: a slice of the dims, negative values counting from the end, clamped to the rank.
    infer: (ctx) => {
      const rank = requireInput(ctx, 0).shape.length;
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
      const start = clamp(attrInt(ctx.node, 'start', 0));
      const end = clamp(attrInt(ctx.node, 'end', rank));
      return [{ dtype: DType.INT64, shape: [Math.max(end - start, 0)] }];
    },
  },
  { opType: 'Size', domain: '', infer: () => [{ dtype: DType.INT64, shape: [] }] },
  {
    opType: 'Reshape',
    domain: '',
    nonDifferentiable: [1],
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      const target = shapeInput(ctx, 1);
      if (target) return [{ dtype: x.dtype, shape: reshapeDims(x.shape, target, ctx.node) }];
      // Computed at run time from values nothing knows: only the rank is known.
      const rank = shapeInputLength(ctx, 1, 'shape');
      return [{ dtype: x.dtype, shape: Array.from({ length: rank }, (_, k) => unknownDim(ctx.node, k)) }];
    },
    vjp: (c) => [c.b.reshapeLike(c.dy(0)!, c.input(0))],
  },
  {
    opType: 'Flatten',
    domain: '',
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      const axis = normalizeAxis(attrInt(ctx.node, 'axis', 1), x.shape.length + 1, ctx.node);
      return [{ dtype: x.dtype, shape: [dimProduct(x.shape.slice(0, axis)), dimProduct(x.shape.slice(axis))] }];
    },
    vjp: (c) => [c.b.reshapeLike(c.dy(0)!, c.input(0))],
  },
  {
    opType: 'Transpose',
    domain: '',
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      const perm = attrInts(ctx.node, 'perm', undefined) ?? x.shape.map((_, i) => x.shape.length - 1 - i);
      return [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]) }];
    },
    vjp: (c) => {
      const rank = c.b.rank(c.input(0));
      const perm = attrInts(c.node, 'perm', undefined) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
      const inverse = perm.map((_, i) => perm.indexOf(i));
      return [c.b.transpose(c.dy(0)!, inverse)];
    },
  },
  {
    opType: 'Squeeze',
    domain: '',
    nonDifferentiable: [1],
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      const axes = ctx.node.inputs[1] ? constantInts(ctx, 1, 'axes').map((a) => normalizeAxis(a, x.shape.length, ctx.node)) : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
      return [{ dtype: x.dtype, shape: x.shape.filter((_, i) => !axes.includes(i)) }];
    },
    vjp: (c) => [c.b.reshapeLike(c.dy(0)!, c.input(0))],
  },
  {
    opType: 'Unsqueeze',
    domain: '',
    nonDifferentiable: [1],
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      const given = constantInts(ctx, 1, 'axes');
      const rank = x.shape.length + given.length;
      const axes = given.map((a) => normalizeAxis(a, rank, ctx.node));
      const shape: Dim[] = [];
      let k = 0;
      for (let i = 0; i < rank; i++) shape.push(axes.includes(i) ? 1 : x.shape[k++]);
      return [{ dtype: x.dtype, shape }];
    },
    vjp: (c) => [c.b.reshapeLike(c.dy(0)!, c.input(0))],
  },
  {
    opType: 'Expand',
    domain: '',
    nonDifferentiable: [1],
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      // Unknown target dims stay symbolic; broadcasting keeps x's dims that are not 1 (Expand never shrinks).
      const target = shapeInput(ctx, 1) ?? Array.from({ length: shapeInputLength(ctx, 1, 'shape') }, (_, k) => unknownDim(ctx.node, k));
      return [{ dtype: x.dtype, shape: broadcastShapes([x.shape, target], ctx.node) }];
    },
    vjp: (c) => [c.b.unbroadcast(c.dy(0)!, c.b.shape(c.input(0)))],
  },
  {
    opType: 'Cast',
    domain: '',
    infer: (ctx) => [{ dtype: attrInt(ctx.node, 'to', 1) as DType, shape: requireInput(ctx, 0).shape }],
    vjp: (c) => [c.b.castLike(c.dy(0)!, c.input(0))],
  },
  {
    opType: 'CastLike',
    domain: '',
    nonDifferentiable: [1],
    infer: (ctx) => [{ dtype: requireInput(ctx, 1).dtype, shape: requireInput(ctx, 0).shape }],
    vjp: (c) => [c.b.castLike(c.dy(0)!, c.input(0))],
  },
  {
    opType: 'OneHot',
    domain: '',
    nonDifferentiable: [0, 1, 2],
    infer: (ctx) => {
      const idx = requireInput(ctx, 0);
      const depth = shapeInput(ctx, 1)?.[0] ?? unknownDim(ctx.node, -1);
      const rank = idx.shape.length + 1;
      const axis = normalizeAxis(attrInt(ctx.node, 'axis', -1), rank, ctx.node);
      const shape = [...idx.shape];
      shape.splice(axis, 0, depth);
      return [{ dtype: requireInput(ctx, 2).dtype, shape }];
    },
  },
  {
    opType: 'ConstantOfShape',
    domain: '',
    infer: (ctx) => {
      const v = ctx.node.attrs.value;
      const dtype = v && v.kind === 'tensor' ? v.value.dtype : DType.FLOAT;
      const shape = shapeInput(ctx, 0) ?? Array.from({ length: shapeInputLength(ctx, 0, 'shape') }, (_, k) => unknownDim(ctx.node, k));
      return [{ dtype, shape }];
    },
  },
  { opType: 'Range', domain: '', infer: inferRange },
  // F.pixel_shuffle exports DepthToSpace (mode CRD), F.pixel_unshuffle a Reshape/Transpose form; ONNX's default
  // DCR DepthToSpace is what SpaceToDepth inverts. Both only move elements, so each gradient is the inverse move.
  { opType: 'DepthToSpace', domain: '', infer: (ctx) => [blockRearranged(ctx, 'depth-to-space')], vjp: depthToSpaceVjp },
  { opType: 'SpaceToDepth', domain: '', infer: (ctx) => [blockRearranged(ctx, 'space-to-depth')], vjp: (c) => [c.b.op1('DepthToSpace', [c.dy(0)!], { blocksize: blockSize(c.node), mode: 'DCR' })] },
];

function blockSize(node: Node): number {
  const size = attrInt(node, 'blocksize', 0);
  if (size < 1) throw new Error(`node '${node.name}' (${node.opType}): blocksize must be a positive integer, got ${size}`);
  return size;
}

/** [N, C, H, W] -> [N, C / b^2, H b, W b] (depth-to-space) or [N, C b^2, H / b, W / b] (space-to-depth). */
function blockRearranged(ctx: InferContext, direction: 'depth-to-space' | 'space-to-depth') {
  const x = requireInput(ctx, 0);
  const { node } = ctx;
  if (x.shape.length !== 4) throw new Error(`node '${node.name}' (${node.opType}): input must be [N, C, H, W], got rank ${x.shape.length}`);
  const size = blockSize(node);
  const [n, c, h, w] = x.shape;
  const need = (d: Dim, k: number, what: string): number => {
    if (typeof d !== 'number' || d % k !== 0) throw new Error(`node '${node.name}' (${node.opType}): ${what} (${d}) must be a known multiple of ${k}`);
    return d;
  };
  const shape: Dim[] =
    direction === 'depth-to-space'
      ? [n, need(c, size * size, 'channels') / (size * size), typeof h === 'number' ? h * size : `${node.name}_h`, typeof w === 'number' ? w * size : `${node.name}_w`]
      : [n, typeof c === 'number' ? c * size * size : `${node.name}_c`, need(h, size, 'height') / size, need(w, size, 'width') / size];
  return { dtype: x.dtype, shape };
}

/**
 * DepthToSpace's gradient: SpaceToDepth for DCR (its exact inverse); for CRD (channel c' b^2 + i b + j goes to pixel
 * (h b + i, w b + j) of channel c') the inverse move as Reshape [N, C', H, b, W, b], Transpose, Reshape [N, C, H, W].
 */
function depthToSpaceVjp(c: VjpContext) {
  const { b } = c;
  const size = blockSize(c.node);
  const dy = c.dy(0)!;
  if (attrString(c.node, 'mode', 'DCR') !== 'CRD') return [b.op1('SpaceToDepth', [dy], { blocksize: size })];
  const [, channels, h, w] = b.shape(c.input(0));
  if (typeof channels !== 'number' || typeof h !== 'number' || typeof w !== 'number') {
    throw new Error(`node '${c.node.name}' (DepthToSpace): the CRD gradient needs known C, H, W; got ${b.shape(c.input(0)).join('x')}`);
  }
  const blocks = b.reshape(dy, [-1, channels / (size * size), h, size, w, size]);
  return [b.reshape(b.transpose(blocks, [0, 1, 3, 5, 2, 4]), [-1, channels, h, w])];
}

/** Range-11: max(ceil((limit - start) / delta), 0) elements; Range(0, T, 1) of a symbolic T has T elements. */
function inferRange(ctx: InferContext) {
  const [start, limit, delta] = [0, 1, 2].map((i) => shapeInput(ctx, i)?.[0]);
  let length: Dim;
  if (typeof start === 'number' && typeof limit === 'number' && typeof delta === 'number' && delta !== 0) {
    length = Math.max(Math.ceil((limit - start) / delta), 0);
  } else if (delta === 1 && start !== undefined && limit !== undefined) length = subDims(limit, start);
  else length = unknownDim(ctx.node, 0);
  return [{ dtype: requireInput(ctx, 0).dtype, shape: [length] }];
}

defineOps(shapeOps);
