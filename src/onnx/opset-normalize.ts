import { Attr, attrInt, attrString, Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { einsumToMatMul } from './einsum.js';
import { unrollRecurrent } from './recurrent.js';

/**
 * Rewrites nodes of an opset 13..21 model into qatkit's internal opset-17 conventions. Each rule cites the
 * operator version (ONNX docs/Changelog.md) whose change it undoes. Rules run one node at a time, in
 * topological order, after the types of the node's inputs are known, and return the replacement nodes.
 */

export const INTERNAL_OPSET = 17;
const QATKIT_DOMAIN = 'ai.qatkit';
export const MIN_IMPORT_OPSET = 13;
export const MAX_IMPORT_OPSET = 21;

export interface NormalizeContext {
  graph: Graph;
  /** The default-domain opset the model was exported with. */
  opset: number;
  /** What the rules changed that a user should know (training-mode BN imported in inference form, ...). */
  notes?: string[];
}

interface Rule {
  /** The rule applies to models whose opset is in [since, until). */
  since: number;
  until?: number;
  apply(node: Node, ctx: NormalizeContext): Node[];
  /** For rules that replace the op by others: the [domain, op type]s emitted (checked against the op table). */
  emits?: [string, string][];
}

const fail = (node: Node, why: string): never => {
  throw new Error(`node '${node.name}' (${node.opType}): ${why}`);
};

function constantInput(node: Node, ctx: NormalizeContext, index: number, what: string): number[] {
  const t = ctx.graph.initializers.get(node.inputs[index]);
  if (!t) fail(node, `${what} (input ${index}) must be a constant to convert opset ${ctx.opset} to opset ${INTERNAL_OPSET}`);
  return t!.toNumbers();
}

export function freshName(ctx: NormalizeContext, base: string): string {
  let name = base;
  for (let i = 1; ctx.graph.hasValue(name) || ctx.graph.nodes.some((n) => n.outputs.includes(name)); i++) name = `${base}_${i}`;
  return name;
}

export function addInitializer(ctx: NormalizeContext, base: string, t: Tensor): string {
  const name = freshName(ctx, base);
  ctx.graph.initializers.set(name, t);
  ctx.graph.types.set(name, { dtype: t.dtype, shape: t.dims });
  return name;
}

const withoutAttrs = (node: Node, names: string[]): Record<string, Attr> =>
  Object.fromEntries(Object.entries(node.attrs).filter(([k]) => !names.includes(k)));

/** Drops an attribute whose value is the one opset 17 implies; refuses any other value. */
function dropDefault(node: Node, name: string, isDefault: (a: Attr) => boolean, why: string): Node {
  const a = node.attrs[name];
  if (a && !isDefault(a)) fail(node, `${why}; opset ${INTERNAL_OPSET} has no equivalent`);
  return { ...node, attrs: withoutAttrs(node, [name]) };
}

/** ReduceX-18: axes moved from attribute to optional input, with noop_with_empty_axes (not ReduceSum: 13). */
function reduceAxesToAttribute(node: Node, ctx: NormalizeContext): Node[] {
  const axes = node.inputs[1] ? constantInput(node, ctx, 1, 'axes') : [];
  const noop = attrInt(node, 'noop_with_empty_axes', 0) === 1;
  const attrs = withoutAttrs(node, ['noop_with_empty_axes', 'axes']);
  if (axes.length === 0 && noop) return [{ ...node, opType: 'Identity', inputs: [node.inputs[0]], attrs: {} }];
  if (axes.length > 0) attrs.axes = { kind: 'ints', value: axes };
  return [{ ...node, inputs: [node.inputs[0]], attrs }];
}

/** Split-18: num_outputs (last chunk smaller when uneven) becomes the split input of Split-13. */
function splitNumOutputsToInput(node: Node, ctx: NormalizeContext): Node[] {
  if (!node.attrs.num_outputs) return [node];
  const count = attrInt(node, 'num_outputs', 0);
  if (count !== node.outputs.length) fail(node, `num_outputs=${count} but the node has ${node.outputs.length} outputs`);
  const attrs = withoutAttrs(node, ['num_outputs']);
  const shape = ctx.graph.typeOf(node.inputs[0]).shape;
  const axis = attrInt(node, 'axis', 0);
  const dim = shape[axis < 0 ? axis + shape.length : axis];
  if (typeof dim !== 'number') {
    // Split-13 without a split input splits evenly, which is Split-18's meaning whenever the dim divides.
    return [{ ...node, inputs: [node.inputs[0]], attrs }];
  }
  // Split-18 shape inference: chunks of ceil(dim / n), the last one taking what is left.
  const chunk = Math.ceil(dim / count);
  const last = dim - chunk * (count - 1);
  if (last < 0) fail(node, `axis ${axis} of size ${dim} cannot be split into num_outputs=${count} chunks of ${chunk}`);
  const sizes = [...new Array<number>(count - 1).fill(chunk), last];
  const split = addInitializer(ctx, `${node.name}/split`, Tensor.int64([count], sizes));
  return [{ ...node, inputs: [node.inputs[0], split], attrs }];
}

/** Pad-18: optional axes input (pads given only for those axes) expanded to pads for every axis. */
function padAxesToFullPads(node: Node, ctx: NormalizeContext): Node[] {
  const mode = attrString(node, 'mode', 'constant');
  if (!['constant', 'reflect', 'edge'].includes(mode)) {
    fail(node, `mode '${mode}' (Pad-19) has no opset-${INTERNAL_OPSET} equivalent; valid modes: constant, reflect, edge`);
  }
  if (!node.inputs[3]) return [node];
  const rank = ctx.graph.typeOf(node.inputs[0]).shape.length;
  const axes = constantInput(node, ctx, 3, 'axes').map((a) => (a < 0 ? a + rank : a));
  const pads = constantInput(node, ctx, 1, 'pads');
  if (pads.length !== 2 * axes.length) fail(node, `pads has ${pads.length} values for ${axes.length} axes (need ${2 * axes.length})`);
  const full = new Array<number>(2 * rank).fill(0);
  axes.forEach((a, i) => {
    full[a] = pads[i];
    full[a + rank] = pads[i + axes.length];
  });
  const padsName = addInitializer(ctx, `${node.name}/pads`, Tensor.int64([2 * rank], full));
  const inputs = [node.inputs[0], padsName, node.inputs[2] ?? ''];
  while (inputs.length > 1 && !inputs[inputs.length - 1]) inputs.pop();
  return [{ ...node, inputs }];
}

function consumed(ctx: NormalizeContext, value: string): boolean {
  return !!value && (ctx.graph.nodes.some((n) => n.inputs.includes(value)) || ctx.graph.outputs.some((o) => o.name === value));
}

/**
 * Training-mode BatchNormalization (torch.onnx.export with TrainingMode.PRESERVE on a train-mode model):
 * BatchNormalization-9 with running mean/var (and saved mean/var) outputs at opset 13, or BatchNormalization-15
 * with training_mode=1 and running-stat outputs. Imported in inference form: the scale, bias and running
 * statistics are what qatkit trains (with batch statistics again, train/batchnorm-mode.ts) and evaluates. An extra
 * output some node reads becomes an Identity of the running statistic it stands for.
 */
function batchNormToInference(node: Node, ctx: NormalizeContext): Node[] {
  const training = attrInt(node, 'training_mode', 0) === 1 || node.outputs.slice(1).some((o) => o);
  if (!training) return [node];
  ctx.notes?.push(`'${node.name}' (BatchNormalization) was exported in training mode; imported in inference form (running statistics)`);
  const out: Node[] = [{ ...node, outputs: [node.outputs[0]], attrs: withoutAttrs(node, ['training_mode']) }];
  node.outputs.forEach((o, i) => {
    if (i === 0 || !consumed(ctx, o)) return;
    // Outputs 1/3 are means, 2/4 variances (BatchNormalization-9: mean, var, saved_mean, saved_var).
    const stat = node.inputs[i % 2 === 1 ? 3 : 4];
    out.push({ opType: 'Identity', domain: '', name: `${node.name}/stat${i}`, inputs: [stat], outputs: [o], attrs: {} });
  });
  return out;
}

/**
 * Dropout-12/13 with training_mode true (a train-mode export) imports in inference form, y = x: qatkit's training
 * step does not drop activations of imported models. The mask output, where read, is then all true.
 */
function dropoutToInference(node: Node, ctx: NormalizeContext): Node[] {
  if (!node.inputs[2]) return [node];
  const mode = ctx.graph.initializers.get(node.inputs[2]);
  if (!mode || mode.toNumbers()[0] !== 0) {
    ctx.notes?.push(`'${node.name}' (Dropout) was exported in training mode; imported in inference form (no dropout)`);
  }
  const outputs = consumed(ctx, node.outputs[1] ?? '') ? node.outputs : [node.outputs[0]];
  return [{ ...node, inputs: node.inputs.slice(0, 2), outputs }];
}

/** Gelu-20 is not an opset-17 op: qatkit's own ai.qatkit.Gelu (same attributes) is lowered to Erf/Tanh forms. */
function geluToQatkit(node: Node): Node[] {
  return [{ ...node, domain: QATKIT_DOMAIN }];
}

/** Mish-18 is not an opset-17 op: x * tanh(softplus(x)). */
function mishDecompose(node: Node, ctx: NormalizeContext): Node[] {
  const x = node.inputs[0];
  const sp = freshName(ctx, `${node.name}/softplus`);
  const th = freshName(ctx, `${node.name}/tanh`);
  return [
    { opType: 'Softplus', domain: '', name: sp, inputs: [x], outputs: [sp], attrs: {} },
    { opType: 'Tanh', domain: '', name: th, inputs: [sp], outputs: [th], attrs: {} },
    { opType: 'Mul', domain: '', name: node.name, inputs: [x, th], outputs: [node.outputs[0]], attrs: {} },
  ];
}

const REDUCE_WITH_AXES_INPUT_SINCE_18 = [
  'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp',
  'ReduceSumSquare',
];

/** What an unrolled LSTM / GRU is made of (src/onnx/recurrent.ts). */
const RECURRENT_EMITS: [string, string][] = ['MatMul', 'Add', 'Sub', 'Mul', 'Split', 'Sigmoid', 'Tanh', 'Concat', 'Unsqueeze', 'Identity', 'Transpose'].map((op) => ['', op]);

const RULES: Record<string, Rule[]> = {
  ...Object.fromEntries(REDUCE_WITH_AXES_INPUT_SINCE_18.map((op) => [op, [{ since: 18, apply: reduceAxesToAttribute }]])),
  Split: [{ since: 18, apply: splitNumOutputsToInput }],
  Pad: [{ since: 18, apply: padAxesToFullPads }],
  BatchNormalization: [{ since: 13, apply: batchNormToInference }],
  Dropout: [{ since: 13, apply: dropoutToInference }],
  Einsum: [{ since: 13, apply: einsumToMatMul, emits: [['', 'Transpose'], ['', 'Reshape'], ['', 'MatMul'], ['', 'ReduceSum']] }],
  // AveragePool-19 added dilations; opset 17 pools without them.
  AveragePool: [{ since: 19, apply: (n) => [dropDefault(n, 'dilations', (a) => a.kind === 'ints' && a.value.every((d) => d === 1), 'dilations other than 1 (AveragePool-19)')] }],
  // Cast-19 saturate only affects float8 targets, which qatkit does not use.
  Cast: [{ since: 19, apply: (n) => [{ ...n, attrs: withoutAttrs(n, ['saturate']) }] }],
  CastLike: [{ since: 19, apply: (n) => [{ ...n, attrs: withoutAttrs(n, ['saturate']) }] }],
  ScatterElements: [{ since: 18, apply: (n) => [dropReduction(n)] }],
  ScatterND: [{ since: 18, apply: (n) => [dropReduction(n)] }],
  Gelu: [{ since: 20, apply: geluToQatkit, emits: [[QATKIT_DOMAIN, 'Gelu']] }],
  Mish: [{ since: 18, apply: mishDecompose, emits: [['', 'Softplus'], ['', 'Tanh'], ['', 'Mul']] }],
  LSTM: [{ since: 13, apply: unrollRecurrent, emits: RECURRENT_EMITS }],
  GRU: [{ since: 13, apply: unrollRecurrent, emits: RECURRENT_EMITS }],
};

function dropReduction(n: Node): Node {
  const r = attrString(n, 'reduction', 'none');
  if (r === 'min' || r === 'max') fail(n, `reduction '${r}' (opset 18) has no opset-${INTERNAL_OPSET} equivalent; valid: none, add, mul`);
  return n;
}

function rulesFor(node: Node, opset: number): Rule[] {
  if (node.domain !== '') return [];
  return (RULES[node.opType] ?? []).filter((r) => opset >= r.since && (r.until === undefined || opset < r.until));
}

/** [domain, op type]s that replace `opType` at this opset (the op itself is then not needed in the op table). */
export function replacementOps(opType: string, opset: number): [string, string][] | undefined {
  const rule = rulesFor({ opType, domain: '', name: '', inputs: [], outputs: [], attrs: {} }, opset).find((r) => r.emits);
  return rule?.emits;
}

/** The opset-17 form of one node (possibly several nodes); new constants go into ctx.graph's initializers. */
export function normalizeNode(node: Node, ctx: NormalizeContext): Node[] {
  let nodes = [node];
  for (const rule of rulesFor(node, ctx.opset)) nodes = nodes.flatMap((n) => (n.opType === node.opType ? rule.apply(n, ctx) : [n]));
  return nodes;
}
