import { inferNode } from './builder.js';
import { asDims, canEvaluate, evaluateNode, EvalValue, fromTensor, isSymbolic, shapeOfDims, toTensor } from './constant-kernels.js';
import { DType, isFloat } from './dtype.js';
import { Graph, Node, topologicalOrder, ValueType } from './graph.js';
import { sizeOf, Tensor } from './tensor.js';
import { isRotaryTable } from './rotary-table.js';
import { findOp } from '../ops/registry.js';

// The partial evaluator (DESIGN.md, "Language models"): PyTorch computes shapes at run time (Shape -> Gather ->
// Unsqueeze -> Concat -> Reshape, Slice ends from Shape, masks from ConstantOfShape + Trilu). Once the graph
// inputs' shapes are known, every node whose inputs are constants, or whose value follows from known dims
// (Shape of a value with static dims), is evaluated and folded into an initializer, so Reshape/Slice/Expand/
// Tile/Range read constants. Where dims stay symbolic (batch, sequence), the node stays for ONNX Runtime, and
// its value is kept element-wise in graph.shapeValues (Shape of [N, T, 4] is ['N', 'T', 4]; gathered at 2 it is
// the constant 4), which shape inference reads to give Reshape etc. exact output dims.
//
// Parameters are never folded: a node reading a float initializer through which gradients reach an output
// (Transpose(W) of a tied LM head) stays, or training would untie it.

/** Largest folded tensor (elements): masks up to 1024 x 1024; anything larger stays a run-time computation. */
export const MAX_FOLD_ELEMENTS = 1 << 20;
/**
 * graph.metadata key listing the float initializers the evaluator made (a folded attention mask): constants, not
 * parameters, although gradients could reach them; kept in metadata so that it survives saving the model.
 */
export const FOLDED_CONSTANTS_KEY = 'qatkit.folded_constants';

/**
 * Float buffers that multiply activations and so look like parameters to gradientReach, recognised by the names
 * torch models give them (rotary-embedding frequency and cos/sin tables): constants, and foldable once T is known.
 * ONNX has no other mark of a buffer (register_buffer and nn.Parameter both export as initializers).
 */
const BUFFER_NAME = /(^|[./])(inv_freq|cos_cached|sin_cached|cos_cache|sin_cache|freqs_cis)$/;
export const isBufferName = (name: string): boolean => BUFFER_NAME.test(name);
/** A buffer by its name, or a rotary table by its values (rotary-table.ts: anonymous `onnx::Slice_N` caches). */
export const isBuffer = (name: string, t: Tensor): boolean => isBufferName(name) || isRotaryTable(t);

/** Float initializers the partial evaluator folded (see FOLDED_CONSTANTS_KEY). */
export function foldedConstants(graph: Graph): Set<string> {
  const list = graph.metadata[FOLDED_CONSTANTS_KEY];
  return new Set(list ? (JSON.parse(list) as string[]) : []);
}

/** Largest value kept element-wise for shape inference. */
const MAX_SHAPE_VALUE = 64;

export interface PropagateOptions {
  /** Replace evaluated nodes by initializers (true) or only record shape values (false: inferTypes). */
  fold: boolean;
  /** Values that are never folded into constants (default: parameterLike(graph)). */
  protect?: Set<string>;
  /** Rewrites each node before it is inferred (import: opset normalisation); inputs are typed by then. */
  rewrite?: (node: Node) => Node[];
  /**
   * Replaces a node by others before it is rewritten and inferred, given the values known so far (import: an If
   * whose condition has been folded becomes its branch); each returned node is expanded, rewritten and inferred
   * in turn. Undefined: the node stays.
   */
  expand?: (node: Node, valueOf: (name: string) => EvalValue | undefined) => Node[] | undefined;
  /** Wraps a shape inference error (import names the model). */
  inferError?: (node: Node, error: Error) => Error;
}

export interface PropagateResult {
  /** Nodes replaced by initializers. */
  folded: number;
}

/**
 * Infers every value's type in topological order, evaluating what can be evaluated (see the file comment).
 * With `fold`, evaluated nodes become initializers (same value names) and initializers left unused by that are
 * removed; graph.nodes ends in topological order.
 */
export function propagateShapes(graph: Graph, options: PropagateOptions): PropagateResult {
  // Without folding only small integer values are evaluated, which no parameter feeds.
  const protect = options.protect ?? (options.fold ? parameterLike(graph) : new Set<string>());
  graph.types = new Map();
  for (const v of graph.inputs) graph.types.set(v.name, { dtype: v.dtype, shape: v.shape });
  for (const [name, t] of graph.initializers) graph.types.set(name, { dtype: t.dtype, shape: t.dims });
  graph.shapeValues = new Map();
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const known = new Map<string, EvalValue>();
  const initializerValues = new Map<string, EvalValue | undefined>();
  const valueOf = (name: string): EvalValue | undefined => {
    const k = known.get(name);
    if (k) return k;
    const t = graph.initializers.get(name);
    if (!t || t.size > MAX_FOLD_ELEMENTS) return undefined;
    if (!initializerValues.has(name)) initializerValues.set(name, fromTensor(t));
    return initializerValues.get(name);
  };
  const folded = new Set<string>();
  const readByFolded = new Set<string>();
  const kept: Node[] = [];
  let count = 0;

  const visit = (node: Node) => {
    let types: ValueType[];
    try {
      types = inferNode(graph, node);
    } catch (e) {
      throw options.inferError ? options.inferError(node, e as Error) : e;
    }
    node.outputs.forEach((o, i) => {
      if (o && types[i]) graph.types.set(o, types[i]);
    });
    const values = evaluate(node, types);
    if (values && options.fold && values.every((v) => !isSymbolic(v)) && !node.outputs.some((o) => graphOutputs.has(o))) {
      node.outputs.forEach((o, i) => {
        if (!o) return;
        const t = toTensor(values[i]);
        graph.initializers.set(o, t);
        graph.types.set(o, { dtype: t.dtype, shape: t.dims });
        folded.add(o);
      });
      for (const i of node.inputs) if (i) readByFolded.add(i);
      count++;
      return;
    }
    if (values) {
      node.outputs.forEach((o, i) => {
        const v = values[i];
        if (!o || !v || sizeOf(v.dims) > MAX_SHAPE_VALUE) return;
        known.set(o, v);
        if (v.dtype === DType.INT64 || v.dtype === DType.INT32) graph.shapeValues.set(o, asDims(v));
      });
    }
    kept.push(node);
  };

  const evaluate = (node: Node, types: ValueType[]): EvalValue[] | undefined => {
    if (!canEvaluate(node)) return undefined;
    const limit = options.fold ? MAX_FOLD_ELEMENTS : MAX_SHAPE_VALUE;
    for (const t of types) {
      if (t.shape.some((d) => typeof d !== 'number') || sizeOf(t.shape as number[]) > limit) return undefined;
      if (!options.fold && isFloat(t.dtype)) return undefined;
    }
    if (node.opType === 'Shape' || node.opType === 'Size') {
      const x = graph.typeOf(node.inputs[0]);
      if (node.opType === 'Size') return x.shape.every((d) => typeof d === 'number') ? [{ dtype: DType.INT64, dims: [], data: [BigInt(sizeOf(x.shape as number[]))] }] : undefined;
      return [shapeOfDims(node, x.shape)];
    }
    if (node.inputs.some((i) => protect.has(i))) return undefined;
    const inputs: (EvalValue | undefined)[] = [];
    for (const name of node.inputs) {
      if (!name) {
        inputs.push(undefined);
        continue;
      }
      const v = valueOf(name);
      if (!v) return undefined;
      inputs.push(v);
    }
    return evaluateNode(node, inputs);
  };

  const process = (node: Node): void => {
    const expanded = options.expand?.(node, valueOf);
    if (expanded) for (const n of expanded) process(n);
    else for (const n of options.rewrite ? options.rewrite(node) : [node]) visit(n);
  };
  for (const node of topologicalOrder(graph)) process(node);
  if (options.fold || options.rewrite) graph.nodes = kept;
  if (count > 0) {
    // Shape computations that only fed folded nodes (Shape of a value with a symbolic batch, gathered at a
    // static axis) are dead now.
    const used = new Set<string>([...graphOutputs]);
    const live: Node[] = [];
    for (let k = kept.length - 1; k >= 0; k--) {
      const n = kept[k];
      if (canEvaluate(n) && !n.outputs.some((o) => o && used.has(o))) {
        for (const o of n.outputs) graph.shapeValues.delete(o);
        continue;
      }
      for (const i of n.inputs) used.add(i);
      live.push(n);
    }
    graph.nodes = live.reverse();
    for (const name of [...folded, ...readByFolded]) {
      if (!used.has(name) && graph.initializers.has(name) && !graph.inputs.some((v) => v.name === name)) {
        graph.initializers.delete(name);
        graph.types.delete(name);
      }
    }
  }
  if (count > 0) {
    const constants = foldedConstants(graph);
    for (const name of folded) if (isFloat(graph.initializers.get(name)?.dtype ?? DType.INT64)) constants.add(name);
    const kept = [...constants].filter((n) => graph.initializers.has(n));
    if (kept.length) graph.metadata[FOLDED_CONSTANTS_KEY] = JSON.stringify(kept);
    else delete graph.metadata[FOLDED_CONSTANTS_KEY];
  }
  for (const out of graph.outputs) {
    const t = graph.types.get(out.name);
    if (t) Object.assign(out, t);
  }
  return { folded: count };
}

/**
 * Folds every shape computation the graph's input shapes determine (see the file comment) and re-infers all
 * types: call after fixing input dims (the training batch and sequence length). Returns the number of nodes folded.
 */
export function foldShapeComputations(graph: Graph): number {
  return propagateShapes(graph, { fold: true }).folded;
}

/**
 * Values from which a gradient can reach a graph output: through inputs that the op's gradient rule
 * differentiates. Ops without a gradient rule (Shape, Equal, ...) and non-differentiable inputs (indices, shapes)
 * stop it; ops missing from the op table count as differentiable everywhere.
 */
export function gradientReach(graph: Graph): Set<string> {
  const reach = new Set(graph.outputs.map((o) => o.name));
  const order = topologicalOrder(graph);
  for (let k = order.length - 1; k >= 0; k--) {
    const node = order[k];
    if (!node.outputs.some((o) => o && reach.has(o))) continue;
    const def = findOp(node.domain, node.opType);
    if (def && !def.vjp) continue;
    const blocked = new Set(def?.nonDifferentiable ?? []);
    node.inputs.forEach((name, i) => {
      if (name && !blocked.has(i)) reach.add(name);
    });
  }
  return reach;
}

/**
 * Float initializers (more than one element) through which a gradient can reach a graph output: learned
 * weights, never folded. A buffer read only through non-differentiable paths (a causal-mask table compared
 * with Equal, a shape, indices) is not one, nor is a value the evaluator folded (FOLDED_CONSTANTS_KEY) or a
 * rotary table (isBuffer).
 */
export function parameterLike(graph: Graph): Set<string> {
  const reach = gradientReach(graph);
  const constants = foldedConstants(graph);
  const out = new Set<string>();
  for (const [name, t] of graph.initializers) {
    if (reach.has(name) && isFloat(t.dtype) && t.size > 1 && !constants.has(name) && !isBuffer(name, t)) out.add(name);
  }
  return out;
}
