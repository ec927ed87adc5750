import { GraphBuilder } from '../ir/builder';
import { Graph, Node } from '../ir/graph';
import { opDef } from '../ops/registry';

/**
 * Expands every custom-domain node (ai.qatkit) into standard ONNX ops, in place order, repeatedly until
 * none is left (a lowering may emit other custom ops). Returns a new graph; the input is not modified.
 */
export function lowerCustomOps(graph: Graph): Graph {
  let g = graph;
  for (let round = 0; round < 8; round++) {
    if (!g.nodes.some((n) => n.domain !== '')) return g;
    const out = g.clone();
    out.nodes = [];
    const b = new GraphBuilder(out, `lower${round}/`);
    for (const n of g.nodes) {
      if (n.domain === '') out.nodes.push(n);
      else lowerOne(n, b);
    }
    g = out;
  }
  const left = g.nodes.filter((n) => n.domain !== '').map((n) => `${n.name} (${n.domain}.${n.opType})`);
  throw new Error(`custom ops left after lowering: ${left.join(', ')}`);
}

function lowerOne(node: Node, b: GraphBuilder): void {
  const def = opDef(node);
  if (!def.lower) throw new Error(`custom op ${node.domain}.${node.opType} at node '${node.name}' has no lowering`);
  def.lower(node, b);
}
