import { toAttr, AttrInput } from '../ir/builder.js';
import { Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';

/**
 * Adds plain ONNX nodes and initializers to an export graph under unique names. Export graphs are only
 * encoded and run, never differentiated, so no types are inferred here.
 */
export class Emitter {
  private used: Set<string>;
  private counter = 0;

  constructor(public graph: Graph) {
    this.used = new Set([...graph.initializers.keys(), ...graph.inputs.map((v) => v.name), ...graph.nodes.flatMap((n) => [...n.outputs, n.name])]);
  }

  unique(base: string): string {
    let name = base;
    while (this.used.has(name)) name = `${base}_${this.counter++}`;
    this.used.add(name);
    return name;
  }

  initializer(base: string, t: Tensor): string {
    const name = this.unique(base);
    this.graph.initializers.set(name, t);
    return name;
  }

  /** Emits one node; `output` names its output (fresh when absent). */
  node(opType: string, inputs: string[], attrs: Record<string, AttrInput | undefined> = {}, output?: string, name?: string): string {
    const out = output ?? this.unique(`${name ?? opType}_out`);
    this.used.add(out);
    const node: Node = {
      opType,
      domain: '',
      name: this.unique(name ?? `export/${opType}`),
      inputs,
      outputs: [out],
      attrs: Object.fromEntries(Object.entries(attrs).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toAttr(k, v!)])),
    };
    this.graph.nodes.push(node);
    return out;
  }
}

/** Drops nodes whose outputs no graph output needs (in any node order), then initializers nothing reads. */
export function pruneDead(graph: Graph): void {
  const producers = graph.producers();
  const needed = new Set<string>();
  const live = new Set<Node>();
  const work = graph.outputs.map((o) => o.name);
  while (work.length) {
    const v = work.pop()!;
    if (needed.has(v)) continue;
    needed.add(v);
    const n = producers.get(v);
    if (n && !live.has(n)) {
      live.add(n);
      work.push(...n.inputs.filter((i) => i));
    }
  }
  graph.nodes = graph.nodes.filter((n) => live.has(n));
  for (const name of [...graph.initializers.keys()]) if (!needed.has(name)) graph.initializers.delete(name);
}
