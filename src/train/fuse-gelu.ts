import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrString, Graph, Node } from '../ir/graph.js';

const QATKIT = 'ai.qatkit';

/**
 * Replaces every exact GELU of a training step by ai.qatkit.GeluTrain (src/ops/activation.ts), which saves the
 * normal CDF for its backward: 4 full-size passes forward and 6 backward, where differentiating the elementary
 * ops takes 5 and 11 (GPT's MLP activations are the largest tensors of its step). Matched: the Erf form as the
 * builder writes it (x * 0.5 * (erf(x * 1/sqrt2) + 1)) and as torch.onnx.export writes nn.GELU
 * (x * (erf(x / sqrt2) + 1) * 0.5), in any operand order, and Gelu nodes (opset 20, ai.qatkit) with
 * approximate 'none'. Intermediate values with other consumers keep the subgraph as it is. Forward values are
 * the Erf form's (bit for bit for the builder's form). The model graph (evaluation, export) is untouched.
 */
export function fuseGelu(graph: Graph): number {
  const producers = graph.producers();
  const consumers = graph.consumers();
  const graphOutputs = new Set(graph.outputs.map((o) => o.name));
  const b = new GraphBuilder(graph, 'gelu/');
  const replace = new Map<Node, Node>();
  const remove = new Set<Node>();
  const soleConsumer = (value: string): Node | undefined => {
    const list = consumers.get(value) ?? [];
    return list.length === 1 && !graphOutputs.has(value) ? list[0] : undefined;
  };
  const scalar = (name: string): number | undefined => {
    const t = graph.initializers.get(name);
    return t && t.size === 1 && (t.dtype === DType.FLOAT || t.dtype === DType.DOUBLE) ? t.toNumbers()[0] : undefined;
  };
  const near = (v: number | undefined, want: number) => v !== undefined && Math.abs(v - want) <= 1e-6 * Math.abs(want);
  /** The other input of a two-input node when one of them is `value` (or the scalar `want`). */
  const otherThan = (n: Node, pick: (v: string) => boolean): string | undefined =>
    pick(n.inputs[0]) ? n.inputs[1] : pick(n.inputs[1]) ? n.inputs[0] : undefined;

  for (const erf of graph.nodes) {
    if (erf.opType !== 'Erf' || erf.domain !== '') continue;
    const arg = producers.get(erf.inputs[0]);
    if (!arg || soleConsumer(erf.inputs[0]) !== erf) continue;
    let x: string | undefined;
    if (arg.opType === 'Mul') x = otherThan(arg, (v) => near(scalar(v), Math.SQRT1_2));
    else if (arg.opType === 'Div' && near(scalar(arg.inputs[1]), Math.SQRT2)) x = arg.inputs[0];
    if (!x) continue;
    const plusOne = soleConsumer(erf.outputs[0]);
    if (!plusOne || plusOne.opType !== 'Add' || otherThan(plusOne, (v) => v === erf.outputs[0]) === undefined) continue;
    if (!near(scalar(otherThan(plusOne, (v) => v === erf.outputs[0])!), 1)) continue;
    const product = soleConsumer(plusOne.outputs[0]);
    if (!product || product.opType !== 'Mul') continue;
    const factor = otherThan(product, (v) => v === plusOne.outputs[0])!;
    let last: Node | undefined;
    let half: Node | undefined;
    const halfX = producers.get(factor);
    if (halfX?.opType === 'Mul' && soleConsumer(factor) === product && otherThan(halfX, (v) => near(scalar(v), 0.5)) === x) {
      // builder form: (x * 0.5) * (erf + 1)
      [last, half] = [product, halfX];
    } else if (factor === x) {
      // torch form: (x * (erf + 1)) * 0.5
      const scaled = soleConsumer(product.outputs[0]);
      if (scaled?.opType === 'Mul' && otherThan(scaled, (v) => v === product.outputs[0]) !== undefined && near(scalar(otherThan(scaled, (v) => v === product.outputs[0])!), 0.5)) {
        [last, half] = [scaled, product];
      }
    }
    if (!last || !half) continue;
    const fused = geluTrainNode(b, graph, x, last.outputs[0], last.name);
    for (const n of [arg, erf, plusOne, product, half]) remove.add(n);
    replace.set(last, fused);
  }
  for (const gelu of graph.nodes) {
    if (gelu.opType !== 'Gelu' || (gelu.domain !== '' && gelu.domain !== QATKIT) || attrString(gelu, 'approximate', 'none') !== 'none') continue;
    replace.set(gelu, geluTrainNode(b, graph, gelu.inputs[0], gelu.outputs[0], gelu.name));
  }
  graph.nodes = graph.nodes.flatMap((n) => (replace.has(n) ? [replace.get(n)!] : remove.has(n) ? [] : [n]));
  return replace.size;
}

function geluTrainNode(b: GraphBuilder, graph: Graph, x: string, y: string, name: string): Node {
  const type = graph.typeOf(x);
  const [phi, z] = [b.fresh(`${name}/phi`), b.fresh(`${name}/z`)];
  graph.types.set(phi, type);
  graph.types.set(z, type);
  return { opType: 'GeluTrain', domain: QATKIT, name: `${name}/gelu_train`, inputs: [x], outputs: [y, phi, z], attrs: {} };
}
