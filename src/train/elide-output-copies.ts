import { Graph } from '../ir/graph.js';

/**
 * Drops the Identity nodes that only give a computed value its graph-output name (`w/next`, `adam_m/w/next`, ...):
 * the producer writes under the output's name instead. ORT keeps such an Identity as a full copy (LeNet's
 * fc0 optimizer state: two 1.6 MB copies per step). Skipped where the value is itself a graph input, initializer
 * or graph output, or where an earlier Identity already took its name. Returns how many were removed.
 */
export function elideOutputCopies(graph: Graph): number {
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const producers = graph.producers();
  const renames = new Map<string, string>();
  const dropped = new Set<object>();
  for (const node of graph.nodes) {
    if (node.opType !== 'Identity' || node.domain) continue;
    const [source] = node.inputs;
    const [target] = node.outputs;
    if (!graphOutputs.has(target) || graphOutputs.has(source) || !producers.has(source) || renames.has(source)) continue;
    renames.set(source, target);
    dropped.add(node);
  }
  if (!renames.size) return 0;
  graph.nodes = graph.nodes.filter((n) => !dropped.has(n));
  const rename = (v: string) => renames.get(v) ?? v;
  for (const node of graph.nodes) {
    node.inputs = node.inputs.map(rename);
    node.outputs = node.outputs.map(rename);
  }
  return renames.size;
}
