import type { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { Attr, attrInt, attrInts, Node, ValueType } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { expandLike } from './reduce.js';
import { requireInput } from './shape-utils.js';
import { averagePoolDivisorGrid, resolveWindow, transposeOutputPadding, Window, windowAttrs } from './window-geometry.js';

// Pooling ops (opset 17): MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool; ceil_mode as extra end pad.
// Gradients route dY back to the window positions that produced each output:
//   MaxPool:  to the arg-max of each window (mask of x == upsampled y when windows tile x, else Indices +
//             ScatterElements-add);
//   AveragePool: to every position of the window, divided by the window's count (ConvTranspose of dY
//             with a constant depthwise kernel);
//   global pools: broadcast back over the spatial axes.

function poolKernel(node: Node): number[] {
  const k = attrInts(node, 'kernel_shape', undefined);
  if (!k) throw new Error(`node '${node.name}' (${node.opType}): kernel_shape is required`);
  return k;
}

function inferPool(ctx: InferContext): ValueType[] {
  const { node } = ctx;
  const x = requireInput(ctx, 0);
  if (x.shape.length < 3) throw new Error(`node '${node.name}' (${node.opType}): X [${x.shape}] must have rank >= 3 ([N, C, D1, ...])`);
  const { outSpatial } = resolveWindow(node, x.shape.slice(2), poolKernel(node));
  const y = { dtype: x.dtype, shape: [x.shape[0], x.shape[1], ...outSpatial] };
  return node.outputs[1] ? [y, { dtype: DType.INT64, shape: y.shape }] : [y];
}

function inferGlobalPool(ctx: InferContext): ValueType[] {
  const x = requireInput(ctx, 0);
  if (x.shape.length < 3) throw new Error(`node '${ctx.node.name}' (${ctx.node.opType}): X [${x.shape}] must have rank >= 3 ([N, C, D1, ...])`);
  return [{ dtype: x.dtype, shape: [x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)] }];
}

function staticSpatial(b: GraphBuilder, v: string): number[] | undefined {
  const s = b.shape(v).slice(2);
  return s.every((d) => typeof d === 'number') ? (s as number[]) : undefined;
}

function requireStaticSpatial(b: GraphBuilder, v: string, node: Node): number[] {
  const s = staticSpatial(b, v);
  if (!s) throw new Error(`gradient of node '${node.name}' (${node.opType}) needs static spatial dims, got [${b.shape(v)}]`);
  return s;
}

function filled(dtype: DType, dims: number[], value: number): Tensor {
  const t = Tensor.zeros(dtype, dims);
  (t.data as Float32Array | Float64Array).fill(value);
  return t;
}

/** Whether the windows tile x exactly: kernel == stride, no dilation, no pads, sizes divisible by the stride. */
export function windowsTile(w: Window, spatial: number[]): boolean {
  return spatial.every(
    (d, i) => w.kernel[i] === w.strides[i] && w.dilations[i] === 1 && w.padsBegin[i] === 0 && w.padsEnd[i] === 0 && d % w.strides[i] === 0,
  );
}

/**
 * MaxPool gradient when windows tile x: dX = (x == up(y)) · up(dY), with up = Resize nearest (asymmetric,
 * floor), which DESIGN.md measured ~10x faster than MaxPool's Indices output (that leaves ORT's NCHWc path).
 * A window with tied maxima passes dY to every tied position; after ReLU ties only occur in all-zero windows,
 * whose gradient ReLU's own mask then zeroes. ORT has no float64 Resize, so float64 graphs use the Indices path.
 */
function maxPoolGradientByMask(b: GraphBuilder, x: string, y: string, dy: string, strides: number[]): string {
  const scales = b.constant([1, 1, ...strides], DType.FLOAT);
  const upsample = (v: string) =>
    b.op1('Resize', [v, '', scales], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }, { types: [{ dtype: b.dtype(v), shape: b.shape(x) }] });
  const mask = b.castLike(b.equal(x, upsample(y)), x);
  return b.mul(mask, upsample(dy));
}

/**
 * General MaxPool gradient: MaxPool's Indices output (flattened over N, C and spatial in ORT, pads not
 * counted) scatters dY, with ScatterElements reduction='add' so that overlapping windows that share an
 * arg-max accumulate, into zeros of x's flattened size.
 */
function maxPoolGradientByIndices(b: GraphBuilder, node: Node, x: string, dy: string): string {
  let indices = node.outputs[1];
  if (!indices || attrInt(node, 'storage_order', 0) !== 0) {
    const attrs: Record<string, Attr> = { ...node.attrs };
    delete attrs.storage_order;
    indices = b.op('MaxPool', [x], attrs, { outputs: 2 })[1];
  }
  const zeros = b.op1('ConstantOfShape', [b.shapeOf(x)], { value: Tensor.zeros(b.dtype(x), [1]) }, { types: [b.type(x)] });
  const flatZeros = b.reshape(zeros, [-1]);
  const scattered = b.op1('ScatterElements', [flatZeros, b.reshape(indices, [-1]), b.reshape(dy, [-1])], { axis: 0, reduction: 'add' });
  return b.reshapeLike(scattered, x);
}

function maxPoolVjp(c: VjpContext): (string | undefined)[] {
  const { b, node } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const spatial = staticSpatial(b, x);
  if (spatial && b.dtype(x) === DType.FLOAT) {
    const { window } = resolveWindow(node, spatial, poolKernel(node));
    if (windowsTile(window, spatial)) return [maxPoolGradientByMask(b, x, c.output(0), dy, window.strides)];
  }
  return [maxPoolGradientByIndices(b, node, x, dy)];
}

/**
 * AveragePool gradient: each output's dY spread uniformly over its window, as a depthwise ConvTranspose
 * (group = C) with a constant kernel. The divisor is the kernel size (count_include_pad=1, or no pads),
 * else the per-output count of non-pad positions, itself a Conv of ones that ORT folds to a constant.
 */
function averagePoolVjp(c: VjpContext): (string | undefined)[] {
  const { b, node } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const dtype = b.dtype(x);
  const spatial = requireStaticSpatial(b, x, node);
  const dySpatial = requireStaticSpatial(b, dy, node);
  const channels = b.shape(x)[1];
  if (typeof channels !== 'number') throw new Error(`gradient of node '${node.name}' (AveragePool) needs a static channel count, got [${b.shape(x)}]`);
  const { window } = resolveWindow(node, spatial, poolKernel(node));
  const kernelSize = window.kernel.reduce((p, q) => p * q, 1);
  const outputPadding = spatial.map((size, i) => transposeOutputPadding(window, i, dySpatial[i], size));
  const spread = (g: string, weight: number) =>
    b.op1('ConvTranspose', [g, b.constant(filled(dtype, [channels, 1, ...window.kernel], weight))], {
      ...windowAttrs(window),
      group: channels,
      kernel_shape: window.kernel,
      ...(outputPadding.some((p) => p !== 0) ? { output_padding: outputPadding } : {}),
    });
  const padded = [...window.padsBegin, ...window.padsEnd].some((p) => p !== 0);
  const includePad = attrInt(node, 'count_include_pad', 0) === 1;
  if (!padded || (includePad && !window.ceilExtension)) return [spread(dy, 1 / kernelSize)];
  if (window.dilations.some((d) => d !== 1)) throw new Error(`gradient of node '${node.name}' (AveragePool): dilations with pads or ceil_mode are not supported`);
  // The divisor of each output, a product over the axes: a constant [1, 1, ...out] the gradient divides by.
  const counts = averagePoolDivisorGrid(window, spatial, dySpatial, includePad);
  const divisor = b.constant(dtype === DType.DOUBLE ? Tensor.double([1, 1, ...dySpatial], counts) : Tensor.float([1, 1, ...dySpatial], counts));
  return [spread(b.div(dy, divisor), 1)];
}

function globalAveragePoolVjp(c: VjpContext): (string | undefined)[] {
  const { b, node } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const count = requireStaticSpatial(b, x, node).reduce((p, q) => p * q, 1);
  return [expandLike(c, b.mul(dy, b.scalarLike(1 / count, dy)), x)];
}

/** GlobalMaxPool gradient: dY to the positions equal to the channel's max (ties each get dY, as in MaxPool's mask path). */
function globalMaxPoolVjp(c: VjpContext): (string | undefined)[] {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  return [b.mul(b.castLike(b.equal(x, c.output(0)), x), dy)];
}

export const poolOps: OpDef[] = [
  { opType: 'MaxPool', domain: '', infer: inferPool, vjp: maxPoolVjp },
  { opType: 'AveragePool', domain: '', infer: inferPool, vjp: averagePoolVjp },
  { opType: 'GlobalAveragePool', domain: '', infer: inferGlobalPool, vjp: globalAveragePoolVjp },
  { opType: 'GlobalMaxPool', domain: '', infer: inferGlobalPool, vjp: globalMaxPoolVjp },
];

defineOps(poolOps);
