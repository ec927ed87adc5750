import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrFloat, attrInt, attrInts, Graph, Node, topologicalOrder } from '../ir/graph.js';
import { windowsTile } from '../ops/pool.js';
import { resolveWindow } from '../ops/window-geometry.js';
import { QATKIT } from '../quant/fake-quantize-op.js';

/**
 * Moves MaxPool in front of the monotonic elementwise ops that feed it (ReLU, Clip, activation fake-quant,
 * PACT), for the training step only:
 *   MaxPool(f(x)) == f(MaxPool(x))  for every non-decreasing elementwise f,
 * exactly in floating point (max picks an element; f maps the larger element to a value that is not smaller).
 * ReLU and the activation quantizer then run, forward and backward, on the pooled tensor (4x fewer elements
 * for a 2x2 pool), and the MaxPool gradient routes through the unquantized values, so tied quantized maxima
 * no longer share one gradient. Forward values are bit-identical; gradients are identical except where a
 * window held tied maxima. The model graph (evaluation, export) is untouched.
 *
 * A range observer watching an intermediate value of the chain keeps its exact statistics: the min and max of
 * f(x) are f(min x) and f(max x), so it watches f applied to x's two extremes instead of the full tensor.
 */
export function hoistMaxPools(graph: Graph): number {
  let hoisted = 0;
  for (const pool of graph.nodes.filter((n) => n.opType === 'MaxPool' && n.domain === '')) {
    if (hoistOne(graph, pool)) hoisted++;
  }
  if (hoisted) graph.nodes = topologicalOrder(graph);
  return hoisted;
}

const OBSERVER = 'RangeObserverTrain';

/** Elementwise ops that are non-decreasing in their first input whatever their other inputs hold. */
function isMonotonic(node: Node): boolean {
  if (node.domain === '') {
    if (node.opType === 'Relu' || node.opType === 'Clip') return true;
    return node.opType === 'LeakyRelu' && attrFloat(node, 'alpha', 0.01) >= 0;
  }
  if (node.domain !== QATKIT) return false;
  if (node.opType === 'PactQuantize') return true;
  // y = s * clip(round(x / s), lo, hi) is non-decreasing for s > 0 and for s < 0 alike. Parameters may vary
  // along the channel axis only (pooling keeps it, and observers' extremes keep it), not per position or group.
  if (node.opType !== 'FakeQuantize' || attrInt(node, 'group_size', 0) > 0) return false;
  return !node.attrs.axis || attrInt(node, 'axis', 0) === 1;
}

function hoistOne(graph: Graph, pool: Node): boolean {
  if (pool.outputs.length > 1 && pool.outputs[1]) return false;
  const producers = graph.producers();
  const consumers = graph.consumers();
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const chain: Node[] = [];
  let value = pool.inputs[0];
  let next = pool;
  for (;;) {
    const producer = producers.get(value);
    if (!producer || !isMonotonic(producer) || graphOutputs.has(value)) break;
    const others = (consumers.get(value) ?? []).filter((c) => c !== next);
    if (!others.every((c) => c.domain === QATKIT && c.opType === OBSERVER && c.inputs.indexOf(value) === 0)) break;
    chain.unshift(producer);
    next = producer;
    value = producer.inputs[0];
  }
  if (!chain.length || graph.typeOf(value).dtype !== DType.FLOAT && graph.typeOf(value).dtype !== DType.DOUBLE) return false;

  const b = new GraphBuilder(graph, `hoist/${pool.name}/`);
  const removed = new Set<Node>([pool, ...chain]);
  graph.nodes = graph.nodes.filter((n) => !removed.has(n));
  // MaxPool first, then the chain on the pooled tensor; the last op keeps the pool's output name.
  let current = b.op1('MaxPool', [value], { ...pool.attrs }, { name: pool.name });
  const pooled = current;
  chain.forEach((node, i) => {
    const out = i === chain.length - 1 ? pool.outputs[0] : b.fresh(node.outputs[0]);
    b.addNode({ ...node, inputs: [current, ...node.inputs.slice(1)], outputs: [out] });
    current = out;
  });
  redirectObservers(b, consumers, chain, value, tiles(graph, pool, value) ? pooled : value);
  return true;
}

/** Whether the pool's windows cover x exactly once (then max(x) = max(MaxPool(x)), read at a quarter of the size). */
function tiles(graph: Graph, pool: Node, x: string): boolean {
  const spatial = graph.typeOf(x).shape.slice(2);
  const kernel = attrInts(pool, 'kernel_shape', undefined);
  if (!kernel || spatial.some((d) => typeof d !== 'number')) return false;
  return windowsTile(resolveWindow(pool, spatial, kernel).window, spatial as number[]);
}

/**
 * Observers that watched chain[j]'s output now watch chain[0..j] applied to [min(x), max(x)] (per channel when
 * a quantizer of the chain is per-channel), which has the same min and max. `maxSource` is x, or the pooled x
 * when the windows tile x.
 */
function redirectObservers(b: GraphBuilder, consumers: Map<string, Node[]>, chain: Node[], x: string, maxSource: string): void {
  const watched = chain.map((n) => (consumers.get(n.outputs[0]) ?? []).filter((c) => c.opType === OBSERVER));
  if (watched.every((w) => !w.length)) return;
  const perChannel = chain.some((n) => n.opType === 'FakeQuantize' && n.attrs.axis);
  const rank = b.rank(x);
  const axes = [...Array(rank).keys()].filter((a) => !(perChannel && a === 1));
  const extreme = (op: string, v: string) => b.op1(op, [v], { axes, keepdims: 1 });
  let current = b.op1('Concat', [extreme('ReduceMin', x), extreme('ReduceMax', maxSource)], { axis: 0 });
  chain.forEach((node, j) => {
    current = b.addNode({ ...node, name: b.fresh(`${node.name}/extremes`), inputs: [current, ...node.inputs.slice(1)], outputs: [b.fresh(node.outputs[0])] }).outputs[0];
    for (const observer of watched[j]) observer.inputs[0] = current;
  });
}
