import { DType } from './dtype.js';
import { Tensor } from './tensor.js';

/** A dimension: a number, or a symbolic name (e.g. 'N' for the batch) when unknown until run time. */
export type Dim = number | string;
export type Shape = Dim[];

export interface ValueType {
  dtype: DType;
  shape: Shape;
}

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'strings'; value: string[] }
  | { kind: 'tensor'; value: Tensor }
  | { kind: 'graph'; value: unknown };

export interface Node {
  opType: string;
  /** '' for the default ONNX domain; 'ai.qatkit' for our own ops (lowered before ORT sees them). */
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface ValueInfo extends ValueType {
  name: string;
}

/** The in-memory model: ONNX's GraphProto with values named by strings, plus model-level fields. */
export class Graph {
  nodes: Node[] = [];
  inputs: ValueInfo[] = [];
  outputs: ValueInfo[] = [];
  initializers = new Map<string, Tensor>();
  /** Known types of every value (inputs, initializers, node outputs), kept by the builder. */
  types = new Map<string, ValueType>();
  opsets: Record<string, number> = { '': 17 };
  metadata: Record<string, string> = {};
  /**
   * Small integer values (shape vectors and scalars) whose elements are known though the value is computed at
   * run time, e.g. Shape(x) of x [N, 4] is ['N', 4]; set by the partial evaluator (ir/partial-evaluate.ts) and
   * read by shape inference (Reshape, Expand, Slice, ... with shapes fed as inputs). Flat, row-major.
   */
  shapeValues = new Map<string, Dim[]>();
  name = 'qatkit';

  typeOf(name: string): ValueType {
    const t = this.types.get(name);
    if (t) return t;
    const init = this.initializers.get(name);
    if (init) return { dtype: init.dtype, shape: init.dims };
    throw new Error(`value '${name}' has no known type in graph '${this.name}'`);
  }

  hasValue(name: string): boolean {
    return this.types.has(name) || this.initializers.has(name);
  }

  producers(): Map<string, Node> {
    const m = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) if (o) m.set(o, n);
    return m;
  }

  consumers(): Map<string, Node[]> {
    const m = new Map<string, Node[]>();
    for (const n of this.nodes) {
      for (const i of n.inputs) {
        if (!i) continue;
        const list = m.get(i) ?? [];
        list.push(n);
        m.set(i, list);
      }
    }
    return m;
  }

  clone(): Graph {
    const g = new Graph();
    g.nodes = this.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: { ...n.attrs } }));
    g.inputs = this.inputs.map((v) => ({ ...v, shape: [...v.shape] }));
    g.outputs = this.outputs.map((v) => ({ ...v, shape: [...v.shape] }));
    g.initializers = new Map(this.initializers);
    g.types = new Map(this.types);
    g.opsets = { ...this.opsets };
    g.metadata = { ...this.metadata };
    g.shapeValues = new Map(this.shapeValues);
    g.name = this.name;
    return g;
  }
}

/** Kahn's algorithm; stable (keeps the original order among ready nodes). Throws on cycles. */
export function topologicalOrder(graph: Graph): Node[] {
  const available = new Set<string>([...graph.inputs.map((v) => v.name), ...graph.initializers.keys(), '']);
  const pending = new Map<Node, number>();
  const waiting = new Map<string, Node[]>();
  const ready: Node[] = [];
  for (const n of graph.nodes) {
    const missing = new Set(n.inputs.filter((i) => !available.has(i)));
    pending.set(n, missing.size);
    for (const i of missing) waiting.set(i, [...(waiting.get(i) ?? []), n]);
    if (missing.size === 0) ready.push(n);
  }
  const order: Node[] = [];
  const index = new Map(graph.nodes.map((n, i) => [n, i]));
  while (ready.length) {
    ready.sort((a, b) => index.get(a)! - index.get(b)!);
    const n = ready.shift()!;
    order.push(n);
    for (const o of n.outputs) {
      if (!o || available.has(o)) continue;
      available.add(o);
      for (const c of waiting.get(o) ?? []) {
        const left = pending.get(c)! - 1;
        pending.set(c, left);
        if (left === 0) ready.push(c);
      }
    }
  }
  if (order.length !== graph.nodes.length) {
    const stuck = graph.nodes.filter((n) => !order.includes(n)).slice(0, 5);
    throw new Error(
      `graph '${graph.name}' has a cycle or a missing input; stuck nodes: ${stuck
        .map((n) => `${n.name} (${n.opType}) waiting on [${n.inputs.filter((i) => !available.has(i))}]`)
        .join(', ')}`,
    );
  }
  return order;
}

export function attrInt(node: Node, name: string, fallback: number): number {
  const a = node.attrs[name];
  if (!a) return fallback;
  if (a.kind === 'int' || a.kind === 'float') return a.value;
  throw new Error(`node '${node.name}' (${node.opType}): attribute '${name}' must be a number, got ${a.kind}`);
}
export const attrFloat = attrInt;

export function attrInts(node: Node, name: string, fallback: number[] | undefined): number[] | undefined {
  const a = node.attrs[name];
  if (!a) return fallback;
  if (a.kind === 'ints' || a.kind === 'floats') return a.value;
  throw new Error(`node '${node.name}' (${node.opType}): attribute '${name}' must be a list of ints, got ${a.kind}`);
}

export function attrString(node: Node, name: string, fallback: string): string {
  const a = node.attrs[name];
  if (!a) return fallback;
  if (a.kind === 'string') return a.value;
  throw new Error(`node '${node.name}' (${node.opType}): attribute '${name}' must be a string, got ${a.kind}`);
}
