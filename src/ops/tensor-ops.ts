import type { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInt, attrInts, attrString, Dim, Node, Shape } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { normalizeAxis, requireInput } from './shape-utils.js';
import { shapeInput, shapeInputLength, unknownDim } from './shape.js';
import { mulDims } from '../ir/dims.js';

// Ops that copy or rearrange elements: Concat, Split, Slice, Pad, Tile. Their gradients route dy back to
// where each element came from (Split <-> Concat, Slice <-> Pad) and sum where one element went to many
// places (Tile).

/** Stands for "to the end" in Slice ends; Slice clamps it to the dim. */
const TO_END = Number.MAX_SAFE_INTEGER;
/** Slice ends at least this large mean "to the end" however long a symbolic dim turns out to be. */
const OPEN_END = 2 ** 31 - 1;

/** Zeros of a given (possibly symbolic) shape; `shapeOf` supplies the shape at run time when symbolic. */
export function zerosOfShape(b: GraphBuilder, shape: Shape, dtype: DType, shapeOf: () => string): string {
  const value = Tensor.zeros(dtype, [1]);
  if (shape.every((d) => typeof d === 'number')) return b.op1('ConstantOfShape', [b.ints(shape as number[])], { value });
  return b.op1('ConstantOfShape', [shapeOf()], { value }, { types: [{ dtype, shape }] });
}

/** Zeros shaped like `v`. */
export function zerosLike(b: GraphBuilder, v: string): string {
  return zerosOfShape(b, b.shape(v), b.dtype(v), () => b.shapeOf(v));
}

/** Integers from a constant input (opset >= 10/11/13 form) or, in older models, from an attribute. */
function intsFromInputOrAttr(node: Node, constant: (i: number) => Tensor | undefined, index: number, attr: string): number[] | undefined {
  if (node.inputs[index]) {
    const t = constant(index);
    if (!t) throw new Error(`node '${node.name}' (${node.opType}): input ${index} (${attr}) must be a constant`);
    return t.toNumbers();
  }
  return attrInts(node, attr, undefined);
}

/**
 * Integers of input `index` for shape inference: its known elements (a constant, or numbers and symbolic dims
 * from the partial evaluator), the attribute in older models, or 'unknown' where computed at run time.
 */
function inferInts(ctx: InferContext, index: number, attr: string): Dim[] | 'unknown' | undefined {
  if (ctx.node.inputs[index]) return shapeInput(ctx, index) ?? 'unknown';
  return attrInts(ctx.node, attr, undefined);
}

function staticDim(d: Dim, node: Node, what: string): number {
  if (typeof d !== 'number') throw new Error(`node '${node.name}' (${node.opType}): ${what} is symbolic ('${d}'); its gradient needs a static size`);
  return d;
}

// ---- Concat / Split ----

function inferConcat(ctx: InferContext) {
  const first = requireInput(ctx, 0);
  const rank = first.shape.length;
  const axis = normalizeAxis(attrInt(ctx.node, 'axis', 0), rank, ctx.node);
  const shape = [...first.shape];
  const parts = ctx.inputs.map((t, i) => (t ?? requireInput(ctx, i)).shape[axis]);
  shape[axis] = parts.every((d) => typeof d === 'number') ? (parts as number[]).reduce((p, q) => p + q, 0) : parts.join('+');
  return [{ dtype: first.dtype, shape }];
}

function concatVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const inputs = c.node.inputs;
  if (inputs.length === 1) return [dy];
  const axis = normalizeAxis(attrInt(c.node, 'axis', 0), b.rank(dy), c.node);
  const sizes = inputs.map((v) => b.shape(v)[axis]);
  if (sizes.every((d) => typeof d === 'number')) return b.op('Split', [dy, b.ints(sizes as number[])], { axis }, { outputs: inputs.length });
  // Symbolic sizes along the axis: read them from the inputs' shapes at run time.
  const runtimeSizes = b.op1('Concat', inputs.map((v) => b.op1('Slice', [b.shapeOf(v), b.ints([axis]), b.ints([axis + 1])])), { axis: 0 });
  return b.op('Split', [dy, runtimeSizes], { axis }, { outputs: inputs.length, types: inputs.map((v) => b.type(v)) });
}

/** Split sizes: the split input (opset 13+) or attribute, else equal parts (the last smaller, as opset 18). */
function splitSizes(ctx: InferContext, dim: Dim, axis: number): Dim[] {
  const node = ctx.node;
  const explicit = inferInts(ctx, 1, 'split');
  if (explicit === 'unknown') return node.outputs.map((_, i) => unknownDim(node, axis, i));
  if (explicit) return explicit;
  const n = attrInt(node, 'num_outputs', node.outputs.length);
  if (typeof dim !== 'number') return Array.from({ length: n }, (_, i) => `${node.name}_part${i}`);
  const part = Math.ceil(dim / n);
  return Array.from({ length: n }, (_, i) => Math.max(0, Math.min(part, dim - i * part)));
}

function inferSplit(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const axis = normalizeAxis(attrInt(ctx.node, 'axis', 0), x.shape.length, ctx.node);
  const sizes = splitSizes(ctx, x.shape[axis], axis);
  const total = sizes.reduce((p: number, q) => p + (typeof q === 'number' ? q : NaN), 0);
  if (typeof x.shape[axis] === 'number' && !Number.isNaN(total) && total !== x.shape[axis]) {
    throw new Error(`node '${ctx.node.name}' (Split): sizes [${sizes}] do not add up to dim ${x.shape[axis]} of axis ${axis}`);
  }
  return sizes.map((d) => ({ dtype: x.dtype, shape: x.shape.map((s, i) => (i === axis ? d : s)) }));
}

function splitVjp(c: VjpContext) {
  const { b } = c;
  const axis = normalizeAxis(attrInt(c.node, 'axis', 0), b.rank(c.input(0)), c.node);
  // Outputs that no gradient reaches contribute zeros.
  const parts = c.node.outputs.map((o, i) => c.dy(i) ?? zerosLike(b, o));
  return [parts.length === 1 ? parts[0] : b.op1('Concat', parts, { axis })];
}

// ---- Slice / Pad ----

interface SliceAxis {
  axis: number;
  start: number;
  end: number;
  step: number;
}

/** Starts/ends/axes/steps of a Slice node (inputs since opset 10, attributes before). */
function sliceParams(node: Node, constant: (i: number) => Tensor | undefined, rank: number) {
  const starts = intsFromInputOrAttr(node, constant, 1, 'starts');
  const ends = intsFromInputOrAttr(node, constant, 2, 'ends');
  if (!starts || !ends || starts.length !== ends.length) {
    throw new Error(`node '${node.name}' (Slice): starts and ends must be constants of equal length`);
  }
  const axes = (intsFromInputOrAttr(node, constant, 3, 'axes') ?? starts.map((_, i) => i)).map((a) => normalizeAxis(a, rank, node));
  const steps = intsFromInputOrAttr(node, constant, 4, 'steps') ?? starts.map(() => 1);
  if (steps.some((s) => s === 0)) throw new Error(`node '${node.name}' (Slice): steps must be nonzero, got [${steps}]`);
  return starts.map((start, i) => ({ axis: axes[i], start, end: ends[i], step: steps[i] }));
}

/** ONNX Slice clamping: negative indices count from the end, then clamp to the dim (per step sign). */
function resolveSlice(s: SliceAxis, dim: number): SliceAxis & { length: number } {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let start = s.start < 0 ? s.start + dim : s.start;
  let end = s.end < 0 ? s.end + dim : s.end;
  if (s.step > 0) {
    start = clamp(start, 0, dim);
    end = clamp(end, 0, dim);
  } else {
    start = clamp(start, 0, dim - 1);
    end = clamp(end, -1, dim - 1);
  }
  const length = Math.max(0, Math.ceil((s.step > 0 ? end - start : start - end) / Math.abs(s.step)));
  return { ...s, start, end, length };
}

/**
 * Slice output dims. Starts/ends computed at run time (mask[:, :, :T, :T] with T from Shape) are read from the
 * partial evaluator's values: x[0:T] of a size T is T (ONNX Runtime clamps T to the dim, and a mask sliced to
 * the sequence length fits it); dims nothing determines stay symbolic.
 */
function inferSlice(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const node = ctx.node;
  const shape = [...x.shape];
  const starts = inferInts(ctx, 1, 'starts');
  const ends = inferInts(ctx, 2, 'ends');
  if (!starts || !ends) throw new Error(`node '${node.name}' (Slice): starts and ends are missing`);
  const axesGiven = inferInts(ctx, 3, 'axes');
  const stepsGiven = inferInts(ctx, 4, 'steps');
  if (axesGiven === 'unknown' || axesGiven?.some((a) => typeof a !== 'number')) return [{ dtype: x.dtype, shape: shape.map((_, k) => unknownDim(node, k)) }];
  const count = starts !== 'unknown' ? starts.length : ends !== 'unknown' ? ends.length : (axesGiven?.length ?? shapeInputLength(ctx, 1, 'starts'));
  if (starts !== 'unknown' && ends !== 'unknown' && starts.length !== ends.length) {
    throw new Error(`node '${node.name}' (Slice): starts and ends must have equal length, got [${starts}] and [${ends}]`);
  }
  const axes = ((axesGiven as number[] | undefined) ?? Array.from({ length: count }, (_, i) => i)).map((a) => normalizeAxis(a, x.shape.length, node));
  for (let i = 0; i < count; i++) {
    const axis = axes[i];
    const dim = x.shape[axis];
    const start = starts === 'unknown' ? undefined : starts[i];
    const end = ends === 'unknown' ? undefined : ends[i];
    const step = stepsGiven === 'unknown' ? undefined : (stepsGiven?.[i] ?? 1);
    if (typeof start === 'number' && typeof end === 'number' && typeof step === 'number') {
      if (step === 0) throw new Error(`node '${node.name}' (Slice): steps must be nonzero, got [${stepsGiven}]`);
      const s = { axis, start, end, step };
      if (typeof dim === 'number') shape[axis] = resolveSlice(s, dim).length;
      else if (start >= 0 && end >= OPEN_END && step === 1) shape[axis] = start === 0 ? dim : `${dim}-${start}`;
      else if (start >= 0 && end >= 0 && end < OPEN_END && step > 0) shape[axis] = Math.ceil((end - start) / step);
      else shape[axis] = `${node.name}_dim${axis}`;
    } else if (start === 0 && step === 1 && typeof end === 'string') shape[axis] = end;
    else shape[axis] = unknownDim(node, axis);
  }
  return [{ dtype: x.dtype, shape }];
}

/**
 * Unit steps: dx = Pad(dy) with zeros before and after the slice. Other steps: scatter dy's elements to
 * their flat positions in a zero tensor (ScatterElements on the flattened input; positions are unique).
 */
function sliceVjp(c: VjpContext) {
  const { b, node } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const xShape = b.shape(x);
  const rank = xShape.length;
  const params = sliceParams(node, (i) => b.constantValue(node.inputs[i]), rank);
  if (params.every((s) => s.step === 1)) {
    const pads = new Array(2 * rank).fill(0);
    for (const s of params) {
      const dim = xShape[s.axis];
      if (typeof dim !== 'number' && s.start >= 0 && s.end >= OPEN_END) {
        pads[s.axis] = s.start; // x[start:] of a symbolic dim: zeros before, none after
        continue;
      }
      const r = resolveSlice(s, staticDim(dim, node, `axis ${s.axis} of input '${x}'`));
      pads[s.axis] = r.start;
      pads[rank + s.axis] = (dim as number) - r.start - r.length;
    }
    return [b.op1('Pad', [dy, b.ints(pads)], {}, { types: [b.type(x)] })];
  }
  const dims = xShape.map((d, i) => staticDim(d, node, `axis ${i} of input '${x}'`));
  const slices = params.map((s) => resolveSlice(s, dims[s.axis]));
  const picked = dims.map((d, axis) => {
    const s = slices.find((t) => t.axis === axis);
    return s ? Array.from({ length: s.length }, (_, k) => s.start + k * s.step) : Array.from({ length: d }, (_, k) => k);
  });
  const flat = flatPositions(dims, picked);
  const total = dims.reduce((p, q) => p * q, 1);
  const zeros = b.op1('ConstantOfShape', [b.ints([total])], { value: Tensor.zeros(b.dtype(dy), [1]) });
  const scattered = b.op1('ScatterElements', [zeros, b.constant(Tensor.int64([flat.length], flat)), b.reshape(dy, [-1])], { axis: 0 });
  return [b.reshape(scattered, dims)];
}

/** Row-major flat offsets of the grid picked[0] x picked[1] x ... in a tensor of the given dims. */
function flatPositions(dims: number[], picked: number[][]): number[] {
  let positions = [0];
  for (let axis = 0; axis < dims.length; axis++) {
    const next: number[] = [];
    for (const p of positions) for (const k of picked[axis]) next.push(p * dims[axis] + k);
    positions = next;
  }
  return positions;
}

/** Pads of a Pad node as [begin..., end...] over every axis (the axes input of opset 18 expanded). */
function padAmounts(node: Node, constant: (i: number) => Tensor | undefined, rank: number): number[] {
  const given = intsFromInputOrAttr(node, constant, 1, 'pads');
  if (!given) throw new Error(`node '${node.name}' (Pad): pads are missing`);
  const axes = node.inputs[3] ? intsFromInputOrAttr(node, constant, 3, 'axes')!.map((a) => normalizeAxis(a, rank, node)) : undefined;
  if (!axes) {
    if (given.length !== 2 * rank) throw new Error(`node '${node.name}' (Pad): expected ${2 * rank} pads for rank ${rank}, got ${given.length}`);
    return given;
  }
  const pads = new Array(2 * rank).fill(0);
  axes.forEach((a, i) => {
    pads[a] = given[i];
    pads[rank + a] = given[axes.length + i];
  });
  return pads;
}

function inferPad(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const rank = x.shape.length;
  const pads = padAmounts(ctx.node, ctx.constant, rank);
  const shape = x.shape.map((d, i) => {
    const extra = pads[i] + pads[rank + i];
    if (typeof d === 'number') return d + extra;
    return extra === 0 ? d : `${d}${extra > 0 ? '+' : ''}${extra}`;
  });
  return [{ dtype: x.dtype, shape }];
}

/** Constant padding: dx = the unpadded window of dy (Slice), re-padded with zeros where pads cropped. */
function padVjp(c: VjpContext) {
  const { b, node } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const mode = attrString(node, 'mode', 'constant');
  if (mode !== 'constant') {
    throw new Error(`node '${node.name}' (Pad): no gradient rule for mode '${mode}'; only mode 'constant' is differentiable here`);
  }
  const rank = b.rank(c.input(0));
  const pads = padAmounts(node, (i) => b.constantValue(node.inputs[i]), rank);
  const starts = pads.slice(0, rank).map((p) => Math.max(p, 0));
  const ends = pads.slice(rank).map((p) => (p > 0 ? -p : TO_END));
  const axes = Array.from({ length: rank }, (_, i) => i);
  let g = b.op1('Slice', [dy, b.ints(starts), b.ints(ends), b.ints(axes)]);
  const cropped = pads.map((p) => Math.max(-p, 0));
  if (cropped.some((p) => p > 0)) g = b.op1('Pad', [g, b.ints(cropped)]);
  return [g];
}

// ---- Tile ----

function inferTile(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const repeats = inferInts(ctx, 1, 'repeats');
  if (!repeats) throw new Error(`node '${ctx.node.name}' (Tile): repeats are missing`);
  if (repeats === 'unknown') return [{ dtype: x.dtype, shape: x.shape.map((_, k) => unknownDim(ctx.node, k)) }];
  if (repeats.length !== x.shape.length) throw new Error(`node '${ctx.node.name}' (Tile): ${repeats.length} repeats for rank ${x.shape.length}`);
  return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (repeats[i] === 1 ? d : mulDims(d, repeats[i]))) }];
}

/** dy viewed as [r0, d0, r1, d1, ...] summed over the repeat axes. */
function tileVjp(c: VjpContext) {
  const { b, node } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const repeats = b.constantValue(node.inputs[1])!.toNumbers();
  const dims = b.shape(x).map((d, i) => staticDim(d, node, `axis ${i} of input '${x}'`));
  const split = b.reshape(dy, dims.flatMap((d, i) => [repeats[i], d]));
  return [b.reduceSum(split, dims.map((_, i) => 2 * i), false)];
}

export const tensorOps: OpDef[] = [
  { opType: 'Concat', domain: '', infer: inferConcat, vjp: concatVjp },
  { opType: 'Split', domain: '', infer: inferSplit, vjp: splitVjp, nonDifferentiable: [1] },
  { opType: 'Slice', domain: '', infer: inferSlice, vjp: sliceVjp, nonDifferentiable: [1, 2, 3, 4] },
  { opType: 'Pad', domain: '', infer: inferPad, vjp: padVjp, nonDifferentiable: [1, 2, 3] },
  { opType: 'Tile', domain: '', infer: inferTile, vjp: tileVjp, nonDifferentiable: [1] },
];

defineOps(tensorOps);
