import { DType } from '../ir/dtype';
import { GraphBuilder } from '../ir/builder';
import { attrInt, Graph, Node, topologicalOrder } from '../ir/graph';
import { attachPatchMoments } from '../ops/conv-batchnorm';
import { resolveWindow, windowAttrs } from '../ops/window-geometry';

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
    const attrs = Object.fromEntries(
      Object.entries({ ...windowAttrs(window), kernel_shape: window.kernel }).map(([k, v]) => [k, { kind: 'ints' as const, value: v }]),
    );
    for (const k of ['epsilon', 'momentum']) if (bn.attrs[k]) Object.assign(attrs, { [k]: bn.attrs[k] });
    replaced.set(conv, undefined);
    replaced.set(bn, { opType: 'ConvBatchNormTrain', domain: 'ai.qatkit', name: `${conv.name}+${bn.name}`, inputs: [x, w, ...bn.inputs.slice(1)], outputs: bn.outputs, attrs });
  }
  if (!replaced.size) return 0;
  graph.nodes = graph.nodes.flatMap((n) => (replaced.has(n) ? (replaced.get(n) ? [replaced.get(n)!] : []) : [n]));
  const fused = [...replaced.values()].filter((n): n is Node => n !== undefined);
  // Patches and their moments once, for the forward and the backward of each fused node.
  const b = new GraphBuilder(graph, 'conv_bn/');
  for (const node of fused) attachPatchMoments(b, node);
  graph.nodes = topologicalOrder(graph);
  return fused.length;
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
