import { GraphBuilder } from '../ir/builder.js';
import { Graph, Node, topologicalOrder } from '../ir/graph.js';
import { isFloat } from '../ir/dtype.js';
import { opDef, VjpContext } from '../ops/registry.js';

export interface GradientOptions {
  /** Scalar value to differentiate. */
  loss: string;
  /** Values to differentiate with respect to (parameters, inputs). */
  wrt: string[];
  /** Values through which no gradient flows (e.g. a frozen teacher's logits). */
  stopGradient?: Iterable<string>;
  /** Seed gradient for `loss`; defaults to a scalar 1 of loss's dtype. */
  seed?: string;
}

/**
 * Reverse-mode differentiation over the IR: appends gradient nodes to `graph` and returns the gradient
 * value name for each requested input. Only nodes on a path from `wrt` to `loss` are differentiated;
 * gradients reaching one value from several consumers are summed.
 */
export function differentiate(graph: Graph, options: GradientOptions): Map<string, string> {
  const b = new GraphBuilder(graph, 'grad/');
  const stop = new Set(options.stopGradient ?? []);
  const order = topologicalOrder(graph);

  // Forward reachability from wrt through differentiable edges.
  const reachesFromWrt = new Set(options.wrt);
  for (const n of order) {
    const def = opDef(n);
    const nd = new Set(def.nonDifferentiable ?? []);
    if (n.inputs.some((i, k) => i && !nd.has(k) && reachesFromWrt.has(i) && !stop.has(i))) {
      for (const o of n.outputs) if (o && isFloat(graph.typeOf(o).dtype)) reachesFromWrt.add(o);
    }
  }
  // Backward reachability from loss.
  const reachesLoss = new Set([options.loss]);
  for (let k = order.length - 1; k >= 0; k--) {
    const n = order[k];
    if (n.outputs.some((o) => reachesLoss.has(o))) for (const i of n.inputs) if (i) reachesLoss.add(i);
  }
  if (!reachesFromWrt.has(options.loss)) {
    throw new Error(`loss '${options.loss}' does not depend on any of [${options.wrt.slice(0, 5).join(', ')}${options.wrt.length > 5 ? ', ...' : ''}]`);
  }
  const active = (v: string) => v !== '' && reachesFromWrt.has(v) && reachesLoss.has(v) && !stop.has(v);

  const partials = new Map<string, string[]>();
  const addPartial = (v: string, g: string) => partials.set(v, [...(partials.get(v) ?? []), g]);
  const total = (v: string): string | undefined => {
    const list = partials.get(v);
    if (!list || list.length === 0) return undefined;
    if (list.length === 1) return list[0];
    const sum = list.length === 2 ? b.add(list[0], list[1]) : b.op1('Sum', list);
    partials.set(v, [sum]);
    return sum;
  };

  addPartial(options.loss, options.seed ?? b.scalarLike(1, options.loss));

  for (let k = order.length - 1; k >= 0; k--) {
    const node = order[k];
    if (!node.outputs.some((o) => active(o) && partials.has(o))) continue;
    const def = opDef(node);
    const nd = new Set(def.nonDifferentiable ?? []);
    const wants = (i: number) => !nd.has(i) && active(node.inputs[i] ?? '');
    if (!node.inputs.some((_, i) => wants(i))) continue;
    if (!def.vjp) {
      throw new Error(`no gradient rule for op ${node.opType} at node '${node.name}', which lies between the parameters and the loss`);
    }
    const ctx: VjpContext = {
      node,
      b,
      input: (i) => node.inputs[i],
      output: (i) => node.outputs[i],
      dy: (i) => (active(node.outputs[i] ?? '') ? total(node.outputs[i]) : undefined),
      wants,
    };
    const grads = withNodeContext(node, () => def.vjp!(ctx));
    grads.forEach((gv, i) => {
      if (gv && wants(i)) addPartial(node.inputs[i], gv);
    });
  }

  const result = new Map<string, string>();
  for (const w of options.wrt) {
    const gv = total(w);
    result.set(w, gv ?? b.op1('Mul', [w, b.scalarLike(0, w)]));
  }
  return result;
}

function withNodeContext<T>(node: Node, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as Error;
    if (err.message.includes(`'${node.name}'`)) throw err;
    throw new Error(`gradient of node '${node.name}' (${node.opType}): ${err.message}`);
  }
}
