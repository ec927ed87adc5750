import { isFloat } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { foldedConstants, gradientReach, isBuffer } from '../ir/partial-evaluate.js';
import { findOp } from '../ops/registry.js';

export interface InitializerClasses {
  /** Float initializers training updates: layer weights/biases and any float tensor on a differentiable input. */
  params: string[];
  /** BatchNormalization running mean and variance (inputs 3 and 4): updated by statistics, not gradients. */
  runningStats: string[];
  /** Everything else: int64 shapes and axes, scalar literals, float tensors only non-differentiable inputs read. */
  constants: string[];
}

/** Ops whose float initializer inputs (other than BN statistics) are learned weights, whatever their size. */
const LAYER_OPS = new Set([
  'Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'BatchNormalization', 'LayerNormalization', 'InstanceNormalization',
  'GroupNormalization', 'PRelu',
]);

const BATCH_NORM_OPS = new Set(['BatchNormalization', 'BatchNormTrain']);

/**
 * Sorts a graph's initializers into trainable parameters, BN running statistics and constants. A float
 * initializer is a parameter when some op reads it through an input the op's gradient rule differentiates and a
 * gradient path leads from it to a graph output.
 * Exception: a one-element float initializer read only by non-layer ops (Add, Mul, Div, Pow, ...) is a
 * constant: exporters inline literals such as 0.5, sqrt(2) or epsilon that way, and training them would
 * change the model's function, not its weights.
 */
export function classifyInitializers(graph: Graph): InitializerClasses {
  // A tensor no gradient path connects to an output (a causal-mask buffer compared with Equal) is a constant.
  const reach = gradientReach(graph);
  // Values the partial evaluator folded (an attention mask computed from shapes) are constants too.
  const folded = foldedConstants(graph);
  const uses = new Map<string, { opType: string; differentiable: boolean; statistic: boolean }[]>();
  for (const node of graph.nodes) {
    const def = findOp(node.domain, node.opType);
    node.inputs.forEach((name, index) => {
      if (!name || !graph.initializers.has(name)) return;
      const statistic = BATCH_NORM_OPS.has(node.opType) && (index === 3 || index === 4);
      const differentiable =
        !statistic && (LAYER_OPS.has(node.opType) || (!!def?.vjp && !(def.nonDifferentiable ?? []).includes(index)));
      const list = uses.get(name) ?? [];
      list.push({ opType: node.opType, differentiable, statistic });
      uses.set(name, list);
    });
  }
  const out: InitializerClasses = { params: [], runningStats: [], constants: [] };
  for (const [name, tensor] of graph.initializers) {
    const list = uses.get(name) ?? [];
    if (!isFloat(tensor.dtype)) out.constants.push(name);
    else if (list.some((u) => u.statistic)) out.runningStats.push(name);
    else if (reach.has(name) && !folded.has(name) && !isBuffer(name, tensor) && list.some((u) => u.differentiable && (LAYER_OPS.has(u.opType) || tensor.size > 1))) out.params.push(name);
    else out.constants.push(name);
  }
  return out;
}
