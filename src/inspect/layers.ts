import { Graph, Node } from '../ir/graph.js';
import { scopeOf } from '../onnx/parameter-names.js';

/** A layer with a weight, as every form of a model (fp32, QAT, fake-quant, exported) has it. */
export interface LayerSite {
  /** The readable name: the node's module scope ('/blocks.0/attn/qkv/MatMul' -> 'blocks.0.attn.qkv') or its name. */
  name: string;
  node: Node;
  /** The node's input that is computed from initializers alone (the weight as the layer reads it). */
  weight: string;
  /** Every initializer that weight (and the bias) is computed from: codes, scales, zero points, BN statistics. */
  weightInitializers: string[];
  bias?: string;
  /** The activation input (the embedding's indices for a Gather) and the output. */
  input: string;
  output: string;
}

/** Ops whose weight operand makes them a layer, and which input holds the weight (and the activation). */
const WEIGHT_INPUT: Record<string, { weight: number; input: number; bias?: number }> = {
  Conv: { weight: 1, input: 0, bias: 2 },
  ConvTranspose: { weight: 1, input: 0, bias: 2 },
  Gemm: { weight: 1, input: 0, bias: 2 },
  MatMul: { weight: 1, input: 0 },
  Gather: { weight: 0, input: 1 },
  // Integer forms in exported files and in ORT's optimized models.
  ConvInteger: { weight: 1, input: 0 },
  MatMulInteger: { weight: 1, input: 0 },
  QLinearConv: { weight: 3, input: 0, bias: 8 },
  QLinearMatMul: { weight: 3, input: 0 },
  QGemm: { weight: 3, input: 0, bias: 6 },
  MatMulNBits: { weight: 1, input: 0, bias: 5 },
  MatMulIntegerToFloat: { weight: 1, input: 0 },
  DynamicQuantizeMatMul: { weight: 1, input: 0, bias: 4 },
  GatherBlockQuantized: { weight: 0, input: 1 },
  FusedConv: { weight: 1, input: 0, bias: 2 },
  FusedGemm: { weight: 1, input: 0, bias: 2 },
  FusedMatMul: { weight: 1, input: 0 },
};

export const LAYER_OPS = new Set(Object.keys(WEIGHT_INPUT));

/** The readable name of a layer node: torch's module scope, or the node name without a trailing '/<OpType>'. */
export function layerName(node: Node): string {
  const scope = scopeOf(node.name);
  if (scope) return scope;
  const parts = node.name.split('/');
  // The tail may name another layer op: an export that rewrote 'qkv/MatMul' into MatMulIntegerToFloat keeps 'qkv/MatMulInteger'.
  const tail = parts.at(-1)!.toLowerCase();
  const opTail = tail === node.opType.toLowerCase() || [...LAYER_OPS].some((op) => op.toLowerCase() === tail);
  // A top-level functional op ('/MatMul': F.linear in forward itself) has no scope: its node name is all there is.
  const stem = parts.length > 1 && opTail ? parts.slice(0, -1).join('/') : '';
  return stem || node.name || `${node.opType} -> ${node.outputs[0]}`;
}

/**
 * For each value, the initializers it is computed from, or undefined when it depends on a graph input (an
 * activation). A weight is a value with such a set: an initializer, its dequantization, its fake quantization.
 */
export function constantCones(graph: Graph): Map<string, string[] | undefined> {
  const cones = new Map<string, string[] | undefined>();
  for (const name of graph.initializers.keys()) cones.set(name, [name]);
  for (const v of graph.inputs) cones.set(v.name, undefined);
  const producers = graph.producers();
  const visit = (value: string, depth = 0): string[] | undefined => {
    if (cones.has(value)) return cones.get(value);
    const node = producers.get(value);
    if (!node || depth > 10_000) {
      cones.set(value, undefined);
      return undefined;
    }
    cones.set(value, undefined); // a cycle (invalid graph) reads as an activation
    const inits = new Set<string>();
    let constant = true;
    for (const i of node.inputs.filter(Boolean)) {
      const c = visit(i, depth + 1);
      if (!c) constant = false;
      else for (const x of c) inits.add(x);
    }
    // A node without inputs (Constant) is constant; attribute tensors are not initializers.
    const cone = constant ? [...inits] : undefined;
    for (const o of node.outputs) cones.set(o, cone);
    return cone;
  };
  for (const n of graph.nodes) for (const o of n.outputs) visit(o);
  return cones;
}

/** Every layer of the graph: a Conv / Gemm / MatMul / Gather (or an integer form of one) reading a weight. */
export function findLayers(graph: Graph): LayerSite[] {
  const cones = constantCones(graph);
  const layers: LayerSite[] = [];
  for (const node of graph.nodes) {
    const at = WEIGHT_INPUT[node.opType];
    if (!at) continue;
    const weight = node.inputs[at.weight];
    const input = node.inputs[at.input];
    const weightCone = weight ? cones.get(weight) : undefined;
    // The activation side must be an activation: MatMul(constant, x) or a constant-folded product is no layer.
    if (!weightCone || weightCone.length === 0 || !input || cones.get(input)) continue;
    const bias = at.bias !== undefined && node.inputs[at.bias] && cones.get(node.inputs[at.bias]) ? node.inputs[at.bias] : undefined;
    const inits = new Set([...weightCone, ...(bias ? cones.get(bias)! : [])]);
    layers.push({ name: layerName(node), node, weight, weightInitializers: [...inits], bias, input, output: node.outputs[0] });
  }
  return layers;
}
