import { DType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { GraphBuilder, inferNode } from '../ir/builder.js';
import { Attr, attrFloat, attrInt, attrInts, attrString, Graph, Node, topologicalOrder } from '../ir/graph.js';
import { attachPatches, attachPatchMoments } from '../ops/conv-batchnorm.js';
import { BN_EPSILON, inverseStd } from '../ops/norm.js';
import { resolveWindow, windowAttrs } from '../ops/window-geometry.js';

/**
 * Most patch rows (C_in * kernel size) for which Conv + BatchNormTrain becomes ConvBatchNormTrain: its patch
 * second moment costs 2 N L R^2 flops, nothing for a first layer (R = 9 for one input channel and 3x3), more than
 * the conv itself for R in the hundreds.
 */
export const MAX_FUSED_PATCH_ROWS = 32;

/**
 * In a training step, replaces Conv (one group, no bias, input independent of every parameter: the first
 * layers) followed by BatchNormTrain by ai.qatkit ConvBatchNormTrain (ops/conv-batchnorm.ts), which takes the
 * batch statistics from the input's patches and folds the normalisation into the conv: no pass over the conv
 * output forward, one backward. Same values up to float summation order. Returns how many it fused.
 */
export function fuseConvBatchNorm(graph: Graph, params: string[]): number {
  const dependsOnParams = valuesDependingOn(graph, new Set(params));
  const producers = graph.producers();
  const consumers = graph.consumers();
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const replaced = new Map<Node, Node | undefined>();
  for (const bn of graph.nodes) {
    if (bn.opType !== 'BatchNormTrain' || bn.domain !== 'ai.qatkit') continue;
    const conv = producers.get(bn.inputs[0]);
    if (!conv || !fusable(graph, conv, dependsOnParams)) continue;
    const readers = consumers.get(conv.outputs[0]) ?? [];
    if (readers.length !== 1 || outputs.has(conv.outputs[0])) continue;
    const [x, w] = conv.inputs;
    const kernel = graph.typeOf(w).shape.slice(2) as number[];
    const { window } = resolveWindow(conv, graph.typeOf(x).shape.slice(2), kernel);
    const attrs: Record<string, Attr> = Object.fromEntries(
      Object.entries({ ...windowAttrs(window), kernel_shape: window.kernel }).map(([k, v]) => [k, { kind: 'ints' as const, value: v }]),
    );
    for (const k of ['epsilon', 'momentum']) if (bn.attrs[k]) Object.assign(attrs, { [k]: bn.attrs[k] });
    let fusedOutputs = bn.outputs;
    const pool = poolToAbsorb(graph, conv, bn.outputs[0], consumers, outputs);
    if (pool) {
      // The MaxPool's output becomes Y; the observers' full reductions read the pre-pool windows (output 5).
      const windows = `${bn.outputs[0]}/windows`;
      fusedOutputs = [pool.node.outputs[0], ...Array.from({ length: 4 }, (_, i) => bn.outputs[i + 1] ?? ''), windows];
      for (const r of pool.reductions) r.inputs[0] = windows;
      attrs.max_pool = { kind: 'int', value: 1 };
      replaced.set(pool.node, undefined);
    }
    replaced.set(conv, undefined);
    replaced.set(bn, { opType: 'ConvBatchNormTrain', domain: 'ai.qatkit', name: `${conv.name}+${bn.name}`, inputs: [x, w, ...bn.inputs.slice(1)], outputs: fusedOutputs, attrs });
  }
  if (!replaced.size) return 0;
  graph.nodes = graph.nodes.flatMap((n) => (replaced.has(n) ? (replaced.get(n) ? [replaced.get(n)!] : []) : [n]));
  const fused = [...replaced.values()].filter((n): n is Node => n !== undefined);
  // Patches and their moments once, for the forward and the backward of each fused node.
  const b = new GraphBuilder(graph, 'conv_bn/');
  for (const node of fused) {
    inferNode(graph, node).forEach((t, i) => node.outputs[i] && graph.types.set(node.outputs[i], t));
    attachPatchMoments(b, node);
  }
  graph.nodes = topologicalOrder(graph);
  return fused.length;
}

/**
 * The frozen-BN counterpart of fuseConvBatchNorm, for a training step built after QAT's BN-freeze step: Conv (the
 * same first layers) -> [Div by the folding's per-channel c] -> inference BatchNormalization [-> 2x2 MaxPool] becomes
 * ai.qatkit ConvAffine (ops/conv-batchnorm.ts) with gain = gamma / (c sqrt(var + eps)) and offset =
 * beta - gamma mean / sqrt(var + eps) computed from the parameters and running statistics by small ops before it:
 * the conv output is never written or read again, and the pool's gradient needs no upsampling. Without it the
 * frozen phase of a w8a8 LeNet run was ~15% slower than its batch-statistics phase (bench/README.md, issue 10).
 * Values equal the unfused form up to float rounding (a z + o instead of ((z / c) - mean) g + beta).
 * Conv -> Add(per-channel bias [1, C, 1, ...]) [-> MaxPool], the form a folded conv takes once its bias is rounded
 * to the int32 grid (quant/integer-bias.ts), becomes ConvAffine with gain 1 and that bias as the offset.
 */
export function fuseConvFrozenBatchNorm(graph: Graph, params: string[]): number {
  const dependsOnParams = valuesDependingOn(graph, new Set(params));
  const producers = graph.producers();
  const consumers = graph.consumers();
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const b = new GraphBuilder(graph, 'conv_affine/');
  const replaced = new Map<Node, Node[] | undefined>();
  const soleReader = (value: string, reader: Node) => {
    const readers = consumers.get(value) ?? [];
    return readers.length === 1 && readers[0] === reader && !outputs.has(value);
  };
  for (const anchor of [...graph.nodes]) {
    const match = frozenBatchNormMatch(graph, anchor, producers, soleReader) ?? biasAddMatch(graph, anchor, producers, soleReader);
    if (!match) continue;
    const { conv, path } = match;
    if (!conv || !fusable(graph, conv, dependsOnParams)) continue;
    const [x, w] = conv.inputs;
    const kernel = graph.typeOf(w).shape.slice(2) as number[];
    const { window } = resolveWindow(conv, graph.typeOf(x).shape.slice(2), kernel);
    const attrs: Record<string, Attr> = Object.fromEntries(
      Object.entries({ ...windowAttrs(window), kernel_shape: window.kernel }).map(([k, v]) => [k, { kind: 'ints' as const, value: v }]),
    );
    const start = graph.nodes.length;
    const { gain, offset } = match.coefficients(b);
    const coefficients = graph.nodes.splice(start);
    const y = anchor.outputs[0];
    let fusedOutputs = [y];
    const pool = poolToAbsorb(graph, conv, y, consumers, outputs);
    if (pool) {
      const windows = `${y}/windows`;
      fusedOutputs = [pool.node.outputs[0], windows];
      for (const r of pool.reductions) r.inputs[0] = windows;
      attrs.max_pool = { kind: 'int', value: 1 };
      replaced.set(pool.node, undefined);
    }
    for (const n of [conv, ...path]) replaced.set(n, undefined);
    const fused: Node = { opType: 'ConvAffine', domain: 'ai.qatkit', name: `${conv.name}+${anchor.name}`, inputs: [x, w, gain, offset], outputs: fusedOutputs, attrs };
    inferNode(graph, fused).forEach((t, i) => fused.outputs[i] && graph.types.set(fused.outputs[i], t));
    const patchesStart = graph.nodes.length;
    attachPatches(b, fused);
    replaced.set(anchor, [...coefficients, ...graph.nodes.splice(patchesStart), fused]);
  }
  if (!replaced.size) return 0;
  graph.nodes = graph.nodes.flatMap((n) => (replaced.has(n) ? (replaced.get(n) ?? []) : [n]));
  graph.nodes = topologicalOrder(graph);
  return [...replaced.values()].filter((v) => v !== undefined).length;
}

interface AffineMatch {
  conv: Node | undefined;
  /** Nodes between the conv and the anchor (Identity, the folding's Div), replaced with them. */
  path: Node[];
  /** Emits the per-channel gain and offset ([O] each). */
  coefficients: (b: GraphBuilder) => { gain: string; offset: string };
}

type SoleReader = (value: string, reader: Node) => boolean;

/** Conv -> [Identity] -> [Div by a per-channel c] -> inference BatchNormalization (no training outputs). */
function frozenBatchNormMatch(graph: Graph, bn: Node, producers: Map<string, Node>, soleReader: SoleReader): AffineMatch | undefined {
  if (bn.opType !== 'BatchNormalization' || bn.domain !== '' || attrInt(bn, 'training_mode', 0) !== 0 || bn.outputs.slice(1).some((o) => o)) return undefined;
  // Walk back over an Identity and the folding's Div to the conv.
  let value = bn.inputs[0];
  let reader = bn;
  const path: Node[] = [];
  let c: string | undefined;
  for (;;) {
    const p = producers.get(value);
    if (!p || !soleReader(value, reader)) break;
    if (p.opType === 'Identity' && p.domain === '') [reader, value] = [p, p.inputs[0]];
    else if (p.opType === 'Div' && p.domain === '' && !c && perChannel(graph, p.inputs[0], p.inputs[1])) [reader, value, c] = [p, p.inputs[0], p.inputs[1]];
    else break;
    path.push(reader);
  }
  const conv = producers.get(value);
  if (!conv || !soleReader(value, reader)) return undefined;
  const [scale, bias, mean, variance] = bn.inputs.slice(1, 5);
  return {
    conv,
    path,
    coefficients: (b) => {
      const g = b.mul(scale, inverseStd(b, variance, attrFloat(bn, 'epsilon', BN_EPSILON)));
      return { gain: c ? b.div(g, b.reshape(c, [-1])) : g, offset: b.sub(bias, b.mul(mean, g)) };
    },
  };
}

/** Conv -> Add(conv output, per-channel bias [1, O, 1, ...]). */
function biasAddMatch(graph: Graph, add: Node, producers: Map<string, Node>, soleReader: SoleReader): AffineMatch | undefined {
  if (add.opType !== 'Add' || add.domain !== '') return undefined;
  const [z, bias] = add.inputs;
  const conv = producers.get(z);
  if (!conv || conv.opType !== 'Conv' || !soleReader(z, add) || !perChannel(graph, z, bias)) return undefined;
  const out = graph.typeOf(bias).shape[1] as number;
  return { conv, path: [], coefficients: (b) => ({ gain: b.constant(Tensor.float([out], new Array(out).fill(1))), offset: b.reshape(bias, [-1]) }) };
}

/** Whether d is per channel of x ([1, C, 1, ...] against [N, C, ...]). */
function perChannel(graph: Graph, x: string, d: string): boolean {
  const xs = graph.typeOf(x).shape;
  const ds = graph.typeOf(d).shape;
  return ds.length === xs.length && typeof xs[1] === 'number' && ds.every((v, i) => (i === 1 ? v === xs[1] : v === 1));
}

/**
 * The MaxPool that the fused node can absorb (ConvBatchNormTrain's max_pool): Y's only reader apart from full
 * ReduceMin / ReduceMax (a hoisted range observer's extremes, which read the windows instead), a 2x2 pool with
 * stride 2 and no pads over an even output of a stride-1, dilation-1 2-D conv; Y is not a graph output.
 */
function poolToAbsorb(graph: Graph, conv: Node, y: string, consumers: Map<string, Node[]>, outputs: Set<string>) {
  const readers = consumers.get(y) ?? [];
  const pools = readers.filter((n) => n.opType === 'MaxPool' && n.domain === '');
  const reductions = readers.filter((n) => !pools.includes(n));
  if (pools.length !== 1 || outputs.has(y)) return undefined;
  const [node] = pools;
  const spatial = graph.typeOf(y).shape.slice(2);
  if (spatial.length !== 2 || spatial.some((d) => typeof d !== 'number' || d % 2 !== 0)) return undefined;
  const ints = (n: Node, name: string, fallback: number[]) => attrInts(n, name, fallback)!;
  const convOk = ints(conv, 'strides', [1, 1]).every((s) => s === 1) && ints(conv, 'dilations', [1, 1]).every((d) => d === 1);
  const poolOk =
    (node.outputs.length === 1 || !node.outputs[1]) &&
    ints(node, 'kernel_shape', []).join() === '2,2' &&
    ints(node, 'strides', [1, 1]).join() === '2,2' &&
    ints(node, 'pads', [0, 0, 0, 0]).every((p) => p === 0) &&
    ints(node, 'dilations', [1, 1]).every((d) => d === 1) &&
    attrInt(node, 'ceil_mode', 0) === 0 &&
    attrString(node, 'auto_pad', 'NOTSET') === 'NOTSET';
  const fullReduction = (n: Node) =>
    (n.opType === 'ReduceMin' || n.opType === 'ReduceMax') && n.domain === '' && n.inputs.length === 1 && (ints(n, 'axes', [0, 1, 2, 3]) as number[]).filter((a) => a >= 2).length === 2;
  if (!convOk || !poolOk || !reductions.every(fullReduction)) return undefined;
  return { node, reductions };
}

function fusable(graph: Graph, conv: Node, dependsOnParams: Set<string>): boolean {
  if (conv.opType !== 'Conv' || conv.domain !== '' || conv.inputs[2] || attrInt(conv, 'group', 1) !== 1) return false;
  const [x, w] = conv.inputs;
  if (dependsOnParams.has(x) || ![DType.FLOAT, DType.DOUBLE].includes(graph.typeOf(x).dtype)) return false;
  const shape = graph.typeOf(w).shape;
  if (shape.some((d) => typeof d !== 'number')) return false;
  const rows = (shape as number[]).slice(1).reduce((p, q) => p * q, 1);
  return rows <= MAX_FUSED_PATCH_ROWS;
}

/** Every value computed from one of `sources` (the sources included). */
function valuesDependingOn(graph: Graph, sources: Set<string>): Set<string> {
  const reached = new Set(sources);
  for (const node of graph.nodes) {
    if (node.inputs.some((i) => i && reached.has(i))) for (const o of node.outputs) if (o) reached.add(o);
  }
  return reached;
}
