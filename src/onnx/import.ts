import '../ops';
import { inferNode } from '../ir/builder';
import { dtypeName } from '../ir/dtype';
import { Graph, Node, Shape, ValueInfo, topologicalOrder } from '../ir/graph';
import { findOp, registeredOps } from '../ops/registry';
import { constantsToInitializers } from './constants';
import { loadModel } from './model-io';
import { INTERNAL_OPSET, MAX_IMPORT_OPSET, MIN_IMPORT_OPSET, normalizeNode, replacementOps } from './opset-normalize';

export { classifyInitializers } from './classify-initializers';
export type { InitializerClasses } from './classify-initializers';

export interface ImportOptions {
  /** Replaces the declared shape of graph inputs (same rank), e.g. to fix a symbolic batch: { input: [1, 1, 28, 28] }. */
  inputShapes?: Record<string, Shape>;
  /** Name of the model in error messages (default: the file name). */
  source?: string;
}

/**
 * Reads an ONNX model (opset 13..21) and returns a Graph ready for qatkit: every op known to the op table,
 * Constant nodes turned into initializers, ops rewritten to opset-17 conventions, nodes in topological
 * order and the type of every value in graph.types.
 */
export function importModel(file: string, options: ImportOptions = {}): Graph {
  return prepareImportedGraph(loadModel(file), { source: file, ...options });
}

/** importModel for a graph already decoded (e.g. by decodeModel); modifies and returns `graph`. */
export function prepareImportedGraph(graph: Graph, options: ImportOptions = {}): Graph {
  const source = options.source ?? graph.name;
  const opset = checkOpset(graph, source);
  checkSupportedOps(graph, opset, source);
  constantsToInitializers(graph);
  applyInputShapes(graph, options.inputShapes ?? {}, source);
  for (const [name, t] of graph.initializers) graph.types.set(name, { dtype: t.dtype, shape: t.dims });
  graph.nodes = normalizeAndInfer(graph, opset, source);
  graph.outputs = graph.outputs.map((o) => reconcileOutput(graph, o, source));
  const domains = new Set(graph.nodes.map((n) => n.domain).filter((d) => d !== ''));
  graph.opsets = { '': INTERNAL_OPSET, ...Object.fromEntries([...domains].map((d) => [d, graph.opsets[d] ?? 1])) };
  return graph;
}

function checkOpset(graph: Graph, source: string): number {
  const opset = graph.opsets[''];
  const range = `qatkit imports opsets ${MIN_IMPORT_OPSET} to ${MAX_IMPORT_OPSET}`;
  if (opset === undefined) throw new Error(`${source}: the model imports no default-domain (ai.onnx) opset; ${range}`);
  if (opset < MIN_IMPORT_OPSET || opset > MAX_IMPORT_OPSET) {
    throw new Error(`${source}: opset ${opset} is not supported; ${range} (re-export the model with one of them)`);
  }
  return opset;
}

/** Throws ONE error listing every op type the op table lacks, with the names of the nodes that use it. */
export function checkSupportedOps(graph: Graph, opset: number, source = graph.name): void {
  const supported = (domain: string, opType: string): boolean => {
    if (domain === '' && opType === 'Constant') return true;
    if (findOp(domain, opType)) return true;
    const emitted = domain === '' ? replacementOps(opType, opset) : undefined;
    return !!emitted && emitted.every(([d, op]) => findOp(d, op));
  };
  const missing = new Map<string, string[]>();
  for (const n of graph.nodes) {
    if (supported(n.domain, n.opType)) continue;
    const key = n.domain ? `${n.domain}.${n.opType}` : n.opType;
    missing.set(key, [...(missing.get(key) ?? []), n.name]);
  }
  if (missing.size === 0) return;
  const lines = [...missing].map(([op, nodes]) => `  ${op}: ${nodes.map((s) => `'${s}'`).join(', ')}`);
  const known = registeredOps()
    .map((d) => (d.domain ? `${d.domain}.${d.opType}` : d.opType))
    .sort()
    .join(', ');
  throw new Error(
    `${source}: ${missing.size} op type(s) not supported by qatkit (op type: nodes):\n${lines.join('\n')}\n` +
      `supported ops: Constant, ${known}`,
  );
}

function applyInputShapes(graph: Graph, shapes: Record<string, Shape>, source: string): void {
  for (const [name, shape] of Object.entries(shapes)) {
    const input = graph.inputs.find((v) => v.name === name);
    if (!input) throw new Error(`${source}: inputShapes names '${name}', not a graph input; inputs: ${graph.inputs.map((v) => v.name).join(', ')}`);
    if (shape.length !== input.shape.length) {
      throw new Error(`${source}: inputShapes['${name}'] = [${shape}] has rank ${shape.length}, the input has rank ${input.shape.length} ([${input.shape}])`);
    }
    input.shape = [...shape];
    graph.types.set(name, { dtype: input.dtype, shape: input.shape });
  }
}

/** Normalises each node to opset 17 and infers its outputs, in topological order; returns the new node list. */
function normalizeAndInfer(graph: Graph, opset: number, source: string): Node[] {
  const ctx = { graph, opset };
  const out: Node[] = [];
  for (const node of topologicalOrder(graph)) {
    let replaced: Node[];
    try {
      replaced = normalizeNode(node, ctx);
    } catch (e) {
      throw new Error(`${source}: cannot convert opset ${opset} to ${INTERNAL_OPSET}: ${(e as Error).message}`);
    }
    for (const n of replaced) {
      let types;
      try {
        types = inferNode(graph, n);
      } catch (e) {
        throw new Error(`${source}: shape inference failed at node '${n.name}' (${n.opType}): ${(e as Error).message}`);
      }
      n.outputs.forEach((o, i) => {
        if (o && types[i]) graph.types.set(o, types[i]);
      });
      out.push(n);
    }
  }
  return out;
}

/** The inferred type of a graph output, checked against (and completed by) the declared one. */
function reconcileOutput(graph: Graph, declared: ValueInfo, source: string): ValueInfo {
  const inferred = graph.types.get(declared.name);
  if (!inferred) throw new Error(`${source}: graph output '${declared.name}' is produced by no node`);
  const what = `${source}: graph output '${declared.name}'`;
  if (inferred.dtype !== declared.dtype) {
    throw new Error(`${what} is declared ${dtypeName[declared.dtype]} but computes ${dtypeName[inferred.dtype]}`);
  }
  // A declared rank of 0 is also what a missing shape decodes to: trust inference then.
  if (declared.shape.length === 0) return { name: declared.name, ...inferred };
  if (declared.shape.length !== inferred.shape.length) {
    throw new Error(`${what} is declared [${declared.shape}] but computes [${inferred.shape}]`);
  }
  const shape = inferred.shape.map((d, i) => {
    const e = declared.shape[i];
    if (typeof d === 'number' && typeof e === 'number' && d !== e) {
      throw new Error(`${what} is declared [${declared.shape}] but computes [${inferred.shape}]`);
    }
    return typeof d === 'string' && typeof e === 'number' ? e : d;
  });
  graph.types.set(declared.name, { dtype: inferred.dtype, shape });
  return { name: declared.name, dtype: inferred.dtype, shape };
}
