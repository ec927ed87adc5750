/**
 * A PyTorch export reads the shapes of the tensors it reshapes (`x.size()`, `view(*x.size()[:-1], n)`), so after
 * the integer kernels have replaced a Linear, the float fake-quant of its input (Abs, ReduceMax, Div, Round, Clip,
 * Mul: one full pass each) can be left alive by nothing but a Shape node, directly or through the model's views
 * of it. A quantizer never changes a shape, so those readers may read the quantizer's input instead; the chain
 * then has no reader and pruneDead drops it.
 *
 * - Shape(quantizer(x)) reads Shape(x);
 * - a view (Reshape, Squeeze, Unsqueeze, Flatten, Identity, Transpose) whose outputs only Shape nodes and further
 *   such views read is a shape computation; its data input, when that is a quantizer's output, becomes x;
 * - Shape(Transpose(y, perm)) becomes Gather(Shape(y), perm), so a transpose read only for its shape copies nothing.
 */
import { Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Emitter } from './emitter.js';

const VIEWS = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity', 'Transpose']);

const isShape = (n: Node) => n.opType === 'Shape' && n.domain === '';
/** A Shape node that returns the whole shape (no start / end attributes). */
const wholeShape = (n: Node) => n.opType === 'Shape' && n.domain === '' && n.attrs.start === undefined && n.attrs.end === undefined;

function permutationOf(graph: Graph, transpose: Node): number[] | undefined {
  const perm = transpose.attrs.perm;
  if (perm?.kind === 'ints') return perm.value;
  const rank = graph.types.get(transpose.inputs[0])?.shape.length;
  return rank === undefined ? undefined : [...Array(rank).keys()].reverse();
}

/** Shape(Transpose(y, perm)) -> Gather(Shape(y), perm), for every such Shape. */
function shapesThroughTransposes(graph: Graph, em: Emitter): void {
  for (let changed = true; changed; ) {
    changed = false;
    const producers = graph.producers();
    for (const shape of graph.nodes.filter(wholeShape)) {
      const t = producers.get(shape.inputs[0]);
      if (t?.opType !== 'Transpose' || t.domain !== '') continue;
      const perm = permutationOf(graph, t);
      if (!perm) continue;
      const inner = em.node('Shape', [t.inputs[0]], {}, undefined, `${shape.name}/before_transpose`);
      const indices = em.initializer(`${shape.name}/perm`, Tensor.int64([perm.length], perm));
      graph.nodes.splice(graph.nodes.indexOf(shape), 1);
      em.node('Gather', [inner, indices], { axis: 0 }, shape.outputs[0], `${shape.name}/permuted`);
      changed = true;
    }
  }
}

/**
 * Points every shape-only reader of an activation quantizer in `graph` (named by `quantizerNodes`) at the
 * quantizer's input. Run after the kernels have taken the quantizers' real readers, before pruneDead.
 */
export function readShapesBeforeQuantizers(graph: Graph, quantizerNodes: ReadonlySet<string>): void {
  const em = new Emitter(graph);
  shapesThroughTransposes(graph, em);
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const consumers = graph.consumers();
  const memo = new Map<string, boolean>();
  // Whether `value` is read only for its shape: by Shape nodes and by views that are themselves read so (or by
  // nothing: a view whose Linear the kernels replaced).
  const shapeOnly = (value: string): boolean => {
    const known = memo.get(value);
    if (known !== undefined) return known;
    memo.set(value, false); // a cycle cannot occur in a DAG; this only guards the recursion
    const result = !outputs.has(value) && (consumers.get(value) ?? []).every((r) => readsForShape(r, value));
    memo.set(value, result);
    return result;
  };
  // Whether `reader` uses `value` only for its shape: a Shape, or a view of it whose outputs are shape-only.
  const readsForShape = (reader: Node, value: string): boolean =>
    isShape(reader) || (VIEWS.has(reader.opType) && reader.domain === '' && reader.inputs[0] === value && reader.outputs.every(shapeOnly));
  const sameShape = (a: string, b: string) => {
    const [ta, tb] = [graph.types.get(a), graph.types.get(b)];
    return ta !== undefined && tb !== undefined && ta.shape.join() === tb.shape.join();
  };
  for (const q of graph.nodes.filter((n) => quantizerNodes.has(n.name))) {
    const [x, out] = [q.inputs[0], q.outputs[0]];
    if (!sameShape(x, out)) continue;
    for (const reader of consumers.get(out) ?? []) {
      if (readsForShape(reader, out)) reader.inputs = reader.inputs.map((i, k) => (k === 0 && i === out ? x : i));
    }
  }
}
