import { attrString, Dim, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { addInitializer, freshName, NormalizeContext } from './opset-normalize.js';

// Einsum-12 lowered at import to Transpose/Reshape/MatMul (DESIGN.md: ONNX Runtime decomposes Einsum into
// transposes anyway, and the op table then needs no Einsum rule). One operand: a transpose, with ReduceSum over
// indices the output drops. Two operands: indices in both operands and the output are batch dims, in both but
// not the output are contracted, in one operand and the output are that operand's free dims; each operand is
// transposed to [batch, free, contracted] / [batch, contracted, free], groups of several indices are merged by a
// Reshape, one MatMul, then the output is reshaped and transposed into the equation's order.

const EXAMPLES = "batched matrix products such as 'bhqd,bhkd->bhqk', 'bij,bjk->bik', 'ij,jk->ik', and transposes such as 'ij->ji'";

export function einsumToMatMul(node: Node, ctx: NormalizeContext): Node[] {
  const equation = attrString(node, 'equation', '').replace(/\s+/g, '');
  const refuse = (why: string): never => {
    throw new Error(`node '${node.name}' (Einsum): equation '${equation}' ${why}; qatkit imports ${EXAMPLES}`);
  };
  if (equation.includes('.')) refuse('uses an ellipsis');
  const [lhs, rhs] = equation.includes('->') ? equation.split('->') : [equation, undefined];
  const terms = lhs.split(',');
  if (terms.length !== node.inputs.length) refuse(`has ${terms.length} operands but the node has ${node.inputs.length} inputs`);
  if (terms.length > 2) refuse('has more than two operands');
  for (const t of terms) {
    if (!/^[A-Za-z]*$/.test(t)) refuse(`has an operand '${t}' that is not a list of index letters`);
    if (new Set(t).size !== t.length) refuse(`repeats an index within operand '${t}' (a diagonal or trace)`);
  }
  // Implicit output (no '->'): the indices that appear once, in alphabetical order.
  const all = terms.join('');
  const out = rhs ?? [...new Set(all)].filter((c) => all.indexOf(c) === all.lastIndexOf(c)).sort().join('');
  if (new Set(out).size !== out.length || [...out].some((c) => !all.includes(c))) refuse(`has an output '${out}' with repeated or unknown indices`);
  const shapes = node.inputs.map((i) => ctx.graph.typeOf(i).shape);
  terms.forEach((t, i) => {
    if (t.length !== shapes[i].length) refuse(`gives operand ${i} ${t.length} indices but it has rank ${shapes[i].length}`);
  });

  const emitted: Node[] = [];
  let counter = 0;
  const emit = (opType: string, inputs: string[], attrs: Node['attrs'] = {}, output?: string): string => {
    const name = output ?? freshName(ctx, `${node.name}/${opType}_${counter++}`);
    emitted.push({ opType, domain: '', name: output ? node.name : name, inputs, outputs: [name], attrs });
    return name;
  };
  const ints = (values: number[]) => addInitializer(ctx, `${node.name}/const_${counter++}`, Tensor.int64([values.length], values));
  const transpose = (x: string, from: string, to: string, output?: string): string => {
    const perm = [...to].map((c) => from.indexOf(c));
    if (!perm.every((p, i) => p === i)) return emit('Transpose', [x], { perm: { kind: 'ints', value: perm } }, output);
    if (!output) return x;
    // Already in order: the node that made x writes the output itself (an Identity only for 'ij->ij').
    const last = emitted[emitted.length - 1];
    if (!last || last.outputs[0] !== x) return emit('Identity', [x], {}, output);
    last.outputs[0] = output;
    last.name = node.name;
    return output;
  };
  const sizeOf = new Map<string, Dim>();
  terms.forEach((t, i) => [...t].forEach((c, k) => {
    const d = shapes[i][k];
    if (!sizeOf.has(c) || sizeOf.get(c) === 1) sizeOf.set(c, d);
  }));
  /** Sums the indices of operand `t` that neither the other operand nor the output has. */
  const sumOnly = (x: string, t: string, other: string): [string, string] => {
    const axes = [...t].flatMap((c, k) => (!other.includes(c) && !out.includes(c) ? [k] : []));
    if (axes.length === 0) return [x, t];
    const y = emit('ReduceSum', [x, ints(axes)], { keepdims: { kind: 'int', value: 0 } });
    return [y, [...t].filter((_, k) => !axes.includes(k)).join('')];
  };

  if (terms.length === 1) {
    const [x, t] = sumOnly(node.inputs[0], terms[0], '');
    transpose(x, t, out, node.outputs[0]);
    return emitted;
  }

  let [a, ta] = sumOnly(node.inputs[0], terms[0], terms[1]);
  let [b, tb] = sumOnly(node.inputs[1], terms[1], terms[0]);
  const batch = [...out].filter((c) => ta.includes(c) && tb.includes(c)).join('');
  const contracted = [...ta].filter((c) => tb.includes(c) && !out.includes(c)).join('');
  const freeA = [...ta].filter((c) => !tb.includes(c)).join('');
  const freeB = [...tb].filter((c) => !ta.includes(c)).join('');
  a = transpose(a, ta, batch + freeA + contracted);
  b = transpose(b, tb, batch + contracted + freeB);

  // Merged groups need their size: a product of static dims, or -1 for one group per Reshape.
  const groupDim = (group: string, minusUsed: { used: boolean }): number => {
    const dims = [...group].map((c) => sizeOf.get(c)!);
    if (dims.every((d) => typeof d === 'number')) return (dims as number[]).reduce((p, q) => p * q, 1);
    if (minusUsed.used) refuse(`merges index groups of symbolic size ([${dims}]) that a Reshape cannot infer`);
    minusUsed.used = true;
    return -1;
  };
  const merge = (x: string, groups: string[]): string => {
    if (groups.every((g) => g.length === 1)) return x;
    const minus = { used: false };
    // 0 copies a leading batch dim (same position before and after).
    const target = [...batch].map(() => 0).concat(groups.map((g) => groupDim(g, minus)));
    return emit('Reshape', [x, ints(target)]);
  };
  a = merge(a, [freeA, contracted]);
  b = merge(b, [contracted, freeB]);
  let y = emit('MatMul', [a, b]);
  const yOrder = batch + freeA + freeB;
  if (freeA.length !== 1 || freeB.length !== 1) {
    const dims = [...freeA + freeB].map((c) => sizeOf.get(c)!);
    const minus = { used: false };
    const target = [...batch].map(() => 0).concat(dims.map((d) => {
      if (typeof d === 'number') return d;
      if (minus.used) refuse(`has several output indices of symbolic size ([${dims}])`);
      minus.used = true;
      return -1;
    }));
    y = emit('Reshape', [y, ints(target)]);
  }
  transpose(y, yOrder, out, node.outputs[0]);
  return emitted;
}
