import type { Dim, Node, Shape, ValueType } from '../ir/graph.js';

/** NumPy broadcasting of static/symbolic shapes (ONNX multidirectional broadcasting). */
export function broadcastShapes(shapes: Shape[], node?: Node): Shape {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let dim: Dim = 1;
    for (const s of shapes) {
      const d = s[s.length - rank + i];
      if (d === undefined || d === 1) continue;
      if (dim === 1) dim = d;
      else if (typeof dim === 'number' && typeof d === 'number' && dim !== d) {
        const where = node ? ` at node '${node.name}' (${node.opType})` : '';
        throw new Error(`shapes [${shapes.map((x) => `[${x}]`).join(', ')}] do not broadcast${where}`);
      } else if (typeof dim === 'string' && typeof d === 'number') dim = d;
    }
    out.push(dim);
  }
  return out;
}

export function normalizeAxis(axis: number, rank: number, node?: Node): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    throw new Error(`axis ${axis} is out of range for rank ${rank}${node ? ` at node '${node.name}' (${node.opType})` : ''}`);
  }
  return a;
}

export function requireInput(ctx: { node: Node; inputs: (ValueType | undefined)[] }, i: number): ValueType {
  const t = ctx.inputs[i];
  if (!t) throw new Error(`node '${ctx.node.name}' (${ctx.node.opType}) is missing input ${i}`);
  return t;
}

export function dimProduct(dims: Dim[]): Dim {
  let n = 1;
  for (const d of dims) {
    if (typeof d === 'string') return dims.join('*');
    n *= d;
  }
  return n;
}
