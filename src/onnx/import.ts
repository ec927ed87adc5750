import '../ops/index.js';
import { dtypeName } from '../ir/dtype.js';
import { Graph, Shape, ValueInfo } from '../ir/graph.js';
import { parameterLike, propagateShapes } from '../ir/partial-evaluate.js';
import { findOp, registeredOps } from '../ops/registry.js';
import { constantsToInitializers } from './constants.js';
import { inlineIf, listIfCaptures, subgraphNodes } from './inline-if.js';
import { loadModel } from './model-io.js';
import { INTERNAL_OPSET, MAX_IMPORT_OPSET, MIN_IMPORT_OPSET, normalizeNode, replacementOps } from './opset-normalize.js';
import { readableParameterNames } from './parameter-names.js';
import { addNote, IMPORT_NOTES_KEY, resolveInitializerCopies, retieEqualInitializers, TIED_KEY, TieRecord } from './tie-weights.js';

export { originalParameterName, PARAMETER_NAMES_KEY } from './parameter-names.js';
export type { TieRecord } from './tie-weights.js';

export { classifyInitializers } from './classify-initializers.js';
export type { InitializerClasses } from './classify-initializers.js';

export interface ImportOptions {
  /** Replaces the declared shape of graph inputs (same rank), e.g. to fix a symbolic batch: { input: [1, 1, 28, 28] }. */
  inputShapes?: Record<string, Shape>;
  /** Name of the model in error messages (default: the file name). */
  source?: string;
}

/**
 * Reads an ONNX model (opset 13..21) and returns a Graph ready for qatkit: every op known to the op table,
 * Constant nodes turned into initializers, ops rewritten to opset-17 conventions, shape computations that the
 * input shapes determine folded into constants (ir/partial-evaluate.ts), tied weights re-tied, exporter-made
 * parameter names replaced by module paths, nodes in topological order and the type of every value in
 * graph.types. What the importer changed is listed in graph.metadata (importNotes).
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
  const ifs = listIfCaptures(graph, source);
  // Older exporters list initializers among the graph inputs too (IR < 4 style); they are weights, not inputs.
  graph.inputs = graph.inputs.filter((v) => !graph.initializers.has(v.name));
  applyInputShapes(graph, options.inputShapes ?? {}, source);
  for (const [name, t] of graph.initializers) graph.types.set(name, { dtype: t.dtype, shape: t.dims });
  const notes: string[] = [];
  const readBefore = new Set(graph.nodes.flatMap((n) => n.inputs));
  resolveInitializerCopies(graph, notes);
  retieEqualInitializers(graph, parameterLike(graph), notes);
  normalizeFoldAndInfer(graph, opset, source, notes);
  if (ifs > 0) notes.push(`${ifs} If node(s) replaced by the branch the input shapes decide (torch.onnx.export's squeeze of a dim it could not prove static)`);
  dropUnusedInitializers(graph, readBefore);
  graph.outputs = graph.outputs.map((o) => reconcileOutput(graph, o, source));
  readableParameterNames(graph, [...parameterLike(graph), ...batchNormStatistics(graph)]);
  const domains = new Set(graph.nodes.map((n) => n.domain).filter((d) => d !== ''));
  graph.opsets = { '': INTERNAL_OPSET, ...Object.fromEntries([...domains].map((d) => [d, graph.opsets[d] ?? 1])) };
  for (const line of notes) addNote(graph, IMPORT_NOTES_KEY, line);
  return graph;
}

/** What the importer changed that a user should know (training-mode BN, re-tied weights, ...), one line each. */
export function importNotes(graph: Graph): string[] {
  return graph.metadata[IMPORT_NOTES_KEY] ? (JSON.parse(graph.metadata[IMPORT_NOTES_KEY]) as string[]) : [];
}

/** Weights the importer re-tied (a transposed LM-head copy) or found shared. */
export function tiedWeights(graph: Graph): TieRecord[] {
  return graph.metadata[TIED_KEY] ? (JSON.parse(graph.metadata[TIED_KEY]) as TieRecord[]) : [];
}

function batchNormStatistics(graph: Graph): string[] {
  return graph.nodes.filter((n) => n.opType === 'BatchNormalization').flatMap((n) => n.inputs.slice(3, 5)).filter((i) => graph.initializers.has(i));
}

/** Initializers that only nodes the import replaced read (a training-mode Dropout's ratio and mode). */
function dropUnusedInitializers(graph: Graph, readBefore: Set<string>): void {
  const used = new Set(graph.outputs.map((o) => o.name));
  for (const n of graph.nodes) for (const i of n.inputs) used.add(i);
  for (const name of [...graph.initializers.keys()]) {
    if (used.has(name) || !readBefore.has(name)) continue;
    graph.initializers.delete(name);
    graph.types.delete(name);
  }
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
    if (domain === '' && (opType === 'Constant' || opType === 'If')) return true; // If: inlined (inline-if.ts)
    if (findOp(domain, opType)) return true;
    const emitted = domain === '' ? replacementOps(opType, opset) : undefined;
    return !!emitted && emitted.every(([d, op]) => findOp(d, op));
  };
  const missing = new Map<string, string[]>();
  for (const n of [...graph.nodes, ...subgraphNodes(graph.nodes, source)]) {
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

/**
 * Normalises each node to opset 17, then infers its outputs and folds what the partial evaluator can evaluate,
 * in topological order (one pass: a rule that needs a constant input sees the folded value).
 */
function normalizeFoldAndInfer(graph: Graph, opset: number, source: string, notes: string[]): void {
  const ctx = { graph, opset, notes };
  propagateShapes(graph, {
    fold: true,
    expand: (node, valueOf) => (node.opType === 'If' && node.domain === '' ? inlineIf(graph, node, valueOf(node.inputs[0]), source) : undefined),
    rewrite: (node) => {
      try {
        return normalizeNode(node, ctx);
      } catch (e) {
        throw new Error(`${source}: cannot convert opset ${opset} to ${INTERNAL_OPSET}: ${(e as Error).message}`);
      }
    },
    inferError: (n, e) => new Error(`${source}: shape inference failed at node '${n.name}' (${n.opType}): ${e.message}`),
  });
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
