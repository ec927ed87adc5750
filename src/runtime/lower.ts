import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInts, Graph, Node } from '../ir/graph.js';
import { opDef } from '../ops/registry.js';

/** ONNX Runtime's contrib-op domain (CPU kernels of onnxruntime-node's standard build). */
export const MS_DOMAIN = 'com.microsoft';

export interface LowerOptions {
  /**
   * Let ORT's com.microsoft ops replace standard-op forms where they save full-size passes (training sessions):
   * MatMul of a transposed operand becomes FusedMatMul with transA/transB (float32 only). Graphs written to
   * files and the reference evaluator keep standard ops.
   */
  contribOps?: boolean;
}

/**
 * Expands every custom-domain node (ai.qatkit) into standard ONNX ops, in place order, repeatedly until
 * none is left (a lowering may emit other custom ops). Returns a new graph; the input is not modified.
 */
export function lowerCustomOps(graph: Graph, options: LowerOptions = {}): Graph {
  let g = graph;
  const custom = (n: Node) => n.domain !== '' && n.domain !== MS_DOMAIN;
  for (let round = 0; round < 8; round++) {
    if (!g.nodes.some(custom)) return options.contribOps ? fuseTransposedMatMuls(g) : g;
    const out = g.clone();
    out.nodes = [];
    const b = new GraphBuilder(out, `lower${round}/`);
    for (const n of g.nodes) {
      if (!custom(n)) out.nodes.push(n);
      else lowerOne(n, b);
    }
    g = out;
  }
  const left = g.nodes.filter(custom).map((n) => `${n.name} (${n.domain}.${n.opType})`);
  throw new Error(`custom ops left after lowering: ${left.join(', ')}`);
}

function lowerOne(node: Node, b: GraphBuilder): void {
  const def = opDef(node);
  if (!def.lower) throw new Error(`custom op ${node.domain}.${node.opType} at node '${node.name}' has no lowering`);
  def.lower(node, b);
}

/** Whether `perm` swaps the last two axes and keeps the others. */
function swapsLastTwo(perm: number[] | undefined, rank: number): boolean {
  if (!perm || perm.length !== rank || rank < 2) return false;
  return perm.every((p, i) => (i < rank - 2 ? p === i : p === (i === rank - 2 ? rank - 1 : rank - 2)));
}

/**
 * MatMul(A, Transpose(B)) with the last two axes swapped (and MatMul(Transpose(A), B) of 2-D A) become FusedMatMul
 * with transB / transA on the untransposed operand. ORT's own MatmulTransposeFusion does the same, but only after its
 * transpose optimizer has merged the swap into the transposes that made the operand (the [B,T,H,D] -> [B,H,T,D]
 * heads of attention), which leaves a fresh full-size Transpose per product in a training step's backward.
 */
function fuseTransposedMatMuls(graph: Graph): Graph {
  const producers = graph.producers();
  const swapped = (v: string): string | undefined => {
    const t = producers.get(v);
    if (!t || t.opType !== 'Transpose' || t.domain !== '') return undefined;
    const type = graph.types.get(t.inputs[0]);
    return type && swapsLastTwo(attrInts(t, 'perm', undefined), type.shape.length) ? t.inputs[0] : undefined;
  };
  let changed = false;
  const nodes = graph.nodes.map((n) => {
    if (n.opType !== 'MatMul' || n.domain !== '') return n;
    const [a, b] = n.inputs;
    const [ta, tb] = [graph.types.get(a), graph.types.get(b)];
    if (ta?.dtype !== DType.FLOAT || tb?.dtype !== DType.FLOAT || ta.shape.length < 2 || tb.shape.length < 2) return n;
    // transA only for 2-D products: on batched [T, D] blocks MLAS's transposed-A path runs at about a third of
    // the plain product's speed, slower than ORT's explicit transpose (attention's dV and dK, issue 10).
    const [sa, sb] = [ta.shape.length === 2 ? swapped(a) : undefined, swapped(b)];
    if (!sa && !sb) return n;
    changed = true;
    const attrs: Node['attrs'] = {};
    if (sa) attrs.transA = { kind: 'int', value: 1 };
    if (sb) attrs.transB = { kind: 'int', value: 1 };
    return { ...n, domain: MS_DOMAIN, opType: 'FusedMatMul', inputs: [sa ?? a, sb ?? b], attrs };
  });
  if (!changed) return graph;
  const out = graph.clone();
  out.nodes = withoutDeadTransposes(out, nodes);
  out.opsets = { ...out.opsets, [MS_DOMAIN]: 1 };
  return out;
}

/** Drops the Transposes that only fed fused products: ORT runs a node whose output nobody reads. */
function withoutDeadTransposes(graph: Graph, nodes: Node[]): Node[] {
  const read = new Set([...graph.outputs.map((o) => o.name), ...nodes.flatMap((n) => n.inputs)]);
  return nodes.filter((n) => n.opType !== 'Transpose' || n.domain !== '' || n.outputs.some((o) => read.has(o)));
}
