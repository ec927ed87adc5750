import { GraphBuilder } from '../ir/builder.js';
import { attrFloat, attrInt, Graph, Node } from '../ir/graph.js';
import { inferNode } from '../ir/builder.js';
import { defineOps, OpDef } from '../ops/registry.js';
import { requireInput } from '../ops/shape-utils.js';
import { QATKIT } from './fake-quantize-op.js';

/**
 * ai.qatkit.RangeObserver(running_min, running_max) -> (scale, zero_point): activation quantization parameters
 * from an observed range, in the graph, by the DESIGN numerics contract (range widened to include 0; symmetric
 * S = max|r| / qmax; asymmetric S = (max - min) / (qmax - qmin), Z = round(qmin - min / S)).
 * Attributes: qmin, qmax, symmetric.
 *
 * ai.qatkit.RangeObserverTrain(x, running_min, running_max, observe) -> (scale, zero_point, new_min, new_max):
 * the training form. While observe = 1 it moves the range toward the batch's min/max like torch's
 * MovingAverageMinMaxObserver (min += c * (batch_min - min), c = momentum); with observe = 0 the range is
 * frozen, so scales cannot drift after the freeze step. The scale uses the updated range, as torch does.
 */
function emitQParams(b: GraphBuilder, node: Node, runMin: string, runMax: string, outputs?: [string, string]): [string, string] {
  const qmin = attrInt(node, 'qmin', 0);
  const qmax = attrInt(node, 'qmax', 255);
  const lo = b.op1('Min', [runMin, b.scalarLike(0, runMin)]);
  const hi = b.op1('Max', [runMax, b.scalarLike(0, runMax)]);
  const tiny = b.scalarLike(1e-8, runMin);
  let scale: string;
  let zero: string;
  if (attrInt(node, 'symmetric', 0)) {
    const m = qmin < 0 ? b.op1('Max', [b.neg(lo), hi]) : hi;
    scale = b.op1('Max', [b.div(m, b.scalarLike(qmax, m)), tiny]);
    zero = b.mul(scale, b.scalarLike(0, scale));
  } else {
    scale = b.op1('Max', [b.div(b.sub(hi, lo), b.scalarLike(qmax - qmin, hi)), tiny]);
    zero = b.op1('Clip', [b.op1('Round', [b.sub(b.scalarLike(qmin, lo), b.div(lo, scale))]), b.scalarLike(qmin, lo), b.scalarLike(qmax, lo)]);
  }
  if (outputs) {
    b.op1('Identity', [scale], {}, { outputs: [outputs[0]] });
    b.op1('Identity', [zero], {}, { outputs: [outputs[1]] });
  }
  return [scale, zero];
}

const rangeObserver: OpDef = {
  opType: 'RangeObserver',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0), requireInput(ctx, 0)],
  nonDifferentiable: [0, 1],
  lower: (node, b) => {
    emitQParams(b, node, node.inputs[0], node.inputs[1], [node.outputs[0], node.outputs[1]]);
  },
};

const rangeObserverTrain: OpDef = {
  opType: 'RangeObserverTrain',
  domain: QATKIT,
  infer: (ctx) => {
    const t = requireInput(ctx, 1);
    return [t, t, t, t];
  },
  nonDifferentiable: [0, 1, 2, 3],
  lower: (node, b) => {
    const [x, runMin, runMax, observe] = node.inputs;
    const c = b.mul(b.castLike(observe, runMin), b.scalarLike(attrFloat(node, 'momentum', 0.01), runMin));
    const batchMin = b.castLike(b.op1('ReduceMin', [x], { keepdims: 0 }), runMin);
    const batchMax = b.castLike(b.op1('ReduceMax', [x], { keepdims: 0 }), runMax);
    const newMin = b.op1('Add', [runMin, b.mul(c, b.sub(batchMin, runMin))], {}, { outputs: [node.outputs[2]] });
    const newMax = b.op1('Add', [runMax, b.mul(c, b.sub(batchMax, runMax))], {}, { outputs: [node.outputs[3]] });
    emitQParams(b, node, newMin, newMax, [node.outputs[0], node.outputs[1]]);
  },
};

defineOps([rangeObserver, rangeObserverTrain]);

export interface ObserverStatNames {
  min: string;
  max: string;
  newMin: string;
  newMax: string;
}

/**
 * A copy of `graph` whose RangeObserver nodes update their ranges from each batch (RangeObserverTrain), gated
 * by the scalar graph input `observe`; the updated ranges become graph outputs so the trainer carries them.
 */
export function toTrainingObservers(graph: Graph, observe: string): { graph: Graph; stats: ObserverStatNames[] } {
  const out = graph.clone();
  const b = new GraphBuilder(out, 'observer_train/');
  const stats: ObserverStatNames[] = [];
  const consumers = out.nodes;
  out.nodes = consumers.map((node) => {
    if (node.domain !== QATKIT || node.opType !== 'RangeObserver') return node;
    const observed = node.attrs.observed;
    if (!observed || observed.kind !== 'string') throw new Error(`node '${node.name}' (RangeObserver) lacks the 'observed' attribute naming the tensor it watches`);
    const [runMin, runMax] = node.inputs;
    const train: Node = {
      opType: 'RangeObserverTrain',
      domain: QATKIT,
      name: `${node.name}/train`,
      inputs: [observed.value, runMin, runMax, observe],
      outputs: [node.outputs[0], node.outputs[1], b.fresh(`${runMin}_new`), b.fresh(`${runMax}_new`)],
      attrs: { ...node.attrs },
    };
    inferNode(out, train).forEach((t, i) => out.types.set(train.outputs[i], t));
    stats.push({ min: runMin, max: runMax, newMin: train.outputs[2], newMax: train.outputs[3] });
    return train;
  });
  if (stats.length && !out.hasValue(observe)) throw new Error(`graph '${graph.name}' has no input '${observe}' for the observer gate`);
  return { graph: out, stats };
}

export const OBSERVE_INPUT = 'observe';
