import { inferNode } from './builder';
import { Graph, topologicalOrder } from './graph';

/** Re-infers the type of every node output from the graph inputs and initializers (e.g. after fixing the batch size). */
export function inferTypes(graph: Graph): void {
  const kept = new Map<string, ReturnType<Graph['typeOf']>>();
  for (const v of graph.inputs) kept.set(v.name, { dtype: v.dtype, shape: v.shape });
  for (const [name, t] of graph.initializers) kept.set(name, { dtype: t.dtype, shape: t.dims });
  graph.types = kept;
  for (const node of topologicalOrder(graph)) {
    const types = inferNode(graph, node);
    node.outputs.forEach((o, i) => {
      if (o && types[i]) graph.types.set(o, types[i]);
    });
  }
  for (const out of graph.outputs) {
    const t = graph.types.get(out.name);
    if (t) Object.assign(out, t);
  }
}

/** Turns initializers into graph inputs (so the trainer can feed updated values each step). */
export function initializersToInputs(graph: Graph, names: string[]): void {
  for (const name of names) {
    const t = graph.initializers.get(name);
    if (!t) throw new Error(`'${name}' is not an initializer of graph '${graph.name}'`);
    graph.initializers.delete(name);
    graph.inputs.push({ name, dtype: t.dtype, shape: [...t.dims] });
    graph.types.set(name, { dtype: t.dtype, shape: [...t.dims] });
  }
}
