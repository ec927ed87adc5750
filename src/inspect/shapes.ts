import { inferNode } from '../ir/builder.js';
import { Graph, Shape, topologicalOrder } from '../ir/graph.js';
import { propagateShapes } from '../ir/partial-evaluate.js';
import { constantsToInitializers } from '../onnx/constants.js';
import { normalizeNode } from '../onnx/opset-normalize.js';
import '../ops/index.js';
import '../quant/index.js';

/**
 * The shape of every value a file lets us know, for display only: each node's shapes from qatkit's own inference
 * where it has a rule, and for the quantization ops it does not implement (QuantizeLinear, DequantizeLinear and
 * ORT's contrib ops) the shape rule of the ONNX spec or of the contrib-op docs. A value whose shape cannot be
 * inferred is left out (shown as '?'), never guessed; nothing here may refuse a file.
 */
export function valueShapes(source: Graph): Map<string, Shape> {
  // First the import's inference, which also evaluates shape computations (PyTorch's Shape -> Gather -> Concat ->
  // Reshape) so that a traced transformer's activations get shapes; where it refuses a node, node by node below.
  try {
    const whole = source.clone();
    constantsToInitializers(whole);
    const ctx = { graph: whole, opset: whole.opsets[''] ?? 17, notes: [] as string[] };
    propagateShapes(whole, { fold: false, rewrite: (node) => normalizeNode(node, ctx) });
    return new Map([...whole.types].map(([name, t]) => [name, t.shape]));
  } catch {
    // an op without a qatkit rule (QuantizeLinear, contrib ops): the per-node pass
  }
  const graph = source.clone();
  const shapes = new Map<string, Shape>();
  for (const v of graph.inputs) shapes.set(v.name, v.shape);
  for (const [name, t] of graph.initializers) shapes.set(name, t.dims);
  graph.types = new Map();
  for (const v of graph.inputs) graph.types.set(v.name, { dtype: v.dtype, shape: v.shape });
  for (const [name, t] of graph.initializers) graph.types.set(name, { dtype: t.dtype, shape: t.dims });
  let order;
  try {
    order = topologicalOrder(graph);
  } catch {
    return shapes;
  }
  for (const node of order) {
    if (!node.inputs.filter(Boolean).every((i) => graph.types.has(i))) continue;
    try {
      const types = inferNode(graph, node);
      node.outputs.forEach((o, i) => {
        if (o && types[i]) {
          graph.types.set(o, types[i]);
          shapes.set(o, types[i].shape);
        }
      });
      continue;
    } catch {
      // no qatkit rule (or an op outside qatkit's set): the spec rules below
    }
    const first = graph.types.get(node.inputs[0]);
    const attr = (k: string) => (node.attrs[k]?.kind === 'int' ? (node.attrs[k] as { value: number }).value : undefined);
    let shape: Shape | undefined;
    let dtype = first?.dtype;
    if (node.opType === 'DequantizeLinear' || node.opType === 'QuantizeLinear') {
      // ONNX: y has x's shape; DequantizeLinear gives the scale's type, QuantizeLinear the zero point's.
      shape = first?.shape;
      const typeFrom = graph.types.get(node.opType === 'DequantizeLinear' ? node.inputs[1] : node.inputs[2] ?? '');
      dtype = node.opType === 'DequantizeLinear' ? typeFrom?.dtype : (typeFrom?.dtype ?? dtype);
    } else if (node.opType === 'MatMulIntegerToFloat' || node.opType === 'DynamicQuantizeMatMul') {
      // com.microsoft: A [..., K] x B [K, N] -> float [..., N] (the type of the scales).
      const b = graph.types.get(node.inputs[1]);
      if (first && b && b.shape.length === 2) shape = [...first.shape.slice(0, -1), b.shape[1]];
      dtype = graph.types.get(node.inputs[2])?.dtype ?? dtype;
    } else if (node.opType === 'MatMulNBits') {
      // com.microsoft MatMulNBits: A [..., K] x B (N x K, packed) -> [..., N].
      const n = attr('N');
      if (first && n !== undefined) shape = [...first.shape.slice(0, -1), n];
    }
    if (shape && dtype !== undefined) {
      graph.types.set(node.outputs[0], { dtype, shape });
      shapes.set(node.outputs[0], shape);
    }
  }
  return shapes;
}
