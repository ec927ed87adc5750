import { Attr } from '../ir/graph.js';
import { Model } from './model.js';

/**
 * The model as a checkpoint gives it back: ONNX stores float attributes as float32, so BatchNormalization's
 * momentum 0.9 reads back as 0.8999999762. A run that trains the in-memory model (0.9 exactly) computes
 * 1 - momentum in double before it becomes a float32 constant and updates its running statistics with a factor
 * one float32 step away from a resumed run's (0.1 vs 0.10000002): the 3.6e-7 drift of issue 14. Rounding every
 * float attribute once, before the first step, makes a fresh run and a resumed one build the same step graph.
 * Returns a copy; the given model is not changed.
 */
export function withStoredPrecision(model: Model): Model {
  const graph = model.graph.clone();
  const round = (a: Attr): Attr =>
    a.kind === 'float' ? { kind: 'float', value: Math.fround(a.value) } : a.kind === 'floats' ? { kind: 'floats', value: a.value.map(Math.fround) } : a;
  for (const node of graph.nodes) node.attrs = Object.fromEntries(Object.entries(node.attrs).map(([k, a]) => [k, round(a)]));
  return { ...model, graph };
}
