import type { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrFloat, attrInt, Node, Shape } from '../ir/graph.js';
import { defineOps, InferContext, OpDef, VjpContext } from './registry.js';
import { normalizeAxis, requireInput } from './shape-utils.js';

// Normalization ops: ONNX BatchNormalization (inference form), our training-mode BatchNormTrain,
// LayerNormalization (opset 17) and InstanceNormalization. Backward formulas: Ioffe & Szegedy 2015, section 3; with
// x_hat = (x - mean) * inv_std over M elements per statistic,
//   dbeta = sum(dy), dgamma = sum(dy * x_hat),
//   dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)).
// Means are taken with ReduceMean so no rule needs M when the batch dim is symbolic.

export const BN_EPSILON = 1e-5;
export const BN_MOMENTUM = 0.9;

/** Statistics axes of batch norm: every axis except the channel axis 1. */
function batchAxes(rank: number, node: Node): number[] {
  if (rank < 2) throw new Error(`node '${node.name}' (${node.opType}): X must have rank >= 2 ([N,C,...]), got rank ${rank}`);
  return [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
}

/** Reshapes a per-channel [C] vector to [1,C,1,...] so it broadcasts against X along axis 1. */
function perChannel(b: GraphBuilder, v: string, rank: number): string {
  return b.reshape(v, [1, -1, ...Array(rank - 2).fill(1)]);
}

/** A [C] vector from a [1,C,1,...] statistic, with an optional fixed output name. */
function toChannelVector(b: GraphBuilder, v: string, name?: string): string {
  return b.op1('Reshape', [v, b.ints([-1])], {}, name ? { outputs: [name] } : {});
}

/** Elements per statistic (M) as a scalar of x's dtype: a constant, or Size(x)/Size(stat) at run time. */
function elementsPerStatistic(b: GraphBuilder, x: string, stat: string, axes: number[]): string {
  const dims = axes.map((a) => b.shape(x)[a]);
  if (dims.every((d) => typeof d === 'number')) return b.scalarLike((dims as number[]).reduce((p, q) => p * q, 1), x);
  return b.div(b.castLike(b.op1('Size', [x]), x), b.castLike(b.op1('Size', [stat]), x));
}

/** Biased mean and 1/sqrt(var + eps) over `axes`, kept as broadcastable [1,C,1,...]-style tensors. */
function moments(b: GraphBuilder, x: string, axes: number[], epsilon: number) {
  const mean = b.reduceMean(x, axes, true);
  const centered = b.sub(x, mean);
  const variance = b.reduceMean(b.mul(centered, centered), axes, true);
  const invStd = inverseStd(b, variance, epsilon);
  return { mean, centered, variance, invStd };
}

/**
 * Gradient of y = x_hat * gamma + beta through the normalisation, given dxhat = dy * gamma:
 * dx = inv_std * (dxhat - mean(dxhat) - x_hat * mean(dxhat * x_hat)) (means over the statistic's axes).
 */
function normalizedInputGradient(b: GraphBuilder, dxhat: string, xhat: string, invStd: string, axes: number[]): string {
  const meanD = b.reduceMean(dxhat, axes, true);
  const meanDX = b.reduceMean(b.mul(dxhat, xhat), axes, true);
  return b.mul(invStd, b.sub(b.sub(dxhat, meanD), b.mul(xhat, meanDX)));
}

/** Refuses gradients arriving at saved statistics (the rules treat them as constants). */
export function refuseStatisticGradients(c: VjpContext, outputs: number[], what: string): void {
  for (const i of outputs) {
    if (c.dy(i)) {
      throw new Error(
        `node '${c.node.name}' (${c.node.opType}): output ${i} (${what}) lies on the path to the loss, but the rule ` +
          `gives no gradient through the saved statistics; use the op's Y output only`,
      );
    }
  }
}

function inferBatchNormalization(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  if (attrInt(ctx.node, 'training_mode', 0) !== 0) {
    throw new Error(
      `node '${ctx.node.name}' (BatchNormalization): training_mode=1 is not supported; use toTrainingBatchNorm ` +
        `(ai.qatkit BatchNormTrain) for batch statistics, or training_mode=0 for inference`,
    );
  }
  batchAxes(x.shape.length, ctx.node);
  return [x];
}

function inferBatchNormTrain(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  batchAxes(x.shape.length, ctx.node);
  const stat = { dtype: x.dtype, shape: [x.shape[1]] as Shape };
  return [x, stat, stat, stat, stat];
}

/** VJP of inference-form BatchNormalization: an affine map per channel with fixed mean and variance. */
function batchNormalizationVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const rank = b.rank(x);
  const axes = batchAxes(rank, c.node);
  const eps = attrFloat(c.node, 'epsilon', BN_EPSILON);
  const invStd = perChannel(b, inverseStd(b, c.input(4), eps), rank);
  const dx = c.wants(0) ? b.mul(dy, b.mul(perChannel(b, c.input(1), rank), invStd)) : undefined;
  const dscale = c.wants(1)
    ? b.reduceSum(b.mul(dy, b.mul(b.sub(x, perChannel(b, c.input(3), rank)), invStd)), axes, false)
    : undefined;
  const dbias = c.wants(2) ? b.reduceSum(dy, axes, false) : undefined;
  return [dx, dscale, dbias];
}

/**
 * Lowers BatchNormTrain to standard ops. Normalisation uses the biased batch variance; the running variance
 * is updated with the unbiased one (times M/(M-1)), as PyTorch's BatchNorm does. Momentum follows ONNX:
 * new_running = momentum * running + (1 - momentum) * batch.
 * Full-size work is kept to a few passes over X: ReduceMean of X and of X*X (var = E[x^2] - mean^2, clamped
 * at 0), and ONNX BatchNormalization in inference form, fed the batch
 * statistics, writes Y in one pass (in ORT's profile of the LeNet step ~4x less time than the Sub, Mul, Mul, Add it replaces).
 * With the optional input_scale c, the op normalises u = X / c (BN folding's "unscale", Jacob et al. 2018)
 * without materialising u: its statistics are X's divided by c and c^2, and Y = (X - mean_X) * gamma *
 * inv_std_u / c + beta is still one pass.
 */
function lowerBatchNormTrain(node: Node, b: GraphBuilder): void {
  const [x, scale, bias, runningMean, runningVar, inputScale] = node.inputs;
  const [y, meanOut, invStdOut, newMeanOut, newVarOut] = node.outputs;
  const rank = b.rank(x);
  const axes = batchAxes(rank, node);
  const eps = attrFloat(node, 'epsilon', BN_EPSILON);
  const momentum = attrFloat(node, 'momentum', BN_MOMENTUM);
  const moments = batchMoments(b, x, axes);
  const c = inputScale ? perChannel(b, inputScale, rank) : undefined;
  const { mean, variance } = momentsOfUnscaled(b, moments.mean, moments.variance, c);
  const batchMean = toChannelVector(b, mean, meanOut || undefined);
  const batchVar = toChannelVector(b, variance);
  const invStd = c || invStdOut ? inverseStd(b, variance, eps) : undefined;
  if (c) {
    const gain = b.div(b.mul(perChannel(b, scale, rank), invStd!), c);
    channelAffine(b, x, gain, b.sub(perChannel(b, bias, rank), b.mul(gain, moments.mean)), y);
  } else {
    b.op1('BatchNormalization', [x, scale, bias, batchMean, batchVar], { epsilon: eps }, { outputs: [y] });
  }
  if (invStdOut) toChannelVector(b, invStd!, invStdOut);
  if (newMeanOut) runningUpdate(b, runningMean, batchMean, momentum, newMeanOut);
  if (newVarOut) runningUpdate(b, runningVar, b.mul(batchVar, besselFactor(b, node, x, moments.mean, axes)), momentum, newVarOut);
}

/** ONNX's running-statistic update: new_running = momentum * running + (1 - momentum) * batch, named `output`. */
export function runningUpdate(b: GraphBuilder, running: string, batch: string, momentum: number, output: string): string {
  const blended = [b.mul(running, b.scalarLike(momentum, running)), b.mul(batch, b.scalarLike(1 - momentum, running))];
  return b.op1('Add', blended, {}, { outputs: [output] });
}

/** 1 / sqrt(variance + eps). */
export function inverseStd(b: GraphBuilder, variance: string, eps: number): string {
  return b.reciprocal(b.sqrt(b.add(variance, b.scalarLike(eps, variance))));
}

/** Mean and variance of u = X / c from X's (c per channel; X's own when there is no c). */
export function momentsOfUnscaled(b: GraphBuilder, mean: string, variance: string, c: string | undefined) {
  return c ? { mean: b.div(mean, c), variance: b.div(variance, b.mul(c, c)) } : { mean, variance };
}

/**
 * Batch mean and biased variance ([1,C,1,...]) as E[x] and E[x*x] - mean^2. E[x*x] is a Mul and a ReduceMean:
 * ORT's ReduceSumSquare over the batch and spatial axes took ~3x as long for LeNet's [128,64,14,14]
 * (0.63-0.81 ms against 0.24-0.30 ms, bench/out micro-benchmark, 2026-11-30, machine B of docs/benchmarks.md), though it writes nothing.
 */
function batchMoments(b: GraphBuilder, x: string, axes: number[]) {
  const mean = b.reduceMean(x, axes, true);
  const meanSquare = b.reduceMean(b.mul(x, x), axes, true);
  const variance = b.op1('Max', [b.sub(meanSquare, b.mul(mean, mean)), b.scalarLike(0, x)]);
  return { mean, variance };
}

/** M / (M - 1), Bessel's correction turning the biased batch variance into the unbiased one. */
function besselFactor(b: GraphBuilder, node: Node, x: string, stat: string, axes: number[]): string {
  const m = elementsPerStatistic(b, x, stat, axes);
  const known = b.constantValue(m)?.toNumbers()[0];
  if (known === undefined) return b.div(m, b.sub(m, b.scalarLike(1, x)));
  if (known <= 1) {
    throw new Error(`node '${node.name}' (BatchNormTrain): expected more than 1 value per channel in training, got M=${known} for X of shape [${b.shape(x)}]`);
  }
  return b.scalarLike(known / (known - 1), x);
}

/**
 * VJP of BatchNormTrain from its saved batch mean and 1/std. With a = gamma * inv_std, s1 = mean(dy) and
 * s2 = mean(dy * x), the input gradient is affine per channel in dy and x:
 *   dx = a * (dy - s1 - x_hat * mean(dy * x_hat)),  mean(dy * x_hat) = inv_std * (s2 - mean * s1)
 *      = a * dy + k * x + o,  k = -a * inv_std * mean(dy * x_hat),  o = -a * s1 - k * mean,
 * so x_hat is never materialised: one Mul and two reads for the statistics, then two per-channel affine
 * passes (BatchNormalization with zero mean and unit variance) and one Add.
 * With input_scale c the rule holds for u = X / c, so dX = du / c, and
 *   dc = -sum(du * u) / c = -(M / c) * gamma * eps * inv_std^2 * mean(dy * x_hat)
 * (closed form: Y depends on c only through epsilon, since BN(X / c) = sign(c) BN_{eps c^2}(X)).
 */
function batchNormTrainVjp(c: VjpContext) {
  const { b } = c;
  refuseStatisticGradients(c, [1, 2], 'batch_mean / batch_inv_std');
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const rank = b.rank(x);
  const axes = batchAxes(rank, c.node);
  const eps = attrFloat(c.node, 'epsilon', BN_EPSILON);
  const unscale = c.node.inputs[5] ? perChannel(b, c.input(5), rank) : undefined;
  let mean: string;
  let invStd: string;
  if (c.output(1) && c.output(2)) {
    mean = perChannel(b, c.output(1), rank);
    invStd = perChannel(b, c.output(2), rank);
  } else {
    const moments = batchMoments(b, x, axes);
    let variance: string;
    ({ mean, variance } = momentsOfUnscaled(b, moments.mean, moments.variance, unscale));
    invStd = inverseStd(b, variance, eps);
  }
  const meanDy = b.reduceMean(dy, axes, true);
  const coef = batchNormGradientCoefficients(b, { meanDy, meanDyX: b.reduceMean(b.mul(dy, x), axes, true), mean, invStd, gamma: perChannel(b, c.input(1), rank), unscale });
  const dx = c.wants(0) ? b.add(channelAffine(b, dy, coef.dyGain()), channelAffine(b, x, coef.xGain(), coef.xOffset())) : undefined;
  const m = c.wants(1) || c.wants(2) || c.wants(5) ? elementsPerStatistic(b, x, meanDy, axes) : '';
  const dscale = c.wants(1) ? toChannelVector(b, b.mul(coef.meanDyXhat, m)) : undefined;
  const dbias = c.wants(2) ? toChannelVector(b, b.mul(meanDy, m)) : undefined;
  const dunscale = unscale && c.wants(5) ? b.reshapeLike(coef.unscaleGradient(eps, m), c.input(5)) : undefined;
  return [dx, dscale, dbias, undefined, undefined, dunscale];
}

/** Batch statistics a BatchNormTrain-style gradient starts from (any broadcastable per-channel shape). */
export interface BatchNormGradientStats {
  meanDy: string;
  /** mean(dY * X) over the statistic's axes. */
  meanDyX: string;
  /** Batch mean and 1/std of the normalised value u = X (/ unscale). */
  mean: string;
  invStd: string;
  gamma: string;
  unscale?: string;
}

/**
 * The per-channel coefficients of the batch-norm input gradient, dX = dyGain dY + xGain X + xOffset, and of
 * the input_scale gradient (see batchNormTrainVjp), shared by BatchNormTrain and ConvBatchNormTrain; each is
 * emitted only when asked for.
 */
export function batchNormGradientCoefficients(b: GraphBuilder, s: BatchNormGradientStats) {
  const meanDyU = s.unscale ? b.div(s.meanDyX, s.unscale) : s.meanDyX;
  const meanDyXhat = b.mul(s.invStd, b.sub(meanDyU, b.mul(s.mean, s.meanDy)));
  let affine: { a: string; k: string; offset: string } | undefined;
  const terms = () => {
    if (!affine) {
      const a = b.mul(s.gamma, s.invStd);
      const k = b.neg(b.mul(b.mul(a, s.invStd), meanDyXhat));
      affine = { a, k, offset: b.sub(b.neg(b.mul(a, s.meanDy)), b.mul(k, s.mean)) };
    }
    return affine;
  };
  const c = s.unscale;
  return {
    meanDyXhat,
    // In terms of X = c u: dX = du / c = (a/c) dY + (k/c^2) X + offset/c.
    dyGain: () => (c ? b.div(terms().a, c) : terms().a),
    xGain: () => (c ? b.div(terms().k, b.mul(c, c)) : terms().k),
    xOffset: () => (c ? b.div(terms().offset, c) : terms().offset),
    /** dL/dc = -(M / c) * gamma * eps * inv_std^2 * mean(dY * x_hat), M the elements per statistic. */
    unscaleGradient: (eps: number, count: string) => {
      if (!c) throw new Error('unscaleGradient: no input_scale');
      const perUnit = b.mul(b.mul(s.gamma, b.mul(s.invStd, s.invStd)), b.mul(meanDyXhat, b.scalarLike(-eps, meanDyXhat)));
      return b.div(b.mul(perUnit, count), c);
    },
  };
}

/**
 * v * gain + offset with per-channel [1,C,1,...] gain and offset, as BatchNormalization with mean 0, variance 1
 * and epsilon 0: one pass, where ORT's broadcasting Mul and Add take two slower ones.
 */
function channelAffine(b: GraphBuilder, v: string, gain: string, offset?: string, output?: string): string {
  const g = toChannelVector(b, gain);
  const zeros = b.mul(g, b.scalarLike(0, g));
  const ones = b.add(zeros, b.scalarLike(1, g));
  const inputs = [v, g, offset ? toChannelVector(b, offset) : zeros, zeros, ones];
  return b.op1('BatchNormalization', inputs, { epsilon: 0 }, output ? { outputs: [output] } : {});
}

/** Normalised axes of LayerNormalization: every axis from `axis` on. */
function layerAxes(node: Node, rank: number): number[] {
  const axis = normalizeAxis(attrInt(node, 'axis', -1), rank, node);
  return Array.from({ length: rank - axis }, (_, i) => axis + i);
}

function inferLayerNormalization(ctx: InferContext) {
  const x = requireInput(ctx, 0);
  const axes = layerAxes(ctx.node, x.shape.length);
  // Mean and InvStdDev keep X's rank with the normalised axes set to 1 (ONNX LayerNormalization-17).
  const statShape = x.shape.map((d, i) => (i >= axes[0] ? 1 : d));
  // Their element type is stash_type (default 1 = float), whatever X's type: ORT gives float Mean for double X.
  const stat = { dtype: attrInt(ctx.node, 'stash_type', DType.FLOAT) as DType, shape: statShape };
  return [x, stat, stat];
}

/**
 * VJP of LayerNormalization. The statistics over the trailing axes come from the node's Mean and InvStdDev
 * outputs when it has them in X's dtype (stash_type float for float X), and are recomputed from X otherwise:
 * ORT writes them as float32 even for float64 X (and has no kernel for stash_type double).
 */
function layerNormalizationVjp(c: VjpContext) {
  const { b } = c;
  refuseStatisticGradients(c, [1, 2], 'Mean / InvStdDev');
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const axes = layerAxes(c.node, b.rank(x));
  const [savedMean, savedInvStd] = [c.output(1), c.output(2)];
  const saved = savedMean && savedInvStd && b.dtype(savedMean) === b.dtype(x) && b.dtype(savedInvStd) === b.dtype(x);
  const { centered, invStd } = saved
    ? { centered: b.sub(x, savedMean), invStd: savedInvStd }
    : moments(b, x, axes, attrFloat(c.node, 'epsilon', BN_EPSILON));
  const xhat = b.mul(centered, invStd);
  const scale = c.input(1);
  const dx = c.wants(0) ? normalizedInputGradient(b, b.mul(dy, scale), xhat, invStd, axes) : undefined;
  const dscale = c.wants(1) ? b.unbroadcast(b.mul(dy, xhat), b.shape(scale)) : undefined;
  const dbias = c.wants(2) && c.input(2) ? b.unbroadcast(dy, b.shape(c.input(2))) : undefined;
  return [dx, dscale, dbias];
}

/**
 * VJP of InstanceNormalization (Ulyanov et al. 2016; torch's InstanceNorm2d and, on a [N, G, -1] reshape,
 * GroupNorm): statistics per (n, c) over the spatial axes 2.., recomputed from X; scale and B are per channel.
 */
function instanceNormalizationVjp(c: VjpContext) {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const x = c.input(0);
  const rank = b.rank(x);
  if (rank < 3) throw new Error(`node '${c.node.name}' (InstanceNormalization): X must have rank >= 3 ([N,C,D1,...]), got rank ${rank}`);
  const spatial = Array.from({ length: rank - 2 }, (_, i) => i + 2);
  const { centered, invStd } = moments(b, x, spatial, attrFloat(c.node, 'epsilon', BN_EPSILON));
  const xhat = b.mul(centered, invStd);
  const batchAndSpatial = [0, ...spatial];
  const dx = c.wants(0) ? normalizedInputGradient(b, b.mul(dy, perChannel(b, c.input(1), rank)), xhat, invStd, spatial) : undefined;
  const dscale = c.wants(1) ? toChannelVector(b, b.reduceSum(b.mul(dy, xhat), batchAndSpatial, true)) : undefined;
  const dbias = c.wants(2) ? toChannelVector(b, b.reduceSum(dy, batchAndSpatial, true)) : undefined;
  return [dx, dscale, dbias];
}

export const normOps: OpDef[] = [
  { opType: 'InstanceNormalization', domain: '', infer: (ctx) => [requireInput(ctx, 0)], vjp: instanceNormalizationVjp },
  { opType: 'BatchNormalization', domain: '', infer: inferBatchNormalization, nonDifferentiable: [3, 4], vjp: batchNormalizationVjp },
  {
    opType: 'BatchNormTrain',
    domain: 'ai.qatkit',
    infer: inferBatchNormTrain,
    nonDifferentiable: [3, 4],
    vjp: batchNormTrainVjp,
    lower: lowerBatchNormTrain,
  },
  { opType: 'LayerNormalization', domain: '', infer: inferLayerNormalization, vjp: layerNormalizationVjp },
];

defineOps(normOps);
