import { DType } from '../ir/dtype';
import type { Dim } from '../ir/graph';
import { attrInt, attrInts } from '../ir/graph';
import { defineOps, InferContext, OpDef } from './registry';
import { broadcastShapes, dimProduct, normalizeAxis, requireInput } from './shape-utils';

function constantInts(ctx: InferContext, i: number, what: string): number[] {
  const t = ctx.constant(i);
  if (!t) throw new Error(`node '${ctx.node.name}' (${ctx.node.opType}): ${what} (input ${i}) must be a constant`);
  return t.toNumbers();
}

/** ONNX Reshape semantics: 0 copies the input dim (unless allowzero), -1 is inferred. */
export function reshapeDims(input: Dim[], target: number[], node: InferContext['node']): Dim[] {
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
    } else {
      // Symbolic: the unknown dim carries the symbolic factor (e.g. the batch).
      const sym = input.filter((d) => typeof d === 'string');
      const numIn = input.filter((d) => typeof d === 'number').reduce((a: number, b) => a * (b as number), 1);
      const numKnown = known.filter((d) => typeof d === 'number').reduce((a: number, b) => a * (b as number), 1);
      const symKnown = known.filter((d) => typeof d === 'string');
      if (symKnown.length === 0 && sym.length === 1 && numIn % numKnown === 0) {
        out[minus] = numIn / numKnown === 1 ? sym[0] : `${sym[0]}*${numIn / numKnown}`;
      } else if (symKnown.length === sym.length && symKnown.every((s, i) => s === sym[i])) {
        out[minus] = numIn / numKnown;
      } else out[minus] = `${node.name}_dim`;
    }
  }
  return out;
}

export const shapeOps: OpDef[] = [
  { opType: 'Shape', domain: '', infer: (ctx) => [{ dtype: DType.INT64, shape: [requireInput(ctx, 0).shape.length] }] },
  { opType: 'Size', domain: '', infer: () => [{ dtype: DType.INT64, shape: [] }] },
  {
    opType: 'Reshape',
    domain: '',
    nonDifferentiable: [1],
    infer: (ctx) => {
      const x = requireInput(ctx, 0);
      return [{ dtype: x.dtype, shape: reshapeDims(x.shape, constantInts(ctx, 1, 'shape'), ctx.node) }];
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
      const rank = x.shape.length + (ctx.constant(1)?.size ?? 0);
      const axes = constantInts(ctx, 1, 'axes').map((a) => normalizeAxis(a, rank, ctx.node));
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
      return [{ dtype: x.dtype, shape: broadcastShapes([x.shape, constantInts(ctx, 1, 'shape')], ctx.node) }];
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
      const depth = constantInts(ctx, 1, 'depth')[0];
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
      return [{ dtype, shape: constantInts(ctx, 0, 'shape') }];
    },
  },
  {
    opType: 'Range',
    domain: '',
    infer: (ctx) => [{ dtype: requireInput(ctx, 0).dtype, shape: [`${ctx.node.name}_len`] }],
  },
];

defineOps(shapeOps);
