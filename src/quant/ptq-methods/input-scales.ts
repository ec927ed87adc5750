import { attrInt, Graph, Node, topologicalOrder } from '../../ir/graph.js';
import { Tensor } from '../../ir/tensor.js';
import { Model } from '../../models/model.js';
import { LinearTarget } from './layer-targets.js';

/**
 * Per-input-channel scales moved between a layer's input and its weight: X W = (X diag(1/s)) (diag(s) W). AWQ
 * (Lin et al. 2023, Section 3.2) and SmoothQuant (Xiao et al. 2022, Section 4) both apply one s to every Linear
 * reading the same activation, and fold diag(1/s) into the op that produced it, so the float model computes the
 * same function with no extra op:
 * - 'norm': a LayerNormalization (gain and bias divided by s) or an RMSNorm's gain Mul;
 * - 'linear': the previous Linear's output columns (weight and bias), also through a ReLU (ReLU(x / s) =
 *   ReLU(x) / s for s > 0) or one operand of an elementwise Mul (Llama's SiLU(gate) * up: the up projection);
 * - 'explicit': otherwise (GELU before GPT's second MLP Linear: AWQ's "ScaledActivation"), a Mul by 1/s
 *   inserted before the layers, a node of the model that export keeps.
 * Folding needs the activation and what is folded into to be read only by the layers scaled.
 */
export type ScaleFold = 'norm' | 'linear' | 'explicit';

/** Layers reading one activation: the unit AWQ and SmoothQuant scale together. */
export interface ScaleGroup {
  /** The activation (the layers' common input). */
  input: string;
  targets: LinearTarget[];
  channels: number;
}

/** Node-name prefix of inserted input-scale Muls (export finds them by it). */
export const INPUT_SCALE_PREFIX = 'ptq_input_scale/';

/**
 * Groups the targets by input activation. A tied weight (an embedding table shared with the head) cannot take
 * a per-channel scale without changing the embedding, so its layer is left out.
 */
export function scaleGroups(targets: LinearTarget[]): ScaleGroup[] {
  const groups = new Map<string, ScaleGroup>();
  for (const t of targets) {
    if (t.tied) continue;
    const g = groups.get(t.input) ?? { input: t.input, targets: [], channels: t.cols };
    g.targets.push(t);
    groups.set(t.input, g);
  }
  return [...groups.values()];
}

interface Ctx {
  graph: Graph;
  producers: Map<string, Node>;
  consumers: Map<string, Node[]>;
}

const onlyReadBy = (ctx: Ctx, value: string, readers: Set<Node>): boolean =>
  !ctx.graph.outputs.some((o) => o.name === value) && (ctx.consumers.get(value) ?? []).every((n) => readers.has(n));
const soleReader = (ctx: Ctx, value: string, node: Node): boolean => onlyReadBy(ctx, value, new Set([node]));
const vectorInit = (ctx: Ctx, name: string | undefined, channels: number): Tensor | undefined => {
  const t = name ? ctx.graph.initializers.get(name) : undefined;
  return t && t.size === channels && t.dims.at(-1) === channels && t.dims.slice(0, -1).every((d) => d === 1) ? t : undefined;
};
const divided = (t: Tensor, s: Float64Array): Tensor => new Tensor(t.dtype, t.dims, Float32Array.from(t.data as Float32Array, (v, i) => v / s[i % s.length]));
/** Divides an initializer by s as it is when the edit is applied (another group's edit may have changed it since planning). */
const divideInit = (ctx: Ctx, name: string, s: Float64Array): void => {
  ctx.graph.initializers.set(name, divided(ctx.graph.initializers.get(name)!, s));
};

/** Plans dividing `value`'s channels by s at its producer; returns the edits, or undefined if not foldable. */
function planFold(ctx: Ctx, value: string, channels: number, depth = 0): { kind: ScaleFold; apply: (s: Float64Array) => void } | undefined {
  const p = ctx.producers.get(value);
  if (!p || depth > 2) return undefined;
  const init = ctx.graph.initializers;
  const own = (name: string) => soleReader(ctx, name, p);
  if (p.opType === 'LayerNormalization') {
    const axis = attrInt(p, 'axis', -1);
    const gain = vectorInit(ctx, p.inputs[1], channels);
    const bias = p.inputs[2] ? vectorInit(ctx, p.inputs[2], channels) : undefined;
    if (axis !== -1 || !gain || !own(p.inputs[1]) || (p.inputs[2] && (!bias || !own(p.inputs[2])))) return undefined;
    return {
      kind: 'norm',
      apply: (s) => {
        divideInit(ctx, p.inputs[1], s);
        if (bias) divideInit(ctx, p.inputs[2], s);
      },
    };
  }
  if (p.opType === 'Mul') {
    // RMSNorm's gain (or any per-channel constant factor), or a product with a Linear's output.
    const k = p.inputs.findIndex((i) => vectorInit(ctx, i, channels) && own(i));
    if (k >= 0) {
      return { kind: 'norm', apply: (s) => divideInit(ctx, p.inputs[k], s) };
    }
    for (const operand of p.inputs) {
      if (!soleReader(ctx, operand, p)) continue;
      const inner = planFold(ctx, operand, channels, depth + 1);
      if (inner?.kind === 'linear') return inner;
    }
    return undefined;
  }
  if (p.opType === 'Relu') {
    if (!soleReader(ctx, p.inputs[0], p)) return undefined;
    const inner = planFold(ctx, p.inputs[0], channels, depth + 1);
    return inner?.kind === 'linear' ? inner : undefined;
  }
  if (p.opType === 'Add') {
    const k = p.inputs.findIndex((i) => vectorInit(ctx, i, channels) && own(i));
    if (k < 0) return undefined;
    const y = p.inputs[1 - k];
    const mm = ctx.producers.get(y);
    if (!mm || mm.opType !== 'MatMul' || !soleReader(ctx, y, p)) return undefined;
    const weight = linearColumns(ctx, mm, channels);
    if (!weight) return undefined;
    return { kind: 'linear', apply: (s) => (weight(s), divideInit(ctx, p.inputs[k], s)) };
  }
  if (p.opType === 'MatMul' || p.opType === 'Gemm') {
    const weight = linearColumns(ctx, p, channels);
    if (!weight) return undefined;
    const c = p.opType === 'Gemm' && p.inputs[2] ? vectorInit(ctx, p.inputs[2], channels) : undefined;
    if (p.opType === 'Gemm' && p.inputs[2] && (!c || !own(p.inputs[2]))) return undefined;
    return { kind: 'linear', apply: (s) => (weight(s), c && divideInit(ctx, p.inputs[2], s)) };
  }
  return undefined;
}

/** Divides the output columns of a Linear's own weight initializer by s (a MatMul [K, N], a Gemm [K, N] or transB [N, K]). */
function linearColumns(ctx: Ctx, node: Node, channels: number): ((s: Float64Array) => void) | undefined {
  const name = node.inputs[1];
  const w = ctx.graph.initializers.get(name);
  if (!w || w.dims.length !== 2 || !soleReader(ctx, name, node)) return undefined;
  if (node.opType === 'Gemm' && (attrInt(node, 'transA', 0) || attrFloatIs(node, 'alpha') || attrFloatIs(node, 'beta'))) return undefined;
  const transB = node.opType === 'Gemm' && attrInt(node, 'transB', 0) === 1;
  const [k, n] = transB ? [w.dims[1], w.dims[0]] : [w.dims[0], w.dims[1]];
  if (n !== channels) return undefined;
  return (s) => {
    const d = ctx.graph.initializers.get(name)!.data as Float32Array;
    const out = new Float32Array(d.length);
    for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) {
      const at = transB ? j * k + i : i * n + j;
      out[at] = d[at] / s[j];
    }
    ctx.graph.initializers.set(name, new Tensor(w.dtype, w.dims, out));
  };
}

function attrFloatIs(node: Node, name: string): boolean {
  const a = node.attrs[name];
  return !!a && a.kind === 'float' && a.value !== 1;
}

/** How each group would take its scales (without changing anything). */
export function foldKinds(model: Model, groups: ScaleGroup[]): ScaleFold[] {
  const graph = model.graph.clone();
  const ctx: Ctx = { graph, producers: graph.producers(), consumers: graph.consumers() };
  return groups.map((g) => foldFor(ctx, g)?.kind ?? 'explicit');
}

function foldFor(ctx: Ctx, g: ScaleGroup): ReturnType<typeof planFold> {
  const readers = new Set(g.targets.map((t) => ctx.graph.nodes.find((n) => n.name === t.layer)!));
  return onlyReadBy(ctx, g.input, readers) ? planFold(ctx, g.input, g.channels) : undefined;
}

/**
 * The float model with each group's input divided by s (folded, or an explicit Mul where allowed) and each of
 * its layers' weights multiplied by s along the input features. `explicit: false` leaves groups with no
 * foldable producer unscaled (SmoothQuant migrates only where the producer absorbs the scale).
 */
export function applyInputScales(model: Model, scaled: { group: ScaleGroup; s: Float64Array }[], options: { explicit?: boolean } = {}): { model: Model; folds: ScaleFold[] } {
  const graph = model.graph.clone();
  const ctx: Ctx = { graph, producers: graph.producers(), consumers: graph.consumers() };
  const folds: ScaleFold[] = [];
  // Plan against the original graph first: one group's fold must not see another group's edits.
  const plans = scaled.map(({ group }) => foldFor(ctx, group));
  scaled.forEach(({ group, s }, i) => {
    const plan = plans[i];
    if (!plan && options.explicit === false) {
      folds.push('explicit');
      return;
    }
    for (const t of group.targets) scaleWeightInputs(graph, t, s);
    if (plan) plan.apply(s);
    else insertScaleMul(graph, group, s);
    folds.push(plan?.kind ?? 'explicit');
  });
  graph.nodes = topologicalOrder(graph);
  return { model: { ...model, graph }, folds };
}

function scaleWeightInputs(graph: Graph, t: LinearTarget, s: Float64Array): void {
  const w = graph.initializers.get(t.tensor)!;
  const d = w.data as Float32Array;
  const out = new Float32Array(d.length);
  for (let r = 0; r < t.rows; r++) for (let c = 0; c < t.cols; c++) {
    const at = t.layout === 'nk' ? r * t.cols + c : c * t.rows + r;
    out[at] = d[at] * s[c];
  }
  graph.initializers.set(t.tensor, new Tensor(w.dtype, w.dims, out));
}

function insertScaleMul(graph: Graph, group: ScaleGroup, s: Float64Array): void {
  const layer = group.targets[0].layer;
  const inv = `${INPUT_SCALE_PREFIX}${layer}/inverse_scale`;
  const out = `${INPUT_SCALE_PREFIX}${layer}/output`;
  graph.initializers.set(inv, Tensor.float([group.channels], Float64Array.from(s, (v) => 1 / v)));
  graph.nodes.push({ name: `${INPUT_SCALE_PREFIX}${layer}`, opType: 'Mul', domain: '', inputs: [group.input, inv], outputs: [out], attrs: {} });
  graph.types.set(out, graph.typeOf(group.input));
  const layers = new Set(group.targets.map((t) => t.layer));
  for (const n of graph.nodes) if (layers.has(n.name)) n.inputs[0] = out;
}
