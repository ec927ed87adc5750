import type { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInt, attrString, Dim, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { requireInput } from './shape-utils.js';

/**
 * Resize (ONNX Resize-13/18/19: F.interpolate and nn.Upsample as torch.onnx.export writes them), modes nearest and
 * linear. Both are linear maps applied axis by axis, Y = M_H X M_W^T on the last two axes, with M [out, in] the
 * interpolation matrix of one axis; so the gradient is dX = M_H^T dY M_W: two MatMuls with constant matrices
 * built here from the node's attributes. resizeMatrix follows ONNX Runtime's CPU kernel
 * (onnxruntime/core/providers/cpu/tensor/upsample*.{h,cc}) in float32 arithmetic, so its rounding of a source
 * coordinate to a pixel (nearest) and its two-tap weights (linear) are ORT's; test/ops/resize.test.ts compares
 * M X with ORT's Resize for every mode.
 */

export type ResizeMode = 'nearest' | 'linear';
const MODES: readonly string[] = ['nearest', 'linear'];
const COORDINATE_MODES: readonly string[] = ['half_pixel', 'pytorch_half_pixel', 'align_corners', 'asymmetric', 'half_pixel_symmetric'];
const NEAREST_MODES: readonly string[] = ['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'];

export interface ResizeAxis {
  mode: ResizeMode;
  coordinateMode: string;
  nearestMode: string;
  inSize: number;
  outSize: number;
  /** The scale ORT divides by: the scales input, or outSize / inSize in float32 when sizes are given. */
  scale: number;
}

const f = Math.fround;

const refuse = (node: Node, why: string): never => {
  throw new Error(`node '${node.name}' (Resize): ${why}`);
};

/** The source coordinate of output index i (ONNX Resize, coordinate_transformation_mode), in float32. */
function sourceCoordinate(i: number, a: ResizeAxis): number {
  const { inSize, outSize, scale } = a;
  switch (a.coordinateMode) {
    case 'asymmetric':
      return f(i / scale);
    case 'align_corners':
      return outSize === 1 ? 0 : f(f(i * (inSize - 1)) / (outSize - 1));
    case 'pytorch_half_pixel':
      return outSize > 1 ? f(f(f(i + 0.5) / scale) - 0.5) : 0;
    case 'half_pixel_symmetric': {
      const adjustment = f(outSize / f(scale * inSize));
      const offset = f(f(inSize / 2) * f(1 - adjustment));
      return f(offset + f(f(f(i + 0.5) / scale) - 0.5));
    }
    default:
      return f(f(f(i + 0.5) / scale) - 0.5);
  }
}

function nearestIndex(x: number, mode: string, inSize: number): number {
  let k: number;
  if (mode === 'floor') k = Math.floor(x);
  else if (mode === 'ceil') k = Math.ceil(x);
  else if (mode === 'round_prefer_ceil') k = Math.round(x);
  // round_prefer_floor: halves go down.
  else k = x === Math.floor(x) + 0.5 ? Math.floor(x) : Math.round(x);
  return Math.min(Math.max(k, 0), inSize - 1);
}

/** The [outSize, inSize] matrix of one axis: row i holds the weights output i takes from each input index. */
export function resizeMatrix(a: ResizeAxis): Float64Array {
  const m = new Float64Array(a.outSize * a.inSize);
  for (let i = 0; i < a.outSize; i++) {
    const x = sourceCoordinate(i, a);
    if (a.mode === 'nearest') {
      m[i * a.inSize + nearestIndex(x, a.nearestMode, a.inSize)] = 1;
      continue;
    }
    // ORT clamps the coordinate into the input, then weighs its two neighbours (both 1/2 at the last pixel).
    const c = Math.max(0, Math.min(x, a.inSize - 1));
    const x1 = Math.min(Math.floor(c), a.inSize - 1);
    const x2 = Math.min(x1 + 1, a.inSize - 1);
    const [w1, w2] = x1 === x2 ? [0.5, 0.5] : [f(x2 - c), f(c - x1)];
    m[i * a.inSize + x1] += w1;
    m[i * a.inSize + x2] += w2;
  }
  return m;
}

/** Output dims from the scales (floor(in * scale)) or sizes input, where known. */
function inferResize(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const { node } = ctx;
  checkAttributes(node);
  const rank = x.shape.length;
  const scales = node.inputs[2] ? ctx.constant(2)?.toNumbers() : undefined;
  const sizes = node.inputs[3] ? (ctx.shapeValue?.(3) ?? ctx.constant(3)?.toNumbers()) : undefined;
  let shape: Dim[];
  if (sizes && sizes.length > 0) {
    if (sizes.length !== rank) refuse(node, `sizes has ${sizes.length} values for an input of rank ${rank}`);
    shape = sizes;
  } else if (scales && scales.length > 0) {
    if (scales.length !== rank) refuse(node, `scales has ${scales.length} values for an input of rank ${rank}`);
    shape = x.shape.map((d, i) => (typeof d === 'number' ? Math.floor(d * f(scales[i])) : scales[i] === 1 ? d : `${node.name}_out${i}`));
  } else if (node.inputs[2] || node.inputs[3]) {
    refuse(node, 'scales or sizes must be known when the input shapes are (constants, or computed from shapes)');
  } else {
    refuse(node, 'needs a scales or sizes input');
  }
  return [{ dtype: x.dtype, shape: shape! }];
}

function checkAttributes(node: Node): void {
  const mode = attrString(node, 'mode', 'nearest');
  if (!MODES.includes(mode)) refuse(node, `mode '${mode}' has no gradient rule in qatkit; valid modes: ${MODES.join(', ')}`);
  const coordinateMode = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  if (!COORDINATE_MODES.includes(coordinateMode)) refuse(node, `coordinate_transformation_mode '${coordinateMode}' is not supported; valid: ${COORDINATE_MODES.join(', ')}`);
  const nearestMode = attrString(node, 'nearest_mode', 'round_prefer_floor');
  if (!NEAREST_MODES.includes(nearestMode)) refuse(node, `nearest_mode '${nearestMode}' is not valid; valid: ${NEAREST_MODES.join(', ')}`);
  if (attrInt(node, 'antialias', 0) !== 0) refuse(node, 'antialias=1 (Resize-18) is not supported; export with antialias=False');
  if (node.attrs.axes) refuse(node, 'the axes attribute (Resize-18) is not supported; give scales or sizes for every axis');
  if (attrString(node, 'keep_aspect_ratio_policy', 'stretch') !== 'stretch') refuse(node, "keep_aspect_ratio_policy must be 'stretch'");
}

/** The interpolated axes of a Resize node (every axis whose size changes), each with its matrix's parameters. */
export function resizeAxes(node: Node, inShape: Dim[], outShape: Dim[], scales: number[] | undefined): { axis: number; spec: ResizeAxis }[] {
  checkAttributes(node);
  const mode = attrString(node, 'mode', 'nearest') as ResizeMode;
  const coordinateMode = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  const nearestMode = attrString(node, 'nearest_mode', 'round_prefer_floor');
  const out: { axis: number; spec: ResizeAxis }[] = [];
  inShape.forEach((d, axis) => {
    const o = outShape[axis];
    const scale = scales && scales.length ? f(scales[axis]) : undefined;
    if (d === o && (scale === undefined || scale === 1)) return;
    if (typeof d !== 'number' || typeof o !== 'number') refuse(node, `axis ${axis} is resized but its size is not known (${d} -> ${o})`);
    out.push({ axis, spec: { mode, coordinateMode, nearestMode, inSize: d as number, outSize: o as number, scale: scale ?? f((o as number) / (d as number)) } });
  });
  const rank = inShape.length;
  if (out.some((a) => a.axis < rank - 2)) refuse(node, `only the last two axes may be resized (gradient rule); resized axes: ${out.map((a) => a.axis).join(', ')}`);
  return out;
}

/** A constant [rows, cols] matrix in `like`'s dtype. */
function matrixConstant(b: GraphBuilder, like: string, rows: number, cols: number, values: Float64Array): string {
  return b.constant(b.dtype(like) === DType.DOUBLE ? Tensor.double([rows, cols], values) : Tensor.float([rows, cols], values));
}

function resizeVjp(c: VjpContext) {
  const dy = c.dy(0);
  if (!dy) return [];
  const { b } = c;
  const x = c.input(0);
  const scales = c.node.inputs[2] ? b.constantValue(c.node.inputs[2])?.toNumbers() : undefined;
  const axes = resizeAxes(c.node, b.shape(x), b.shape(c.output(0)), scales);
  const rank = b.rank(x);
  let g = dy;
  for (const { axis, spec } of axes) {
    const m = resizeMatrix(spec);
    if (axis === rank - 1) {
      // [.., out] x M [out, in] -> [.., in]
      g = b.matmul(g, matrixConstant(b, g, spec.outSize, spec.inSize, m));
    } else {
      // M^T [in, out] x [.., out, W] -> [.., in, W]
      const t = new Float64Array(m.length);
      for (let i = 0; i < spec.outSize; i++) for (let j = 0; j < spec.inSize; j++) t[j * spec.outSize + i] = m[i * spec.inSize + j];
      g = b.matmul(matrixConstant(b, g, spec.inSize, spec.outSize, t), g);
    }
  }
  return [g];
}

export const resizeOps: OpDef[] = [{ opType: 'Resize', domain: '', infer: inferResize, vjp: resizeVjp, nonDifferentiable: [1, 2, 3] }];

defineOps(resizeOps);

