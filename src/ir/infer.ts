import { Graph } from './graph.js';
import { propagateShapes } from './partial-evaluate.js';

/**
 * Re-infers the type of every node output from the graph inputs and initializers (e.g. after fixing the batch
 * size). Shape computations are evaluated where they can be (graph.shapeValues) but nothing is folded; to fold
 * them into constants use foldShapeComputations (ir/partial-evaluate.ts).
 */
export function inferTypes(graph: Graph): void {
  propagateShapes(graph, { fold: false });
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
