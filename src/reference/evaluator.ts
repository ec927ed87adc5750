import { isFloat } from '../ir/dtype.js';
import { Graph, topologicalOrder } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { lowerCustomOps } from '../runtime/lower.js';
import { convKernels } from './conv.js';
import { elementwiseKernels } from './elementwise.js';
import { KernelTable, toFloat64 } from './kernel.js';
import { normKernels } from './norm.js';
import { poolKernels } from './pool.js';
import { reduceKernels } from './reduce.js';
import { shapeKernels } from './shape.js';

/** Op type (default ONNX domain) -> reference kernel; one file per op family. */
export const referenceKernels: KernelTable = {
  ...elementwiseKernels,
  ...reduceKernels,
  ...shapeKernels,
  ...convKernels,
  ...poolKernels,
  ...normKernels,
};

/**
 * Runs `graph` node by node in float64 (float inputs and initializers are promoted) and returns every
 * value it computed, inputs and initializers included. Custom-domain ops are lowered first. It exists for
 * gradient checks of ops ONNX Runtime's CPU provider cannot run in float64 (Conv, ConvTranspose,
 * AveragePool, GlobalAveragePool, Erf), and as the start of the integer reference evaluator for export.
 */
export function evaluateReference(graph: Graph, feeds: Map<string, Tensor>): Map<string, Tensor> {
  const g = lowerCustomOps(graph);
  const env = new Map<string, Tensor>();
  const load = (name: string, t: Tensor) => env.set(name, isFloat(t.dtype) ? toFloat64(t) : t);
  for (const [name, t] of g.initializers) load(name, t);
  const inputNames = new Set(g.inputs.map((v) => v.name));
  for (const name of feeds.keys()) {
    if (!inputNames.has(name)) throw new Error(`feed '${name}' is not an input of graph '${g.name}'; inputs: ${[...inputNames].join(', ')}`);
  }
  for (const input of g.inputs) {
    const t = feeds.get(input.name);
    if (t) load(input.name, t);
    else if (!env.has(input.name)) throw new Error(`graph '${g.name}': no feed for input '${input.name}'`);
  }
  for (const node of topologicalOrder(g)) {
    const kernel = node.domain === '' || node.domain === 'ai.onnx' ? referenceKernels[node.opType] : undefined;
    if (!kernel) {
      throw new Error(
        `the reference evaluator has no kernel for op ${node.domain ? node.domain + '.' : ''}${node.opType} (node '${node.name}'); ` +
          `supported: ${Object.keys(referenceKernels).sort().join(', ')}`,
      );
    }
    const outputs = kernel(node, node.inputs.map((i) => (i ? env.get(i) : undefined)));
    node.outputs.forEach((o, i) => {
      if (o && outputs[i]) env.set(o, outputs[i]);
    });
  }
  return env;
}
