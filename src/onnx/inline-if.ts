/**
 * ONNX If nodes whose condition the input shapes decide, replaced at import by the branch they take.
 *
 * torch.onnx.export writes an If for `x.squeeze(d)` where dim d is not static in its trace (Hugging Face Llama's
 * `cos.squeeze(1).squeeze(0)` of a sliced rotary cache): then_branch squeezes, else_branch is an Identity, and the
 * condition is Equal(Gather(Shape(x), d), 1). Once the partial evaluator has folded the condition (the dim is
 * static after all, or fixed by the training shapes), the graph is the taken branch's nodes. An If whose
 * condition stays a run-time value is refused naming the node: training it would need both branches' gradients.
 *
 * ONNX's SSA rule (IR.md, "Names Within a Graph") makes every value name unique across a model and its
 * subgraphs, so the branch's nodes keep their names; values read from the outer scope are listed as extra inputs
 * of the If node until then, so topological order and gradient reach see them.
 */
import { Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { EvalValue, isSymbolic } from '../ir/constant-kernels.js';
import { InputError } from '../validate/schema.js';
import { constantNodeValue } from './constants.js';
import { decodeSubgraph, Subgraph } from './model-io.js';

const isIf = (n: Node) => n.opType === 'If' && n.domain === '';

/** A graph attribute decoded, a malformed one refused naming the file, the node and the attribute. */
function decodeGraphAttr(value: unknown, source: string, node: Node, attr: string): Subgraph {
  try {
    return decodeSubgraph(value, {}, `${node.name}/${attr}/`);
  } catch (e) {
    throw new InputError(`${source}: node '${node.name}' (${node.opType}), graph attribute '${attr}': ${(e as Error).message}`);
  }
}

function branches(node: Node, source: string): Subgraph[] {
  return ['then_branch', 'else_branch'].map((name) => {
    const a = node.attrs[name];
    if (a?.kind !== 'graph') throw new InputError(`${source}: If node '${node.name}' has no ${name} graph (an If takes then_branch and else_branch)`);
    return decodeGraphAttr(a.value, source, node, name);
  });
}

/** The values node `n` reads: its inputs, and what its graph attributes read from around them. */
function reads(n: Node, source: string): string[] {
  const inner = Object.entries(n.attrs).flatMap(([k, a]) => (a.kind === 'graph' ? [...captured(decodeGraphAttr(a.value, source, n, k), source)] : []));
  return [...n.inputs, ...inner].filter((name) => name);
}

/** Names a subgraph (and the subgraphs inside it) reads from the scopes around it. */
function captured(sub: Subgraph, source: string): Set<string> {
  const local = new Set<string>([...sub.initializers.keys(), ...sub.nodes.flatMap((n) => n.outputs)]);
  return new Set(sub.nodes.flatMap((n) => reads(n, source)).filter((name) => !local.has(name)));
}

/** Every node inside the graph attributes of `nodes`, at any depth (for the supported-op check). */
export function subgraphNodes(nodes: Node[], source: string): Node[] {
  return nodes.flatMap((n) =>
    Object.entries(n.attrs).flatMap(([k, a]) => {
      if (a.kind !== 'graph') return [];
      const inner = decodeGraphAttr(a.value, source, n, k).nodes;
      return [...inner, ...subgraphNodes(inner, source)];
    }),
  );
}

/** Appends to each If node's inputs the outer values its branches read (after the condition). */
export function listIfCaptures(graph: Graph, source: string): number {
  const ifs = graph.nodes.filter(isIf);
  for (const node of ifs) {
    const reads = new Set(branches(node, source).flatMap((b) => [...captured(b, source)]));
    node.inputs = [node.inputs[0], ...[...reads].filter((r) => r !== node.inputs[0])];
  }
  return ifs.length;
}

/**
 * The nodes that replace If `node` given its condition's value: the taken branch's nodes, its Constants and
 * initializers added to `graph`, its outputs renamed to the If's (an Identity where a branch output is read
 * inside the branch too, or is not made by a branch node).
 */
export function inlineIf(graph: Graph, node: Node, condition: EvalValue | undefined, source: string): Node[] {
  if (!condition || isSymbolic(condition) || condition.data.length !== 1) {
    throw new InputError(
      `${source}: If node '${node.name}': its condition '${node.inputs[0]}' is only known at run time; qatkit imports an If ` +
        `whose branch the input shapes decide (torch.onnx.export writes one for squeeze(dim) of a dynamic dim). ` +
        `Fix the dims it depends on (export with static shapes, or squeeze a dim the trace knows is 1)`,
    );
  }
  const taken = Number(condition.data[0]) !== 0 ? 'then_branch' : 'else_branch';
  const sub = branches(node, source)[taken === 'then_branch' ? 0 : 1];
  if (sub.outputs.length !== node.outputs.length) {
    throw new InputError(`${source}: If node '${node.name}': ${taken} has ${sub.outputs.length} outputs, the node ${node.outputs.length}`);
  }
  const existing = new Set([...graph.types.keys(), ...graph.initializers.keys(), ...graph.nodes.filter((n) => n !== node).flatMap((n) => n.outputs)]);
  const define = (name: string) => {
    if (existing.has(name)) throw new InputError(`${source}: If node '${node.name}': ${taken} defines '${name}', a name the outer graph uses too (ONNX values are single-assignment)`);
    existing.add(name);
  };
  const add = (name: string, t: Tensor) => {
    define(name);
    graph.initializers.set(name, t);
    graph.types.set(name, { dtype: t.dtype, shape: t.dims });
  };
  for (const [name, t] of sub.initializers) add(name, t);
  const nodes: Node[] = [];
  for (const n of sub.nodes) {
    if (n.opType === 'Constant' && n.domain === '') add(n.outputs[0], constantNodeValue(n));
    else {
      n.outputs.filter((o) => o).forEach(define);
      nodes.push(n);
    }
  }
  // A branch output another branch node reads (or a subgraph inside the branch) keeps its name: an Identity copies it.
  const readInside = new Set(nodes.flatMap((n) => reads(n, source)));
  const producers = new Map(nodes.flatMap((n) => n.outputs.map((o, i) => [o, { n, i }] as const)));
  sub.outputs.forEach((out, k) => {
    const made = producers.get(out);
    const once = sub.outputs.indexOf(out) === sub.outputs.lastIndexOf(out);
    if (made && once && !readInside.has(out)) made.n.outputs[made.i] = node.outputs[k];
    else nodes.push({ opType: 'Identity', domain: '', name: `${node.name}/${taken}/output_${k}`, inputs: [out], outputs: [node.outputs[k]], attrs: {} });
  });
  return nodes;
}
