import { GraphBuilder } from '../ir/builder.js';
import type { Dim } from '../ir/graph.js';
import { attrFloat, attrInt, Node } from '../ir/graph.js';
import { defineOps, OpDef, VjpContext } from '../ops/registry.js';
import { normalizeAxis, requireInput } from '../ops/shape-utils.js';

export const QATKIT = 'ai.qatkit';

/**
 * ai.qatkit.FakeQuantize(x, scale, zero_point) -> y
 *   q = clip(round(x / s - o) + round(z), qmin, qmax);  y = (q - round(z) + o) * s
 * with round half to even (ONNX Round), as ONNX QuantizeLinear followed by DequantizeLinear computes (o = 0), so
 * the exported QDQ model reproduces the simulation exactly.
 * Attributes: qmin, qmax; axis (per-channel, absent = per-tensor); group_size (per-group along axis);
 * learn_scale (LSQ, Esser et al. 2020), learn_zero_point (LSQ+, Bhalgat et al. 2020), grad_scale (LSQ's g);
 * level_offset o (default 0; 1/2 for ParetoQ's stretched elastic quantizer, whose levels sit half a step off the
 * integers: spec.ts levelOffset).
 * Scale and zero point get gradients only when learned; otherwise they come from observers and are constants
 * to the backward pass (PyTorch's FakeQuantize treats them as buffers the same way).
 */
interface Layout {
  /** x reshaped so that the parameters broadcast (per-group splits the axis into [groups, size]). */
  xShape: Dim[] | undefined;
  /** Broadcast shape of scale / zero point against (reshaped) x. */
  paramShape: number[];
}

function layout(node: Node, xShape: Dim[], paramDims: number[]): Layout {
  const rank = xShape.length;
  if (!node.attrs.axis) {
    if (paramDims.reduce((a, b) => a * b, 1) !== 1) throw new Error(`node '${node.name}' (FakeQuantize): per-tensor scale must have one element, got [${paramDims}]`);
    return { xShape: undefined, paramShape: [] };
  }
  const axis = normalizeAxis(attrInt(node, 'axis', 0), rank, node);
  const dim = xShape[axis];
  const groupSize = attrInt(node, 'group_size', 0);
  if (groupSize > 0) {
    if (typeof dim !== 'number' || dim % groupSize !== 0) {
      throw new Error(`node '${node.name}' (FakeQuantize): axis ${axis} of size ${dim} is not divisible by group_size ${groupSize}`);
    }
    const groups = dim / groupSize;
    const xs = [...xShape.slice(0, axis), groups, groupSize, ...xShape.slice(axis + 1)];
    // One scale per group and per index of every other axis; stored as x's shape with the grouped axis
    // divided by group_size (e.g. [N, K/g] for a Gemm weight [N, K] grouped along K, [K/g, N] for MatMul [K, N]).
    const ps = xs.map((d, i) => (i === axis + 1 ? 1 : (d as number)));
    return { xShape: xs, paramShape: ps };
  }
  const paramShape = xShape.map((_, i) => (i === axis ? (dim as number) : 1));
  return { xShape: undefined, paramShape };
}

interface Emitted {
  xr: string;
  s: string;
  scaled: string;
  rounded: string;
  /** qmin - round(z) and qmax - round(z): the clamp range of round(x / s) (scalars or parameter-shaped). */
  lo: string;
  hi: string;
  /** q - round(z) = clip(round(x / s - o), lo, hi). */
  clipped: string;
  /** clipped + o: the level in steps, y = level * s. */
  level: string;
}

function isZeroConstant(b: GraphBuilder, v: string): boolean {
  const t = b.constantValue(v);
  return t !== undefined && t.toNumbers().every((n) => n === 0);
}

/**
 * Emits the shared pieces of forward and backward. The zero point is folded into the clamp range:
 * clip(round(x/s) + z, qmin, qmax) - z = clip(round(x/s), qmin - z, qmax - z) exactly, since both sides hold
 * integers (exact in float below 2^24; beyond, both clamp to the same bound). That saves the Add and Sub of
 * full tensors; a known-zero zero point (symmetric weights) needs no range arithmetic at all. The backward
 * emits the same nodes, which ORT's common-subexpression elimination merges with the forward's.
 */
function emitCore(b: GraphBuilder, node: Node, x: string, scale: string, zeroPoint: string): Emitted & { layout: Layout } {
  const lay = layout(node, b.shape(x), b.staticShape(scale));
  const qmin = attrInt(node, 'qmin', -128);
  const qmax = attrInt(node, 'qmax', 127);
  const xr = lay.xShape ? b.reshape(x, lay.xShape.map((d) => (typeof d === 'number' ? d : -1))) : x;
  const s = lay.paramShape.length ? b.reshape(scale, lay.paramShape) : scale;
  const offset = attrFloat(node, 'level_offset', 0);
  // SEQ rounds x / s - o; the LSQ gradient below reads scaled = x / s - o too, since (q + o) - x / s = q - scaled.
  const scaled = offset === 0 ? b.div(xr, s) : b.sub(b.div(xr, s), b.scalarLike(offset, xr));
  const rounded = b.op1('Round', [scaled]);
  let lo: string;
  let hi: string;
  let clipped: string;
  if (isZeroConstant(b, zeroPoint)) {
    [lo, hi] = [b.scalarLike(qmin, rounded), b.scalarLike(qmax, rounded)];
    clipped = b.op1('Clip', [rounded, lo, hi]);
  } else {
    // Per-tensor: scalar bounds for Clip (ONNX Clip takes scalar min/max); per-channel/group: Max/Min broadcast.
    const sameShape = b.staticShape(zeroPoint).join() === lay.paramShape.join();
    const z = b.op1('Round', [sameShape ? zeroPoint : b.reshape(zeroPoint, lay.paramShape)]);
    [lo, hi] = [b.sub(b.scalarLike(qmin, z), z), b.sub(b.scalarLike(qmax, z), z)];
    clipped = lay.paramShape.length ? b.op1('Max', [b.op1('Min', [rounded, hi]), lo]) : b.op1('Clip', [rounded, lo, hi]);
  }
  const level = offset === 0 ? clipped : b.add(clipped, b.scalarLike(offset, clipped));
  return { layout: lay, xr, s, scaled, rounded, lo, hi, clipped, level };
}

function restore(b: GraphBuilder, value: string, x: string, lay: Layout, output?: string): string {
  if (!lay.xShape) return output ? b.op1('Identity', [value], {}, { outputs: [output] }) : value;
  return output
    ? b.op1('Reshape', [value, b.shapeOf(x)], {}, { outputs: [output], types: [b.type(x)] })
    : b.reshapeLike(value, x);
}

function fakeQuantizeVjp(c: VjpContext): (string | undefined)[] {
  const { b, node } = c;
  const dy = c.dy(0)!;
  const [x, scale, zeroPoint] = [c.input(0), c.input(1), c.input(2)];
  const e = emitCore(b, node, x, scale, zeroPoint);
  const dyr = e.layout.xShape ? b.reshapeLike(dy, e.xr) : dy;
  // Inside [qmin, qmax] exactly where clamping left round(x/s) unchanged (one Equal on the forward's values).
  // The mask multiplies dy: on ORT 1.30 CPU, Where with a broadcast scalar costs ~2x Cast + Mul (profiled).
  const inside = b.op1('Equal', [e.clipped, e.rounded]);
  const grads: (string | undefined)[] = [undefined, undefined, undefined];
  if (c.wants(0)) grads[0] = restore(b, b.mul(dyr, b.castLike(inside, dyr)), x, e.layout);
  const learnScale = attrInt(node, 'learn_scale', 0) === 1;
  const learnZero = attrInt(node, 'learn_zero_point', 0) === 1;
  const toParam = (g: string, param: string) => b.reshapeLike(b.unbroadcast(g, e.layout.paramShape.length ? e.layout.paramShape : []), param);
  if (learnScale && c.wants(1)) {
    // LSQ: dy/ds = round(x/s) - x/s inside the range, (qmin - z) below, (qmax - z) above; times g. With a level
    // offset o the level is (q + o): (q + o) - x/s = q - (x/s - o) inside, and (qmin - z + o) or (qmax - z + o) outside.
    const below = b.less(e.rounded, e.lo);
    const offset = attrFloat(node, 'level_offset', 0);
    const [lo, hi] = offset === 0 ? [e.lo, e.hi] : [b.add(e.lo, b.scalarLike(offset, e.lo)), b.add(e.hi, b.scalarLike(offset, e.hi))];
    const local = b.where(inside, b.sub(e.rounded, e.scaled), b.where(below, lo, hi));
    const g = b.mul(b.mul(dyr, local), b.scalarLike(attrFloat(node, 'grad_scale', 1), dy));
    grads[1] = toParam(g, scale);
  }
  if (learnZero && c.wants(2)) {
    // LSQ+: y = s (q - z) is flat in z inside the range; clipped outputs move by -s per unit of z.
    const g = b.mul(b.mul(dyr, b.castLike(b.op1('Not', [inside]), dy)), b.neg(e.s));
    grads[2] = toParam(g, zeroPoint);
  }
  return grads;
}

const fakeQuantize: OpDef = {
  opType: 'FakeQuantize',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0)],
  vjp: fakeQuantizeVjp,
  lower: (node, b) => {
    const [x, scale, zeroPoint] = node.inputs;
    const e = emitCore(b, node, x, scale, zeroPoint);
    restore(b, b.mul(e.level, e.s), x, e.layout, node.outputs[0]);
  },
};

defineOps([fakeQuantize]);
