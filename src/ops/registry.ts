import type { GraphBuilder } from '../ir/builder.js';
import type { Dim, Node, ValueType } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';

/** What a shape-inference function sees: input types and any input whose value is a known constant. */
export interface InferContext {
  node: Node;
  inputs: (ValueType | undefined)[];
  constant(index: number): Tensor | undefined;
  /**
   * The elements of a small integer input (a shape vector or scalar) where they are known: numbers, or symbolic
   * dims where computed from symbolic input dims (Shape of [N, 4] is ['N', 4]). Constants included.
   */
  shapeValue?(index: number): Dim[] | undefined;
}

/** What a VJP rule sees. It emits nodes through `b` and returns one gradient per input (undefined = none). */
export interface VjpContext {
  node: Node;
  b: GraphBuilder;
  input(index: number): string;
  output(index: number): string;
  /** Upstream gradient of output `index`, or undefined where no gradient flows into that output. */
  dy(index: number): string | undefined;
  /** Whether the gradient of input `index` is needed (rules may skip work for unneeded inputs). */
  wants(index: number): boolean;
}

export type VjpRule = (ctx: VjpContext) => (string | undefined)[];

export interface OpDef {
  opType: string;
  domain: string;
  infer: (ctx: InferContext) => ValueType[];
  /** Missing for ops that have no gradient (e.g. Shape, Equal): asking for one is an error. */
  vjp?: VjpRule;
  /** Inputs that take no gradient by definition (indices, shapes, labels, running statistics). */
  nonDifferentiable?: number[];
  /** Custom-domain ops expand themselves into standard ONNX ops before ONNX Runtime sees the graph. */
  lower?: (node: Node, b: GraphBuilder) => void;
}

const table = new Map<string, OpDef>();

const key = (domain: string, opType: string) => `${domain || 'ai.onnx'}::${opType}`;

export function defineOp(def: OpDef): void {
  table.set(key(def.domain, def.opType), def);
}

export function defineOps(defs: OpDef[]): void {
  for (const d of defs) defineOp(d);
}

export function findOp(domain: string, opType: string): OpDef | undefined {
  return table.get(key(domain === 'ai.onnx' ? '' : domain, opType));
}

export function opDef(node: Node): OpDef {
  const def = findOp(node.domain, node.opType);
  if (!def) {
    throw new Error(`unsupported op ${node.domain ? node.domain + '.' : ''}${node.opType} at node '${node.name}'`);
  }
  return def;
}

export function registeredOps(): OpDef[] {
  return [...table.values()];
}
