import type { GraphBuilder } from '../ir/builder.js';
import { attrFloat, attrInt, attrInts, Node, ValueType } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { batchNormGradientCoefficients, BN_EPSILON, BN_MOMENTUM, inverseStd, momentsOfUnscaled, refuseStatisticGradients, runningUpdate } from './norm.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { requireInput } from './shape-utils.js';
import { resolveWindow, Window, windowAttrs } from './window-geometry.js';

/**
 * ai.qatkit.ConvBatchNormTrain(X, W, scale, B, running_mean, running_var[, input_scale][, patches, mean_p, S]) ->
 *   (Y, batch_mean, batch_inv_std, new_running_mean, new_running_var[, windows])
 * = BatchNormTrain(Conv(X, W) [/ input_scale], scale, B, ...) for a one-group Conv without bias, computed
 * without writing the conv output z or reading it back. z is linear in the im2col patches p of X, so its batch
 * statistics follow from the patches' first two moments:
 *   mean(z_o) = W_o . mean(p),   E[z_o^2] = W_o S W_o^T,   S = E[p p^T]  (R x R, R = C_in * kernel size),
 * and batch norm is then a per-channel affine map folded into the conv: Y = Conv(X, W * G, O),
 * G = gamma * inv_std (/ c), O = B - G * mean(z). Backward, with dz = a' dY + k' z + o' (the BatchNormTrain rule,
 * norm.ts), the weight gradient needs only dY's patch products gdY = sum dY p^T, which the plain conv weight
 * gradient computes anyway: dW = a' gdY + M k' (W S) + M o' mean(p), and mean(dY z) = W . gdY / M.
 * The patches carry a last row of ones, so that mean(p) comes out of S's products and mean(dY) out of gdY's: batch
 * norm costs no full-size pass of its own, forward or backward. S costs 2 N L (R+1)^2 flops, which
 * is why the training step uses this op only for convs with few patch rows (first layers); X gets no gradient
 * (the fusing pass only applies it where X does not depend on a parameter).
 * The conv output is computed as one MatMul of [W * G | O] with the patches (the ones row adds O).
 *
 * With max_pool = 1 (stride-1 convs, even output size), Y is further max-pooled over 2x2 windows (stride 2):
 * the patches' columns are then in window order (the four positions of each window in four blocks), so the
 * pre-pool output comes out as [N, O, 4, L/4] (output 5, `windows`), the pool is a ReduceMax over its axis 2,
 * and the pool's gradient is a broadcast compare, with no upsampling (Resize) of Y or dY. The gradient goes to
 * every tied maximum of a window, as the training step's MaxPool gradient does (ops/pool.ts).
 * Attributes: kernel_shape, strides, dilations, pads (explicit), epsilon, momentum, max_pool.
 */

/** Whether the node max-pools its output over tiling 2x2 windows (attribute max_pool = 1). */
export function poolsOutput(node: Node): boolean {
  return attrInt(node, 'max_pool', 0) === 1;
}

/** Positions per pooling window (2x2). */
const WINDOW = 4;

function windowOf(node: Node, xType: ValueType, kernel: number[]): Window {
  return resolveWindow(node, xType.shape.slice(2), kernel).window;
}

function kernelOf(node: Node): number[] {
  const k = attrInts(node, 'kernel_shape', undefined);
  if (!k) throw new Error(`node '${node.name}' (ConvBatchNormTrain): kernel_shape is required`);
  return k;
}

function infer(ctx: InferContext): ValueType[] {
  const x = requireInput(ctx, 0);
  const w = requireInput(ctx, 1);
  const { outSpatial } = resolveWindow(ctx.node, x.shape.slice(2), kernelOf(ctx.node));
  const stat = { dtype: x.dtype, shape: [w.shape[0]] };
  if (!poolsOutput(ctx.node)) return [{ dtype: x.dtype, shape: [x.shape[0], w.shape[0], ...outSpatial] }, stat, stat, stat, stat];
  if (outSpatial.length !== 2 || outSpatial.some((d) => typeof d !== 'number' || d % 2 !== 0)) {
    throw new Error(`node '${ctx.node.name}' (ConvBatchNormTrain): max_pool needs an even 2-D output, got [${outSpatial}]`);
  }
  const [h, wd] = outSpatial as number[];
  const pooled = { dtype: x.dtype, shape: [x.shape[0], w.shape[0], h / 2, wd / 2] };
  const windows = { dtype: x.dtype, shape: [x.shape[0], w.shape[0], WINDOW, (h * wd) / WINDOW] };
  return [pooled, stat, stat, stat, stat, windows];
}

interface PatchMoments {
  /** Patches [N, R + 1, L]: R im2col rows, then a row of ones. */
  patches: string;
  /** mean(p) [R, 1] and S = E[p p^T] [R, R]. */
  meanP: string;
  second: string;
  /** M = N * L, the elements per statistic, as a scalar. */
  count: string;
  /** W as [O, R]. */
  w2: string;
  wShape: number[];
}

/**
 * The patch moments of X for W's window. Inputs 7-9 of the node (patches, mean(p), S), when the fusing pass
 * computed them once for the forward and the backward, are used as they are; otherwise they are emitted here.
 */
function patchMoments(b: GraphBuilder, node: Node, x: string, w: string): PatchMoments {
  const wShape = b.staticShape(w);
  const [, c, ...k] = wShape;
  const rows = c * k.reduce((p, q) => p * q, 1);
  const [given, givenMean, givenSecond] = [node.inputs[7], node.inputs[8], node.inputs[9]];
  const patches = given || emitPatches(b, node, x, wShape);
  const count = patchCount(b, patches, rows + 1, x);
  let [meanP, second] = [givenMean, givenSecond];
  if (!meanP || !second) {
    // E[p' p'^T] of the patches with the ones row: S in the top-left block, mean(p) in the last column.
    const extended = b.div(b.reduceSum(b.matmul(patches, b.transpose(patches, [0, 2, 1])), [0], false), count);
    meanP = sliceMatrix(b, extended, [0, rows], [rows, rows + 1]);
    second = sliceMatrix(b, extended, [0, rows], [0, rows]);
  }
  return { patches, meanP, second, count, w2: b.reshape(w, [wShape[0], rows]), wShape };
}

/** m[r0:r1, c0:c1] of a 2-D value. */
function sliceMatrix(b: GraphBuilder, m: string, [r0, r1]: number[], [c0, c1]: number[]): string {
  return b.op1('Slice', [m, b.ints([r0, c0]), b.ints([r1, c1]), b.ints([0, 1])]);
}

/**
 * im2col of X for W's window with a last row of ones: one Conv (one group, so that a row can come from the
 * bias) whose one-hot kernel for row c*K + j picks window offset j of channel c, and whose last kernel is zero
 * with bias 1. One group costs C times the grouped im2col's flops, which the fusing pass's row limit keeps small.
 * For max_pool, columns in window order: the Conv has stride 2 and (k+1)x(k+1) kernels, one output channel per
 * (row, window position), and one more pad at the end so that it yields the H/2 x W/2 windows.
 */
function emitPatches(b: GraphBuilder, node: Node, x: string, wShape: number[]): string {
  const [, channels, ...kernel] = wShape;
  const k = kernel.reduce((p, q) => p * q, 1);
  const rows = channels * k;
  const dtype = b.dtype(x);
  const window = windowOf(node, b.type(x), kernelOf(node));
  const pool = poolsOutput(node);
  if (pool && (kernel.length !== 2 || window.strides.some((s) => s !== 1) || window.dilations.some((d) => d !== 1))) {
    throw new Error(`node '${node.name}' (ConvBatchNormTrain): max_pool needs a 2-D conv with strides and dilations 1`);
  }
  const positions = pool ? WINDOW : 1;
  const span = pool ? kernel.map((d) => d + 1) : kernel;
  const eye = Tensor.zeros(dtype, [(rows + 1) * positions, channels, ...span]);
  const data = eye.data as Float32Array | Float64Array;
  const spanSize = span.reduce((p, q) => p * q, 1);
  for (let r = 0; r < rows; r++) {
    const [ch, j] = [Math.floor(r / k), r % k];
    const [kh, kw] = kernel.length === 2 ? [Math.floor(j / kernel[1]), j % kernel[1]] : [0, j];
    for (let t = 0; t < positions; t++) {
      // Output channel r * positions + t picks X at window position t = (dh, dw) plus kernel offset (kh, kw).
      const at = pool ? (Math.floor(t / 2) + kh) * span[1] + (t % 2) + kw : j;
      data[((r * positions + t) * channels + ch) * spanSize + at] = 1;
    }
  }
  const onesBias = Tensor.zeros(dtype, [(rows + 1) * positions]);
  (onesBias.data as Float32Array | Float64Array).fill(1, rows * positions);
  const attrs = pool
    ? { kernel_shape: span, strides: [2, 2], dilations: [1, 1], pads: [...window.padsBegin, ...window.padsEnd.map((p) => p + 1)] }
    : { ...windowAttrs(window), kernel_shape: window.kernel };
  const patches = b.op1('Conv', [x, b.constant(eye), b.constant(onesBias)], attrs);
  return b.reshape(patches, [0, rows + 1, -1]);
}

/** M = N * L, the elements per statistic, as a scalar (constant when the shapes are static). */
function patchCount(b: GraphBuilder, patches: string, rows: number, like: string): string {
  // rows: the patches' rows, ones row included.
  const dims = b.shape(patches);
  return typeof dims[0] === 'number' && typeof dims[2] === 'number'
    ? b.scalarLike(dims[0] * dims[2], like)
    : b.div(b.castLike(b.op1('Size', [patches]), like), b.scalarLike(rows, like));
}

/**
 * Emits X's patches [N, R, L], their mean [R, 1] and second moment S [R, R] for the ConvBatchNormTrain `node`
 * (inputs 0 and 1 set) and appends them as its inputs 7-9, so that its forward and backward share them.
 */
export function attachPatchMoments(b: GraphBuilder, node: Node): void {
  const [x, w] = node.inputs;
  const m = patchMoments(b, { ...node, inputs: node.inputs.slice(0, 7) }, x, w);
  while (node.inputs.length < 7) node.inputs.push('');
  node.inputs.push(m.patches, m.meanP, m.second);
}

/** Batch mean and biased variance of u = z / c per output channel ([O]), from the patch moments. */
function channelMoments(b: GraphBuilder, m: PatchMoments, c: string | undefined) {
  const meanZ = b.reshape(b.matmul(m.w2, m.meanP), [-1]);
  const meanSquare = b.reduceSum(b.mul(b.matmul(m.w2, m.second), m.w2), [1], false);
  const varZ = b.op1('Max', [b.sub(meanSquare, b.mul(meanZ, meanZ)), b.scalarLike(0, meanZ)]);
  const u = momentsOfUnscaled(b, meanZ, varZ, c);
  return { meanZ, meanU: u.mean, varU: u.variance };
}

function lower(node: Node, b: GraphBuilder): void {
  const [x, w, scale, bias, runningMean, runningVar, inputScale] = node.inputs;
  const [y, meanOut, invStdOut, newMeanOut, newVarOut] = node.outputs;
  const eps = attrFloat(node, 'epsilon', BN_EPSILON);
  const momentum = attrFloat(node, 'momentum', BN_MOMENTUM);
  const c = inputScale ? b.reshape(inputScale, [-1]) : undefined;
  const m = patchMoments(b, node, x, w);
  const { meanZ, meanU, varU } = channelMoments(b, m, c);
  const invStd = inverseStd(b, varU, eps);
  const gainU = b.mul(scale, invStd);
  const gain = c ? b.div(gainU, c) : gainU;
  const offset = b.sub(bias, b.mul(gain, meanZ));
  const [out] = b.staticShape(m.w2);
  const scaledW = b.mul(m.w2, b.reshape(gain, [out, 1]));
  const products = b.matmul(b.op1('Concat', [scaledW, b.reshape(offset, [out, 1])], { axis: 1 }), m.patches);
  if (poolsOutput(node)) {
    const windows = b.op1('Reshape', [products, b.ints([0, out, WINDOW, -1])], {}, { outputs: [node.outputs[5] || b.fresh('windows')] });
    b.op1('Reshape', [b.op1('ReduceMax', [windows], { axes: [2], keepdims: 0 }), b.ints([0, out, ...b.staticShape(y).slice(2)])], {}, { outputs: [y] });
  } else {
    b.op1('Reshape', [products, b.ints([0, out, ...b.staticShape(y).slice(2)])], {}, { outputs: [y] });
  }
  if (meanOut) b.op1('Identity', [meanU], {}, { outputs: [meanOut] });
  if (invStdOut) b.op1('Identity', [invStd], {}, { outputs: [invStdOut] });
  if (newMeanOut) runningUpdate(b, runningMean, meanU, momentum, newMeanOut);
  if (newVarOut) runningUpdate(b, runningVar, b.mul(varU, b.div(m.count, b.sub(m.count, b.scalarLike(1, m.count)))), momentum, newVarOut);
}

function vjp(c: VjpContext): (string | undefined)[] {
  const { b, node } = c;
  refuseStatisticGradients(c, [1, 2], 'batch_mean / batch_inv_std');
  refuseStatisticGradients(c, [5], 'windows, read by range observers');
  if (c.wants(0)) throw new Error(`node '${node.name}' (ConvBatchNormTrain): X takes no gradient (the op is only formed where X depends on no parameter)`);
  const dy = c.dy(0);
  if (!dy) return [];
  const [x, w, scale] = [c.input(0), c.input(1), c.input(2)];
  const eps = attrFloat(node, 'epsilon', BN_EPSILON);
  const unscale = node.inputs[6] ? b.reshape(c.input(6), [-1]) : undefined;
  const m = patchMoments(b, node, x, w);
  let meanU: string;
  let invStd: string;
  if (c.output(1) && c.output(2)) {
    [meanU, invStd] = [c.output(1), c.output(2)];
  } else {
    const moments = channelMoments(b, m, unscale);
    meanU = moments.meanU;
    invStd = inverseStd(b, moments.varU, eps);
  }
  const out = m.wShape[0];
  const rows = m.wShape.slice(1).reduce((p, q) => p * q, 1);
  // sum dY p'^T over the batch: gdY in the first R columns, sum(dY) per channel in the last (the ones row).
  const products = b.reduceSum(b.matmul(preActivationGradient(c, dy, out), b.transpose(m.patches, [0, 2, 1])), [0], false);
  const gdy = sliceMatrix(b, products, [0, out], [0, rows]);
  const meanDy = b.div(b.reshape(sliceMatrix(b, products, [0, out], [rows, rows + 1]), [-1]), m.count);
  const meanDyZ = b.div(b.reduceSum(b.mul(m.w2, gdy), [1], false), m.count);
  const coef = batchNormGradientCoefficients(b, { meanDy, meanDyX: meanDyZ, mean: meanU, invStd, gamma: scale, unscale });
  const column = (v: string) => b.reshape(v, [out, 1]);
  let dw: string | undefined;
  if (c.wants(1)) {
    // dz = dyGain dY + zGain z + zOffset per channel, so dW = dyGain gdY + M zGain (W S) + M zOffset mean(p).
    const viaZ = b.mul(b.mul(column(coef.xGain()), m.count), b.matmul(m.w2, m.second));
    const viaOffset = b.mul(b.mul(column(coef.xOffset()), m.count), b.transpose(m.meanP, [1, 0]));
    dw = b.reshape(b.add(b.add(b.mul(column(coef.dyGain()), gdy), viaZ), viaOffset), m.wShape);
  }
  const dscale = c.wants(2) ? b.mul(coef.meanDyXhat, m.count) : undefined;
  const dbias = c.wants(3) ? b.mul(meanDy, m.count) : undefined;
  const dunscale = unscale && c.wants(6) ? b.reshapeLike(coef.unscaleGradient(eps, m.count), c.input(6)) : undefined;
  return [undefined, dw, dscale, dbias, undefined, undefined, dunscale];
}

/**
 * ai.qatkit.ConvAffine(X, W, gain, offset[, patches]) -> (Y[, windows]): gain * Conv(X, W) + offset per output
 * channel ([O] each), for a one-group Conv without bias, max-pooled over 2x2 windows with max_pool = 1 (as
 * ConvBatchNormTrain: patches in window order, output 1 the pre-pool windows). It is a conv followed by batch norm
 * with frozen statistics (QAT after the BN-freeze step: gain = gamma / (c sigma), offset = beta - gamma mean / sigma,
 * computed outside the op), as one MatMul of [W * gain | offset] with the im2col patches and their ones row; its
 * gradient needs only dY's patch products sum dY p'^T: dW = gain * gdY, dgain = sum(gdY * W) per channel,
 * doffset = sum(dY). X gets no gradient (formed only where X depends on no parameter).
 * Attributes: kernel_shape, strides, dilations, pads (explicit), max_pool.
 */
function inferConvAffine(ctx: InferContext): ValueType[] {
  const [y, , , , , windows] = infer(ctx);
  return poolsOutput(ctx.node) ? [y, windows] : [y];
}

function convAffineProducts(b: GraphBuilder, node: Node) {
  const [x, w, gain, offset, given] = node.inputs;
  const wShape = b.staticShape(w);
  const [out, ...rest] = wShape;
  const rows = rest.reduce((p, q) => p * q, 1);
  const patches = given || emitPatches(b, node, x, wShape);
  return { patches, w2: b.reshape(w, [out, rows]), wShape, out, rows, gain, offset };
}

function lowerConvAffine(node: Node, b: GraphBuilder): void {
  const { patches, w2, out, gain, offset } = convAffineProducts(b, node);
  const [y, windowsOut] = node.outputs;
  const scaledW = b.mul(w2, b.reshape(gain, [out, 1]));
  const products = b.matmul(b.op1('Concat', [scaledW, b.reshape(offset, [out, 1])], { axis: 1 }), patches);
  if (poolsOutput(node)) {
    const windows = b.op1('Reshape', [products, b.ints([0, out, WINDOW, -1])], {}, { outputs: [windowsOut || b.fresh('windows')] });
    b.op1('Reshape', [b.op1('ReduceMax', [windows], { axes: [2], keepdims: 0 }), b.ints([0, out, ...b.staticShape(y).slice(2)])], {}, { outputs: [y] });
  } else {
    b.op1('Reshape', [products, b.ints([0, out, ...b.staticShape(y).slice(2)])], {}, { outputs: [y] });
  }
}

function convAffineVjp(c: VjpContext): (string | undefined)[] {
  const { b, node } = c;
  refuseStatisticGradients(c, [1], 'windows, read by range observers');
  if (c.wants(0)) throw new Error(`node '${node.name}' (ConvAffine): X takes no gradient (the op is only formed where X depends on no parameter)`);
  const dy = c.dy(0);
  if (!dy) return [];
  const { patches, w2, wShape, out, rows, gain } = convAffineProducts(b, node);
  // sum dY p'^T over the batch: the gradient of [W * gain | offset], sum(dY) per channel in the last column.
  const products = b.reduceSum(b.matmul(preActivationGradient(c, dy, out, 1), b.transpose(patches, [0, 2, 1])), [0], false);
  const gdy = sliceMatrix(b, products, [0, out], [0, rows]);
  const dw = c.wants(1) ? b.reshape(b.mul(gdy, b.reshape(gain, [out, 1])), wShape) : undefined;
  const dgain = c.wants(2) ? b.reduceSum(b.mul(gdy, w2), [1], false) : undefined;
  const doffset = c.wants(3) ? b.reshape(sliceMatrix(b, products, [0, out], [rows, rows + 1]), [-1]) : undefined;
  return [undefined, dw, dgain, doffset];
}

/** Emits X's patches for the ConvAffine `node` (inputs 0-3 set) and appends them as its input 4. */
export function attachPatches(b: GraphBuilder, node: Node): void {
  node.inputs[4] = emitPatches(b, node, node.inputs[0], b.staticShape(node.inputs[1]));
}

export const convBatchNormOps: OpDef[] = [
  { opType: 'ConvBatchNormTrain', domain: 'ai.qatkit', infer, nonDifferentiable: [4, 5, 7, 8, 9], vjp, lower },
  { opType: 'ConvAffine', domain: 'ai.qatkit', infer: inferConvAffine, nonDifferentiable: [4], vjp: convAffineVjp, lower: lowerConvAffine },
];

defineOps(convBatchNormOps);

/**
 * dY as [N, O, L] in the patches' column order. With max_pool, the pool's gradient: each window's dY goes to the
 * positions equal to the window's max, by a compare broadcast over the window axis of `windows` (output 5).
 */
function preActivationGradient(c: VjpContext, dy: string, out: number, windowsOutput = 5): string {
  const { b, node } = c;
  if (!poolsOutput(node)) return b.reshape(dy, [0, out, -1]);
  if (!node.outputs[windowsOutput]) throw new Error(`node '${node.name}' (${node.opType}): max_pool needs output ${windowsOutput} (windows) for its gradient`);
  const windows = c.output(windowsOutput);
  const atMax = b.castLike(b.op1('Equal', [windows, b.reshape(c.output(0), [0, out, 1, -1])]), windows);
  return b.reshape(b.mul(atMax, b.reshape(dy, [0, out, 1, -1])), [0, out, -1]);
}
