import { attrInt, attrString, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { scopeOf } from './parameter-names.js';
import { addInitializer, freshName, NormalizeContext } from './opset-normalize.js';

/**
 * ONNX LSTM-14 and GRU-14 (nn.LSTM, nn.GRU as torch.onnx.export writes them) unrolled at import over their fixed
 * sequence length into MatMul, Add, Split, Sigmoid, Tanh, Mul and Concat: every op then has a gradient rule, and the
 * gate products are plain MatMuls with initializer weights, which QAT quantizes and export turns into integer
 * products like any Linear (what Brevitas' QuantLSTM and torchao's QAT of recurrent layers quantize too).
 *
 * Per direction, the input products of all steps are one MatMul, X [T, B, I] x W^T [I, G H] plus the bias; each step
 * adds H_{t-1} x R^T [H, G H] (skipped at t = 0 without initial_h, where H_0 = 0) and applies the gates of
 * the ONNX operator spec (LSTM gates i, o, f, c; GRU z, r, h). W^T and R^T are stored transposed per direction under
 * the module's names ('lstm.weight_ih_l0', 'lstm.weight_hh_l0', with '_reverse' for the backward direction, and
 * the bias, Wb + Rb, as 'lstm.bias_l0'); GRU keeps Rb of its h gate apart ('gru.bias_hn_l0') where
 * linear_before_reset puts it inside r * (.).
 *
 * Refused, naming the node: a sequence length that is not fixed, sequence_lens, peepholes, clip, input_forget,
 * and activations other than the defaults.
 */

type Cell = 'LSTM' | 'GRU';
const GATES: Record<Cell, number> = { LSTM: 4, GRU: 3 };

export function unrollRecurrent(node: Node, ctx: NormalizeContext): Node[] {
  const cell = node.opType as Cell;
  const fail = (why: string): never => {
    throw new Error(`node '${node.name}' (${cell}): ${why}`);
  };
  const g = ctx.graph;
  const gates = GATES[cell];
  const hidden = attrInt(node, 'hidden_size', 0);
  if (hidden < 1) fail('hidden_size must be given');
  const direction = attrString(node, 'direction', 'forward');
  if (!['forward', 'reverse', 'bidirectional'].includes(direction)) fail(`direction '${direction}' is not valid; valid: forward, reverse, bidirectional`);
  const layout = attrInt(node, 'layout', 0);
  if (node.attrs.clip) fail('clip is not supported (torch.onnx.export never writes it)');
  if (attrInt(node, 'input_forget', 0) !== 0) fail('input_forget=1 is not supported');
  if (node.attrs.activations) {
    const defaults = cell === 'LSTM' ? ['Sigmoid', 'Tanh', 'Tanh'] : ['Sigmoid', 'Tanh'];
    const given = node.attrs.activations.kind === 'strings' ? node.attrs.activations.value : [];
    if (given.some((a, i) => a !== defaults[i % defaults.length])) fail(`activations [${given}] are not supported; valid: the defaults [${defaults}]`);
  }
  const [x, w, r, bias, seqLens, initialH, initialC, peepholes] = node.inputs;
  if (seqLens) fail('sequence_lens is not supported: every sequence has the full length (export without packed sequences)');
  if (peepholes) fail('peephole weights (P) are not supported');
  const weights = [w, r].map((v, i) => g.initializers.get(v) ?? fail(`${i === 0 ? 'W' : 'R'} must be an initializer (a trained weight)`));
  const xShape = g.typeOf(x).shape;
  const steps = xShape[layout === 1 ? 1 : 0];
  if (typeof steps !== 'number') fail(`the sequence length must be fixed to unroll the ${cell}; X is [${xShape}] (export with a fixed length)`);
  const inputSize = xShape[2];
  if (typeof inputSize !== 'number') fail(`the input size must be known; X is [${xShape}]`);
  const dirs = direction === 'bidirectional' ? 2 : 1;
  const linearBeforeReset = cell === 'GRU' && attrInt(node, 'linear_before_reset', 0) === 1;
  const biasValues = bias ? (g.initializers.get(bias)?.toNumbers() ?? fail('B must be an initializer')) : undefined;

  const out: Node[] = [];
  let counter = 0;
  const emit = (opType: string, inputs: string[], attrs: Node['attrs'] = {}, outputs = 1, named?: string[]): string[] => {
    const names = named ?? Array.from({ length: outputs }, () => freshName(ctx, `${node.name}/${opType}_${counter++}`));
    for (const n of names) g.types.delete(n);
    out.push({ opType, domain: '', name: freshName(ctx, `${node.name}/${opType}_node${counter++}`), inputs, outputs: names, attrs });
    return names;
  };
  const one = (opType: string, inputs: string[], attrs: Node['attrs'] = {}, output?: string) => emit(opType, inputs, attrs, 1, output ? [output] : undefined)[0];
  const ints = (key: string, values: number[]) => ({ [key]: { kind: 'ints' as const, value: values } });
  const int = (key: string, value: number) => ({ [key]: { kind: 'int' as const, value } });

  // Module-style names: '/lstm/LSTM_1' -> 'lstm.*_l1'.
  const scope = scopeOf(node.name) || node.name.replace(/[^A-Za-z0-9_.]/g, '_');
  const layer = /_(\d+)$/.exec(node.name)?.[1] ?? '0';
  const param = (what: string, d: number, t: Tensor) => addInitializer(ctx, `${scope}.${what}_l${layer}${d === 1 ? '_reverse' : ''}`, t);
  /** Rows [gate blocks] of direction d of a [dirs, G H, K] weight, transposed to [K, G H]. */
  const transposed = (t: Tensor, d: number): Tensor => {
    const [, rows, cols] = t.dims;
    const v = t.toNumbers();
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[j * rows + i] = v[(d * rows + i) * cols + j];
    return Tensor.float([cols, rows], data);
  };

  const seqFirst = layout === 1 ? one('Transpose', [x], ints('perm', [1, 0, 2])) : x;
  const initial = (v: string | undefined): string[] | undefined => {
    if (!v) return undefined;
    const src = layout === 1 ? one('Transpose', [v], ints('perm', [1, 0, 2])) : v;
    return dirs === 1 ? [src] : emit('Split', [src], int('axis', 0), 2);
  };
  // torch.onnx.export writes the default zero states as ConstantOfShape(0): dropped, so step 0 has no product with
  // zeros (nor an activation quantizer observing them).
  const h0 = initial(isZeros(ctx, initialH) ? undefined : initialH);
  const c0 = cell === 'LSTM' ? initial(isZeros(ctx, initialC) ? undefined : initialC) : undefined;

  const ys: string[] = [];
  const lastH: string[] = [];
  const lastC: string[] = [];
  for (let d = 0; d < dirs; d++) {
    const reverse = direction === 'reverse' || d === 1;
    const wT = param('weight_ih', d, transposed(weights[0], d));
    const rT = transposed(weights[1], d);
    const gh = gates * hidden;
    // Wb + Rb, except GRU's Rb of the h gate under linear_before_reset (added inside r * (.)).
    const b = new Float32Array(gh);
    let hnBias: string | undefined;
    if (biasValues) {
      for (let k = 0; k < gh; k++) b[k] = biasValues[d * 2 * gh + k] + (linearBeforeReset && k >= 2 * hidden ? 0 : biasValues[d * 2 * gh + gh + k]);
      if (linearBeforeReset) hnBias = param('bias_hn', d, Tensor.float([hidden], biasValues.slice(d * 2 * gh + gh + 2 * hidden, d * 2 * gh + 2 * gh)));
    }
    // GRU without linear_before_reset multiplies r * H_{t-1} before the h gate's product: R^T split in two.
    const splitR = cell === 'GRU' && !linearBeforeReset;
    let rZr: string, rH: string | undefined;
    if (splitR) {
      const v = rT.toNumbers();
      const zr = new Float32Array(hidden * 2 * hidden);
      const hh = new Float32Array(hidden * hidden);
      for (let i = 0; i < hidden; i++) {
        for (let j = 0; j < 2 * hidden; j++) zr[i * 2 * hidden + j] = v[i * gh + j];
        for (let j = 0; j < hidden; j++) hh[i * hidden + j] = v[i * gh + 2 * hidden + j];
      }
      rZr = param('weight_hh_zr', d, Tensor.float([hidden, 2 * hidden], zr));
      rH = param('weight_hh_n', d, Tensor.float([hidden, hidden], hh));
    } else {
      rZr = param('weight_hh', d, rT);
    }
    let xg = one('MatMul', [seqFirst, wT]);
    if (biasValues) xg = one('Add', [xg, param('bias', d, Tensor.float([gh], b))]);
    const perStep = steps === 1 ? [xg] : emit('Split', [xg], int('axis', 0), steps as number);
    let h = h0?.[d];
    let c = c0?.[d];
    const hs: string[] = new Array(steps as number);
    for (let s = 0; s < (steps as number); s++) {
      const t = reverse ? (steps as number) - 1 - s : s;
      const xt = perStep[t];
      if (cell === 'LSTM') {
        const pre = h ? one('Add', [xt, one('MatMul', [h, rZr])]) : xt;
        const [i, o, f, cc] = emit('Split', [pre], int('axis', 2), 4);
        const [ig, og, cand] = [one('Sigmoid', [i]), one('Sigmoid', [o]), one('Tanh', [cc])];
        const keep = one('Mul', [ig, cand]);
        c = c ? one('Add', [one('Mul', [one('Sigmoid', [f]), c]), keep]) : keep;
        h = one('Mul', [og, one('Tanh', [c])]);
      } else {
        const [xz, xr, xh] = emit('Split', [xt], int('axis', 2), 3);
        let z: string, rg: string, cand: string;
        if (!h) {
          // H_0 = 0: the recurrent products vanish (Rb stays, inside the bias or hn bias).
          [z, rg] = [one('Sigmoid', [xz]), one('Sigmoid', [xr])];
          cand = one('Tanh', [hnBias ? one('Add', [xh, one('Mul', [rg, hnBias])]) : xh]);
          h = one('Sub', [cand, one('Mul', [z, cand])]);
        } else {
          const prev: string = h;
          if (splitR) {
            const [hz, hr] = emit('Split', [one('MatMul', [prev, rZr])], int('axis', 2), 2);
            [z, rg] = [one('Sigmoid', [one('Add', [xz, hz])]), one('Sigmoid', [one('Add', [xr, hr])])];
            cand = one('Tanh', [one('Add', [xh, one('MatMul', [one('Mul', [rg, prev]), rH!])])]);
          } else {
            const [hz, hr, hh] = emit('Split', [one('MatMul', [prev, rZr])], int('axis', 2), 3);
            [z, rg] = [one('Sigmoid', [one('Add', [xz, hz])]), one('Sigmoid', [one('Add', [xr, hr])])];
            const recurrent = hnBias ? one('Add', [hh, hnBias]) : hh;
            cand = one('Tanh', [one('Add', [xh, one('Mul', [rg, recurrent])])]);
          }
          // H_t = (1 - z) * cand + z * H_{t-1} = cand + z * (H_{t-1} - cand).
          h = one('Add', [cand, one('Mul', [z, one('Sub', [prev, cand])])]);
        }
      }
      hs[t] = h!;
    }
    ys.push(steps === 1 ? hs[0] : one('Concat', hs, int('axis', 0)));
    lastH.push(h!);
    if (c) lastC.push(c);
  }

  // Y [T, dirs, B, H] (layout 1: [B, T, dirs, H]); Y_h, Y_c [dirs, B, H] (layout 1: [B, dirs, H]).
  const [yOut, hOut, cOut] = node.outputs;
  const withDirs = ys.map((y) => one('Unsqueeze', [y, addInitializer(ctx, `${node.name}/axis1`, Tensor.int64([1], [1]))]));
  if (yOut) {
    const y = dirs === 1 ? withDirs[0] : one('Concat', withDirs, int('axis', 1));
    one(layout === 1 ? 'Transpose' : 'Identity', [y], layout === 1 ? ints('perm', [2, 0, 1, 3]) : {}, yOut);
  }
  const stacked = (values: string[], output: string) => {
    const v = values.length === 1 ? values[0] : one('Concat', values, int('axis', 0));
    one(layout === 1 ? 'Transpose' : 'Identity', [v], layout === 1 ? ints('perm', [1, 0, 2]) : {}, output);
  };
  if (hOut) stacked(lastH, hOut);
  if (cOut && cell === 'LSTM') stacked(lastC, cOut);
  return out;
}

/** Ops whose output holds only elements of their input 0: zeros in, zeros out. */
const MOVES_ELEMENTS = new Set(['Slice', 'Reshape', 'Expand', 'Squeeze', 'Unsqueeze', 'Identity', 'Transpose', 'Gather', 'Cast', 'Tile']);

/**
 * Whether `value` is all zeros: a zero initializer, or ConstantOfShape with value 0 (its default), possibly sliced
 * or reshaped (a multi-layer nn.LSTM slices each layer's states from one zero tensor).
 */
function isZeros(ctx: NormalizeContext, value: string | undefined): boolean {
  if (!value) return false;
  const t = ctx.graph.initializers.get(value);
  if (t) return t.toNumbers().every((v) => v === 0);
  const producer = ctx.graph.nodes.find((n) => n.outputs.includes(value));
  if (producer && MOVES_ELEMENTS.has(producer.opType)) return isZeros(ctx, producer.inputs[0]);
  if (!producer || producer.opType !== 'ConstantOfShape') return false;
  const fill = producer.attrs.value;
  return !fill || (fill.kind === 'tensor' && fill.value.toNumbers().every((v) => v === 0));
}
