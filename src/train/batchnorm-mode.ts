import { GraphBuilder, inferNode } from '../ir/builder.js';
import { Graph, Node } from '../ir/graph.js';
import '../ops/norm.js';

/** Names of one batch norm's running statistics: the graph values fed in and the updated ones to fetch. */
export interface RunningStatNames {
  mean: string;
  var: string;
  newMean: string;
  newVar: string;
}

/**
 * A copy of `graph` in which every inference-form ONNX BatchNormalization uses batch statistics: each is
 * replaced, in place, by an ai.qatkit BatchNormTrain node that keeps the original Y name and adds the
 * batch mean / 1/std (saved for the gradient) and the updated running statistics, which become graph
 * outputs so the trainer can fetch them and feed them back as the next step's running statistics.
 * Going back to inference mode needs nothing: the original graph is untouched.
 */
export function toTrainingBatchNorm(graph: Graph): { graph: Graph; runningStats: RunningStatNames[] } {
  const out = graph.clone();
  const b = new GraphBuilder(out, 'bn_train/');
  const runningStats: RunningStatNames[] = [];
  const producers = out.producers();
  const consumers = out.consumers();
  const fused = new Set<Node>();
  out.nodes = out.nodes.map((node) => {
    if (node.opType !== 'BatchNormalization' || (node.domain !== '' && node.domain !== 'ai.onnx')) return node;
    if (node.inputs.length < 5 || node.inputs.slice(0, 5).some((i) => !i)) {
      throw new Error(`node '${node.name}' (BatchNormalization) needs all five inputs (X, scale, B, input_mean, input_var), got [${node.inputs}]`);
    }
    const y = node.outputs[0];
    const [mean, variance] = [node.inputs[3], node.inputs[4]];
    const unscale = foldedUnscale(out, producers, consumers, node, fused);
    const train: Node = {
      opType: 'BatchNormTrain',
      domain: 'ai.qatkit',
      name: `${node.name}/train`,
      inputs: unscale ? [unscale.x, ...node.inputs.slice(1, 5), unscale.scale] : node.inputs.slice(0, 5),
      outputs: [y, b.fresh(`${y}_batch_mean`), b.fresh(`${y}_batch_inv_std`), b.fresh(`${mean}_new`), b.fresh(`${variance}_new`)],
      attrs: Object.fromEntries(Object.entries(node.attrs).filter(([k]) => k === 'epsilon' || k === 'momentum')),
    };
    inferNode(out, train).forEach((t, i) => out.types.set(train.outputs[i], t));
    const stats = { mean, var: variance, newMean: train.outputs[3], newVar: train.outputs[4] };
    for (const v of [stats.newMean, stats.newVar]) out.outputs.push({ name: v, ...out.typeOf(v) });
    runningStats.push(stats);
    return train;
  });
  out.nodes = out.nodes.filter((n) => !fused.has(n));
  if (runningStats.length > 0) out.opsets['ai.qatkit'] = out.opsets['ai.qatkit'] ?? 1;
  return { graph: out, runningStats };
}

/**
 * BN folding for QAT leaves Conv(x, W * gamma / sigma) / (gamma / sigma) in front of the BN (see
 * quant/fold-batchnorm.ts). In training the division is taken into BatchNormTrain's input_scale, which
 * normalises X / c without writing it: one full-size Div forward and three passes backward fewer, same values.
 * Matches X = [Identity of] Div(v, d) with d per channel ([1, C, 1, ...]) and no other reader on the way.
 */
function foldedUnscale(graph: Graph, producers: Map<string, Node>, consumers: Map<string, Node[]>, bn: Node, fused: Set<Node>) {
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const path: Node[] = [];
  let value = bn.inputs[0];
  let reader = bn;
  for (;;) {
    const readers = consumers.get(value) ?? [];
    if (readers.length !== 1 || readers[0] !== reader || outputs.has(value)) return undefined;
    const producer = producers.get(value);
    if (!producer || producer.domain !== '') return undefined;
    path.push(producer);
    if (producer.opType === 'Div') break;
    if (producer.opType !== 'Identity') return undefined;
    reader = producer;
    value = producer.inputs[0];
  }
  const div = path[path.length - 1];
  const [x, divisor] = div.inputs;
  const xShape = graph.typeOf(x).shape;
  const dShape = graph.typeOf(divisor).shape;
  const perChannel = dShape.length === xShape.length && dShape.every((d, i) => (i === 1 ? d === xShape[1] : d === 1));
  if (!perChannel || typeof xShape[1] !== 'number') return undefined;
  for (const n of path) fused.add(n);
  return { x, scale: divisor };
}
