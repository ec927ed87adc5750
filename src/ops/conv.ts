import { GraphBuilder } from '../ir/builder.js';
import { allocate, DType } from '../ir/dtype.js';
import { attrInt, attrInts, Dim, Graph, Node, topologicalOrder, ValueType } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { defineOps, InferContext, OpDef, VjpRule } from './registry.js';
import { requireInput } from './shape-utils.js';
import { resolveTransposeWindow, resolveWindow, transposeOutputPadding, Window, windowAttrs } from './window-geometry.js';

// Conv and ConvTranspose (ONNX opset 11+ semantics), 1-D, 2-D and 3-D, with groups.
// Gradients (the adjoint pairs of Dumoulin & Visin 2016, "A guide to convolution arithmetic"):
//   Conv:          dX = ConvTranspose(dY, W) with the forward window and an output_padding that restores
//                  X's size exactly; dW = im2col(X)·dY (see convWeightGradient); dB = sum of dY over N, spatial.
//   ConvTranspose: dX = Conv(dY, W) with the same window; dW = convWeightGradient(dY, X), since X = Conv(dY; W).

function kernelShape(node: Node, w: ValueType): number[] {
  const attr = attrInts(node, 'kernel_shape', undefined);
  if (attr) return attr;
  const ks = w.shape.slice(2);
  if (ks.some((d) => typeof d !== 'number')) {
    throw new Error(`node '${node.name}' (${node.opType}): W has symbolic spatial dims [${w.shape}]; give kernel_shape`);
  }
  return ks as number[];
}

function checkRanks(node: Node, x: ValueType, w: ValueType): void {
  if (x.shape.length < 3 || w.shape.length !== x.shape.length) {
    throw new Error(
      `node '${node.name}' (${node.opType}): X [${x.shape}] and W [${w.shape}] must both have rank >= 3 ([N, C, D1, ...] and [M, C/group, k1, ...])`,
    );
  }
}

function inferConv(ctx: InferContext): ValueType[] {
  const { node } = ctx;
  const x = requireInput(ctx, 0);
  const w = requireInput(ctx, 1);
  checkRanks(node, x, w);
  const group = attrInt(node, 'group', 1);
  const [c, cw] = [x.shape[1], w.shape[1]];
  if (typeof c === 'number' && typeof cw === 'number' && c !== cw * group) {
    throw new Error(`node '${node.name}' (Conv): X has ${c} channels but W [${w.shape}] with group=${group} expects ${cw * group}`);
  }
  const { outSpatial } = resolveWindow(node, x.shape.slice(2), kernelShape(node, w));
  return [{ dtype: x.dtype, shape: [x.shape[0], w.shape[0], ...outSpatial] }];
}

function inferConvTranspose(ctx: InferContext): ValueType[] {
  const { node } = ctx;
  const x = requireInput(ctx, 0);
  const w = requireInput(ctx, 1);
  checkRanks(node, x, w);
  const group = attrInt(node, 'group', 1);
  const [c, cw] = [x.shape[1], w.shape[0]];
  if (typeof c === 'number' && typeof cw === 'number' && c !== cw) {
    throw new Error(`node '${node.name}' (ConvTranspose): X has ${c} channels but W [${w.shape}] expects ${cw} (W is [C, M/group, k1, ...])`);
  }
  const m = w.shape[1];
  const { outSpatial } = resolveTransposeWindow(node, x.shape.slice(2), kernelShape(node, w));
  return [{ dtype: x.dtype, shape: [x.shape[0], typeof m === 'number' ? m * group : `${node.outputs[0]}_d1`, ...outSpatial] }];
}

function staticDims(b: GraphBuilder, v: string, node: Node, what: string): number[] {
  const s = b.shape(v);
  if (s.some((d) => typeof d !== 'number')) {
    throw new Error(`gradient of node '${node.name}' (${node.opType}) needs static dims for ${what}, got [${s}]`);
  }
  return s as number[];
}

/** Static spatial dims of v (everything but N and C). */
function staticSpatial(b: GraphBuilder, v: string, node: Node, what: string): number[] {
  const s = b.shape(v).slice(2);
  if (s.some((d) => typeof d !== 'number')) {
    throw new Error(`gradient of node '${node.name}' (${node.opType}) needs static spatial dims for ${what}, got [${b.shape(v)}]`);
  }
  return s as number[];
}

/** Bias gradient: dY summed over the batch and every spatial axis, one value per output channel. */
export function biasGradient(b: GraphBuilder, dy: string): string {
  const rank = b.rank(dy);
  return b.reduceSum(dy, [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)], false);
}

/**
 * dX of Conv: ConvTranspose(dY, W) with the forward's window and group, and the output_padding
 * ((H + pads - dilated kernel) mod stride) that gives back X's spatial size exactly when the forward
 * stride skipped trailing input rows.
 */
export function convInputGradient(b: GraphBuilder, dy: string, w: string, window: Window, group: number, xSpatial: number[], node: Node): string {
  const flipped = stride1InputGradient(b, dy, w, window, group);
  if (flipped) return flipped;
  const dySpatial = staticSpatial(b, dy, node, 'dY');
  const outputPadding = xSpatial.map((size, i) => transposeOutputPadding(window, i, dySpatial[i], size));
  const dx = b.op1('ConvTranspose', [dy, w], {
    ...windowAttrs(window),
    group,
    kernel_shape: window.kernel,
    ...(outputPadding.some((p) => p !== 0) ? { output_padding: outputPadding } : {}),
  });
  return checkInputGradientSpatial(b, dx, xSpatial, node);
}

/** Guards against a window mismatch: the input gradient must have exactly X's spatial size. */
function checkInputGradientSpatial(b: GraphBuilder, dx: string, xSpatial: number[], node: Node): string {
  const got = b.shape(dx).slice(2);
  if (got.some((d, i) => d !== xSpatial[i])) {
    throw new Error(`gradient of node '${node.name}' (${node.opType}): input gradient has spatial dims [${got}] instead of [${xSpatial}]`);
  }
  return dx;
}

/**
 * For stride 1 and one group, dX is a plain Conv of dY with W transposed on its channel axes and flipped in
 * space, padded by d(k-1) - pad: ORT's Conv runs this ~10% faster per training step than ConvTranspose
 * (bench/train-step; measured on LeNet). Returns undefined where the identity does not apply.
 */
function stride1InputGradient(b: GraphBuilder, dy: string, w: string, window: Window, group: number): string | undefined {
  if (group !== 1 || window.strides.some((s) => s !== 1)) return undefined;
  const reach = window.kernel.map((k, i) => window.dilations[i] * (k - 1));
  const padsBegin = reach.map((r, i) => r - window.padsBegin[i]);
  const padsEnd = reach.map((r, i) => r - window.padsEnd[i]);
  if ([...padsBegin, ...padsEnd].some((p) => p < 0)) return undefined;
  const spatial = window.kernel.map((_, i) => i + 2);
  const reversed = b.op1('Slice', [w, b.ints(spatial.map(() => -1)), b.ints(spatial.map(() => -(2 ** 62))), b.ints(spatial), b.ints(spatial.map(() => -1))]);
  const wT = b.transpose(reversed, [1, 0, ...spatial]);
  return b.op1('Conv', [dy, wT], { kernel_shape: window.kernel, dilations: window.dilations, pads: [...padsBegin, ...padsEnd], strides: window.strides });
}

/** One-hot kernels [C*K, 1, k...] that copy each of the K window offsets of each channel to its own output channel. */
function im2colKernel(channels: number, kernel: number[], dtype: DType): Tensor {
  const k = kernel.reduce((p, q) => p * q, 1);
  const t = Tensor.zeros(dtype, [channels * k, 1, ...kernel]);
  for (let c = 0; c < channels; c++) for (let j = 0; j < k; j++) (t.data as Float32Array | Float64Array)[(c * k + j) * k + j] = 1;
  return t;
}

/**
 * Gradient of W for y = Conv(input, W) with `window` and `group`, given dY = `outGrad`:
 *   dW[g·Cog+o, c, k] = Σ_{n,p} dY[n, g·Cog+o, p] · input[n, g·Cig+c, p·s + k·d − pad].
 * Lowered as im2col + batched MatMul, the fastest of the lowerings measured in DESIGN.md: a grouped Conv
 * with constant one-hot kernels (the forward's window, so strides, asymmetric pads and dilations need no
 * separate arithmetic) gives patches [N, G, Cig·K, L]; dY as [N, G, Cog, L]; MatMul against the
 * transposed patches (ORT fuses the Transpose) gives [N, G, Cog, Cig·K], summed over N.
 */
export function convWeightGradient(b: GraphBuilder, input: string, outGrad: string, wShape: number[], window: Window, group: number): string {
  return convWeightGradientWithPatches(b, input, outGrad, wShape, window, group).dw;
}

function convWeightGradientWithPatches(b: GraphBuilder, input: string, outGrad: string, wShape: number[], window: Window, group: number) {
  const [m, cig] = wShape;
  const k = window.kernel.reduce((p, q) => p * q, 1);
  const cog = m / group;
  const patches = im2colPatches(b, input, cig * group, window);
  const columns = b.transpose(b.reshape(patches, [0, group, cig * k, -1]), [0, 1, 3, 2]);
  const perSample = b.matmul(b.reshape(outGrad, [0, group, cog, -1]), columns);
  return { dw: b.reshape(sumOverBatch(b, perSample), wShape), patches };
}

/**
 * Σ over axis 0 of x [N, ...]. With N known, as ones[1, N] x x[N, rest]: ORT's MatMul takes about half the time
 * of its ReduceSum over the leading axis (LeNet's [128, 64, 288] per-sample weight gradients: 0.15 vs 0.26-0.33
 * ms, bench/out micro-benchmark, 2026-11-30, machine B of docs/benchmarks.md). Equal up to float summation order.
 */
function sumOverBatch(b: GraphBuilder, x: string): string {
  const [n, ...rest] = b.shape(x);
  if (typeof n !== 'number' || rest.some((d) => typeof d !== 'number')) return b.reduceSum(x, [0], false);
  const ones = b.constant(new Tensor(b.dtype(x), [1, n], (allocate(b.dtype(x), n) as Float32Array | Float64Array).fill(1)));
  return b.reshape(b.matmul(ones, b.reshape(x, [n, -1])), rest as number[]);
}

/**
 * im2col as a Conv: a grouped Conv with constant one-hot kernels (`window`'s strides, pads and dilations) gives
 * patches [N, C*K, out...], row c*K + j holding window offset j of channel c (zeros where the window is in the pads).
 */
export function im2colPatches(b: GraphBuilder, input: string, channels: number, window: Window): string {
  const eye = b.constant(im2colKernel(channels, window.kernel, b.dtype(input)));
  return b.op1('Conv', [input, eye], { ...windowAttrs(window), group: channels, kernel_shape: window.kernel });
}

/** Forward Conv nodes whose weight gradient built im2col patches of their input, by graph: see convsFromPatches. */
const patchesOfConv = new WeakMap<Graph, Map<Node, { patches: string; wShape: number[] }>>();

/** Below this many patch rows (C_in * kernel size) ORT's own Conv is the faster forward. */
const MIN_PATCH_ROWS = 64;

/**
 * Recomputes forward convolutions from the im2col patches that their weight gradient already builds:
 * y = Reshape(W, [M, C*K]) x patches[N, C*K, L], one batched MatMul that reuses the backward's patches instead of
 * ORT's Conv expanding the same patches again (LeNet's 32->64 conv: ~16 ms as Conv, ~10 ms as MatMul on 2
 * threads). Applies to one-group convs with at least MIN_PATCH_ROWS patch rows, after `differentiate`;
 * returns how many it rewrote. Values equal the Conv's up to float summation order.
 */
export function convsFromPatches(graph: Graph): number {
  const found = patchesOfConv.get(graph);
  if (!found?.size) return 0;
  const b = new GraphBuilder(graph, 'conv_from_patches/');
  let rewritten = 0;
  for (const [conv, { patches, wShape }] of found) {
    const [m, c, ...kernel] = wShape;
    const rows = c * kernel.reduce((p, q) => p * q, 1);
    const index = graph.nodes.indexOf(conv);
    if (index < 0 || rows < MIN_PATCH_ROWS) continue;
    const [, w, bias] = conv.inputs;
    const y = conv.outputs[0];
    graph.nodes.splice(index, 1);
    const flat = b.matmul(b.reshape(w, [m, rows]), b.reshape(patches, [0, rows, -1]));
    const shaped = b.reshapeLike(flat, y);
    b.op1(bias ? 'Add' : 'Identity', bias ? [shaped, b.reshape(bias, [1, m, ...kernel.map(() => 1)])] : [shaped], {}, { outputs: [y] });
    rewritten++;
  }
  patchesOfConv.delete(graph);
  if (rewritten) graph.nodes = topologicalOrder(graph);
  return rewritten;
}

/** What the gradients of Conv and ConvTranspose both need, read from the node and the builder. */
interface ConvGradInputs {
  b: GraphBuilder;
  node: Node;
  dy: string;
  x: string;
  w: string;
  group: number;
  wShape: number[];
  xSpatial: number[];
  window: Window;
}

/**
 * VJP of Conv or ConvTranspose: `resolve` gives the forward's window, `dx` and `dw` build the input and
 * weight gradients; the bias gradient is the same for both (dY summed per output channel).
 */
function convFamilyVjp(
  resolve: (node: Node, spatial: Dim[], kernel: number[]) => { window: Window },
  dx: (g: ConvGradInputs) => string,
  dw: (g: ConvGradInputs) => string,
): VjpRule {
  return (c) => {
    const { b, node } = c;
    const dy = c.dy(0);
    if (!dy) return [];
    const [x, w] = [c.input(0), c.input(1)];
    const group = attrInt(node, 'group', 1);
    const wShape = staticDims(b, w, node, 'W');
    const xSpatial = staticSpatial(b, x, node, 'X');
    const { window } = resolve(node, xSpatial, kernelShape(node, b.type(w)));
    const g: ConvGradInputs = { b, node, dy, x, w, group, wShape, xSpatial, window };
    return [c.wants(0) ? dx(g) : undefined, c.wants(1) ? dw(g) : undefined, node.inputs[2] && c.wants(2) ? biasGradient(b, dy) : undefined];
  };
}

const convVjp = convFamilyVjp(
  resolveWindow,
  (g) => convInputGradient(g.b, g.dy, g.w, g.window, g.group, g.xSpatial, g.node),
  (g) => {
    const { dw, patches } = convWeightGradientWithPatches(g.b, g.x, g.dy, g.wShape, g.window, g.group);
    if (g.group === 1 && g.b.dtype(g.x) === DType.FLOAT) {
      const byNode = patchesOfConv.get(g.b.graph) ?? new Map();
      patchesOfConv.set(g.b.graph, byNode.set(g.node, { patches, wShape: g.wShape }));
    }
    return dw;
  },
);

const convTransposeVjp = convFamilyVjp(
  resolveTransposeWindow,
  // X = Conv(Y; W) with the same window: ConvTranspose is the adjoint of that Conv in its input.
  (g) => {
    const dx = g.b.op1('Conv', [g.dy, g.w], { ...windowAttrs(g.window), group: g.group, kernel_shape: g.window.kernel });
    return checkInputGradientSpatial(g.b, dx, g.xSpatial, g.node);
  },
  (g) => convWeightGradient(g.b, g.dy, g.x, g.wShape, g.window, g.group),
);

export const convOps: OpDef[] = [
  { opType: 'Conv', domain: '', infer: inferConv, vjp: convVjp },
  { opType: 'ConvTranspose', domain: '', infer: inferConvTranspose, vjp: convTransposeVjp },
];

defineOps(convOps);
