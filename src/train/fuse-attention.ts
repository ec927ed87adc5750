import { GraphBuilder } from '../ir/builder.js';
import { attrInt, attrInts, Graph, Node } from '../ir/graph.js';

const QATKIT = 'ai.qatkit';

/**
 * Replaces each attention core of a training step, MatMul(softmax(Q K^T [+ Mask]), V) with the softmax over the
 * last axis, by ai.qatkit.SoftmaxAttention (src/ops/softmax.ts). Its gradient rule takes the softmax backward's
 * row sums from dO * O ([..., T, E]) instead of dP * P ([..., T, S]), and writes dK as dS^T Q directly, so ORT
 * never transposes dK^T back. Forward values are unchanged (the op lowers to the same standard ops). Matched
 * only where the scores, masked scores and probabilities have no other consumer; K^T must be a Transpose of
 * the last two axes (as the transformer builder and torch.onnx.export write k.transpose(-2, -1)).
 */
export function fuseSoftmaxAttention(graph: Graph): number {
  const producers = graph.producers();
  const consumers = graph.consumers();
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const b = new GraphBuilder(graph, 'attention/');
  const sole = (value: string, node: Node) => {
    const list = consumers.get(value) ?? [];
    return list.length === 1 && list[0] === node && !graphOutputs.has(value);
  };
  const replace = new Map<Node, Node>();
  const remove = new Set<Node>();
  for (const softmax of graph.nodes) {
    if (softmax.opType !== 'Softmax' || softmax.domain !== '' || (graph.opsets[''] ?? 17) < 13) continue;
    const rank = graph.typeOf(softmax.inputs[0]).shape.length;
    const axis = attrInt(softmax, 'axis', -1);
    if (rank < 3 || (axis !== -1 && axis !== rank - 1)) continue;
    const pv = (consumers.get(softmax.outputs[0]) ?? [])[0];
    if (!pv || pv.opType !== 'MatMul' || pv.inputs[0] !== softmax.outputs[0] || !sole(softmax.outputs[0], pv)) continue;
    let scores = softmax.inputs[0];
    let mask: string | undefined;
    let maskAdd: Node | undefined;
    const add = producers.get(scores);
    if (add?.opType === 'Add' && sole(scores, softmax)) {
      const qk = add.inputs.findIndex((v) => producers.get(v)?.opType === 'MatMul');
      if (qk < 0) continue;
      [scores, mask, maskAdd] = [add.inputs[qk], add.inputs[1 - qk], add];
    }
    const product = producers.get(scores);
    if (!product || product.opType !== 'MatMul' || !sole(scores, maskAdd ?? softmax)) continue;
    const kt = producers.get(product.inputs[1]);
    if (!kt || kt.opType !== 'Transpose') continue;
    const perm = attrInts(kt, 'perm', undefined);
    const swapsLast = perm?.length === rank && perm.every((p, i) => (i < rank - 2 ? p === i : p === (i === rank - 2 ? rank - 1 : rank - 2)));
    if (!swapsLast) continue;
    const [q, k, v] = [product.inputs[0], kt.inputs[0], pv.inputs[1]];
    if ([q, k, v].some((x) => graph.typeOf(x).shape.length !== rank)) continue;
    const probabilities = b.fresh(`${softmax.name}/probabilities`);
    graph.types.set(probabilities, graph.typeOf(softmax.outputs[0]));
    replace.set(pv, {
      opType: 'SoftmaxAttention',
      domain: QATKIT,
      name: `${softmax.name}/attention`,
      inputs: mask ? [q, k, v, mask] : [q, k, v],
      outputs: [pv.outputs[0], probabilities],
      attrs: {},
    });
    for (const n of [product, softmax, ...(maskAdd ? [maskAdd] : [])]) remove.add(n);
    // K^T stays when something else reads it.
    if (sole(kt.outputs[0], product)) remove.add(kt);
  }
  graph.nodes = graph.nodes.flatMap((n) => (replace.has(n) ? [replace.get(n)!] : remove.has(n) ? [] : [n]));
  return replace.size;
}
