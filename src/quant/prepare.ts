import { GraphBuilder } from '../ir/builder.js';
import { attrInt, Graph, Node, topologicalOrder } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { isPositionTableGather, Model } from '../models/model.js';
import './index.js';
import { QATKIT } from './fake-quantize-op.js';
import { foldBatchNormForQat, FoldedConv } from './fold-batchnorm.js';
import { activationSpec, LayerOverride, QatConfig, RoleSpec, weightSpec } from './presets.js';
import { fakeQuantizeValue, levelOffset, QuantSpec, quantRange, validateSpec, qparamsFromRange } from './spec.js';
import { createObserver, isChannelRange } from './observers/index.js';
import { QuantConfigError } from './config-file.js';
import { passThroughSource } from './pass-through.js';

/** One inserted quantizer, as export and reports need it. */
export interface Quantizer {
  role: 'weight' | 'activation';
  /** The float tensor quantized (weight, folded weight, or activation). */
  tensor: string;
  /** The fake-quantized value that consumers now read. */
  output: string;
  /** The quantizer node (FakeQuantize, BinaryQuantize, ...). */
  node: string;
  /** Compute layer (weights) or the layers this activation feeds. */
  layers: string[];
  spec: QuantSpec;
  /** Values holding the scale and zero point fed to FakeQuantize (absent for binary/ternary/PACT). */
  scale?: string;
  zeroPoint?: string;
  /** Parameters the quantizer learns (LSQ scale, LSQ+ zero point, PACT alpha). */
  learned: string[];
  observer?: { min: string; max: string };
}

export interface QuantInfo {
  preset?: string;
  config: QatConfig;
  quantizers: Quantizer[];
  folded: FoldedConv[];
  /** 'ptq': post-training (src/quant/ptq.ts: min/max scales, frozen calibrated ranges); absent: QAT. */
  method?: 'ptq';
  /** PTQ: the observer kind that calibrated the activation ranges (minmax, percentile, mse, kl). */
  calib?: string;
  /** QAT + LoRA: the float adapters on the frozen quantized Linears (src/quant/lora.ts), until they are merged. */
  lora?: import('./lora.js').LoraInfo;
}

/** Activation statistics from calibration batches: what observers and learned scales start from. */
export interface ActivationStats {
  min: number;
  max: number;
  meanAbs: number;
  /** Elements per sample (LSQ's gradient scale uses it). */
  perSample: number;
  /** MSE-optimal clipping range for learned quantizers (LSQ, LSQ+, PACT start from it when present). */
  clip?: { min: number; max: number };
}

const COMPUTE_OPS = new Set(['Conv', 'Gemm', 'MatMul']);
/** The weight role of a language model's learned position table: symmetric int8 per row (per position). */
export const POSITION_TABLE_ROLE: RoleSpec = { bits: 8, method: 'minmax', granularity: 'per-channel', symmetric: true };

export interface QuantPlan {
  graph: Graph;
  folded: FoldedConv[];
  /** node: the first layer reading the weight; layers: every layer reading it (a tied embedding / LM head: two). */
  weights: { node: Node; tensor: string; spec: QuantSpec; layers?: string[] }[];
  /** rmsNorm: BitLinear's parameter-free RMSNorm ahead of the quantizer. */
  activations: Map<string, { spec: QuantSpec; layers: string[]; rmsNorm?: boolean }>;
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return re.test(name);
}

/** The input (reduction) axis of a layer's weight: what per-group quantization splits into groups. */
function weightReductionAxis(node: Node): number {
  if (node.opType === 'Conv') return 1;
  if (node.opType === 'Gemm') return attrInt(node, 'transB', 0) ? 1 : 0;
  return 0; // MatMul [K, N]
}

/** The output-channel axis of a layer's weight: Conv [O, ...] 0; Gemm 0 with transB (W [N, K]), else 1 (W [K, N]); MatMul [K, N] 1. */
export function weightAxis(node: Node): number {
  if (node.opType === 'Conv') return 0;
  if (node.opType === 'Gemm') return attrInt(node, 'transB', 0) ? 0 : 1;
  return 1; // MatMul [K, N]: per output column
}

/**
 * Decides what to quantize (no graph change besides BN folding): weights of Conv/Gemm/MatMul per output
 * channel; activations at the tensors that feed those layers, residual Adds and average pools, found by walking back through
 * value-preserving ops, so each tensor is quantized once at its producer as an integer model stores it.
 */
export function planQuantization(model: Model, config: QatConfig): QuantPlan {
  const graph = model.graph.clone();
  const folded = config.foldBatchNorm ? foldBatchNormForQat(graph) : [];
  const order = topologicalOrder(graph);
  graph.nodes = order;
  const producers = graph.producers();
  const params = new Set(model.params);
  const isWeight = (v: string) => params.has(v) || folded.some((f) => f.scaledWeight === v);
  const languageModel = model.task === 'language-model';
  // A tied LM head reads Transpose(token table): the table is its weight, quantized once for both readers.
  const transposedParam = (v: string): string | undefined => {
    const p = producers.get(v);
    if (!languageModel || !p || p.opType !== 'Transpose' || !params.has(p.inputs[0])) return undefined;
    const perm = p.attrs.perm;
    return perm && perm.kind === 'ints' && perm.value.join() === '1,0' ? p.inputs[0] : undefined;
  };
  // A learned position table (GPT-2's wpe [context, C]) is a Gather of a parameter by positions, not by the token ids.
  const isPositionTable = (n: Node): boolean =>
    languageModel && n.opType === 'Gather' && params.has(n.inputs[0]) && isPositionTableGather(graph, producers, n, graph.typeOf(n.inputs[0]).shape.length, model.input);
  const weightOf = (n: Node): string | undefined => {
    if (n.opType === 'Gather') return languageModel && params.has(n.inputs[0]) && (n.inputs[1] === model.input || isPositionTable(n)) ? n.inputs[0] : undefined;
    if (!COMPUTE_OPS.has(n.opType) || !n.inputs[1]) return undefined;
    return isWeight(n.inputs[1]) ? n.inputs[1] : transposedParam(n.inputs[1]);
  };
  const compute = order.filter((n) => weightOf(n) !== undefined);
  // firstLastBits means the token embedding / first Linear and the head, never the position table.
  const first = compute.find((n) => !isPositionTable(n))?.name;
  const last = compute.at(-1)?.name;
  checkOverrides(config.overrides, compute, model.name);
  const overrideFor = (name: string): LayerOverride | undefined => config.overrides.find((o) => globMatch(o.match, name));
  const roleFor = (node: Node, role: 'weight' | 'activation'): RoleSpec | undefined => {
    const o = overrideFor(node.name);
    if (o?.skip) return undefined;
    // Position tables are quantized per row at 8 bits whatever the preset (a few kB; at 4 bits or ternary the
    // positions blur), so exports store them as int8 rows (DequantizeLinear -> Gather); an override still rules.
    if (role === 'weight' && isPositionTable(node)) return { ...POSITION_TABLE_ROLE, ...(o?.weight ?? {}) };
    const tokenLayer = languageModel && config.tokenLayers && (node.name === first || node.name === last) ? config.tokenLayers[role] : undefined;
    let r: RoleSpec = { ...config[role], ...(tokenLayer ?? {}), ...(o?.[role] ?? {}) };
    if (config.firstLastBits && (node.name === first || node.name === last) && !o?.[role]?.bits) {
      r = { ...r, bits: Math.max(r.bits, config.firstLastBits), method: r.bits >= config.firstLastBits ? r.method : 'minmax', granularity: role === 'weight' ? 'per-channel' : 'per-tensor' };
    }
    return r;
  };
  const source = (v: string): string => passThroughSource(producers, v);
  const nonNegative = (v: string): boolean => {
    const p = producers.get(v);
    if (!p) return false;
    if (p.opType === 'Relu') return true;
    if (p.opType === 'Clip') return (graph.initializers.get(p.inputs[1])?.toNumbers()[0] ?? -1) >= 0;
    return false;
  };

  const weights: QuantPlan['weights'] = [];
  const activations = new Map<string, { spec: QuantSpec; layers: string[] }>();
  const addActivation = (v: string, r: RoleSpec, layer: string) => {
    if (graph.initializers.has(v)) return;
    // Language models: 16-bit activations (a16) stay float.
    if (languageModel && r.bits >= 16) return;
    const spec = validateSpec(activationSpec(r, nonNegative(v)), `activation '${v}'`);
    checkActivationBlock(graph, layer, v, spec);
    const prev = activations.get(v);
    if (!prev) activations.set(v, { spec, layers: [layer], ...(r.rmsNorm ? { rmsNorm: true } : {}) });
    else {
      prev.layers.push(layer);
      if (spec.bits > prev.spec.bits) prev.spec = spec;
    }
  };
  for (const node of compute) {
    const tensor = weightOf(node)!;
    // A token table [V, C] (embedding Gather, or the tied head through its transpose): one scale per token row,
    // groups along C, the head's input axis.
    const table = tensor !== node.inputs[1];
    const tied = weights.find((x) => x.tensor === tensor);
    if (tied) {
      tied.layers!.push(node.name);
    } else {
      const w = roleFor(node, 'weight');
      if (w) {
        const axis = table ? (w.granularity === 'per-group' ? 1 : 0) : w.granularity === 'per-group' ? weightReductionAxis(node) : weightAxis(node);
        const spec = validateSpec(weightSpec(w, axis), `weight of '${node.name}'`);
        checkGroups(graph, node, tensor, spec);
        weights.push({ node, tensor, spec, layers: [node.name] });
      }
    }
    if (node.opType === 'Gather') continue;
    const a = roleFor(node, 'activation');
    if (a) addActivation(source(node.inputs[0]), a, node.name);
  }
  if (languageModel) return { graph, folded, weights, activations };
  // Residual Adds take quantized inputs (QLinearAdd); a folded conv's bias Add sits inside the conv + BN pair.
  const biasAdds = new Set(folded.map((f) => f.biasAdd));
  for (const node of order) {
    if (node.opType !== 'Add' || biasAdds.has(node.name) || node.inputs.some((i) => graph.initializers.has(i))) continue;
    for (const i of node.inputs) addActivation(source(i), config.activation, node.name);
  }
  // So do average pools (QLinearGlobalAveragePool / QLinearAveragePool): with its output quantized, the conv in
  // front of a pool is an integer QLinearConv too, not a float Conv on dequantized weights (MobileNet's last conv).
  for (const node of order) {
    if ((node.opType === 'GlobalAveragePool' || node.opType === 'AveragePool') && node.domain === '') addActivation(source(node.inputs[0]), config.activation, node.name);
  }
  return { graph, folded, weights, activations };
}

/** Every override must match a quantizable layer: a misspelt pattern would silently change nothing. */
function checkOverrides(overrides: LayerOverride[], compute: Node[], model: string): void {
  for (const o of overrides) {
    if (compute.some((n) => globMatch(o.match, n.name))) continue;
    const names = compute.map((n) => n.name);
    const shownNames = names.length > 40 ? [...names.slice(0, 40), `... (${names.length} in all)`] : names;
    throw new QuantConfigError(`quant config: override '${o.match}' matches no quantizable layer of model '${model}'; layers (Conv/Gemm/MatMul with a weight): ${shownNames.join(', ')}`);
  }
}

/**
 * Per-group quantization splits the weight's reduction axis into whole groups; an axis shorter than the group is
 * one group (LeNet's first conv has one input channel), a group size that leaves a partial group is refused.
 */
function checkGroups(graph: Graph, node: Node, tensor: string, spec: QuantSpec): void {
  const g = spec.granularity;
  if (g.kind !== 'per-group') return;
  const dims = graph.typeOf(tensor).shape;
  const d = dims[g.axis];
  if (typeof d === 'number' && d > 0 && d < g.size) g.size = d;
  if (typeof d !== 'number' || d % g.size !== 0) {
    const valid = [16, 32, 64, 128, 256].filter((q) => typeof d === 'number' && d % q === 0);
    throw new QuantConfigError(
      `quant config: layer '${node.name}' has input width ${d} (axis ${g.axis} of its weight '${tensor}' [${dims}]), not divisible by groupSize ${g.size}; ` +
        `valid groups for it: ${valid.length ? valid.join(', ') : 'none of 16..256'} (or any divisor of ${d}, or per-channel)`,
    );
  }
}

/**
 * Per-token-per-block activations split each row (the last axis of the quantized tensor) into whole blocks; the
 * tensor may be narrower than the layer's input (the attention output is quantized per head, D wide), so a block
 * the row does not divide is refused here, naming the layer, before any training.
 */
function checkActivationBlock(graph: Graph, layer: string, tensor: string, spec: QuantSpec): void {
  const g = spec.granularity;
  if (g.kind !== 'per-token' || g.blockSize === undefined || !graph.hasValue(tensor)) return;
  const dims = graph.typeOf(tensor).shape;
  const width = dims.at(-1);
  if (typeof width === 'number' && width % g.blockSize === 0) return;
  const valid = [16, 32, 64, 128, 256].filter((q) => typeof width === 'number' && width % q === 0);
  const perHead = dims.length === 4 ? ' (the attention output, quantized per head)' : '';
  throw new QuantConfigError(
    `quant config: the activation '${tensor}' [${dims}] that layer '${layer}' reads${perHead} has rows of ${width}, not divisible by the activation groupSize ${g.blockSize}; ` +
      `valid blocks for it: ${valid.length ? valid.join(', ') : 'none of 16..256'} (or per-token without groupSize)`,
  );
}

/** Float values of a weight at prepare time (folded weights are W * gamma / sqrt(var + eps)). */
function weightValues(graph: Graph, folded: FoldedConv[], tensor: string): Tensor {
  const direct = graph.initializers.get(tensor);
  if (direct) return direct;
  const f = folded.find((x) => x.scaledWeight === tensor)!;
  const w = graph.initializers.get(f.weight)!;
  const bnNode = graph.nodes.find((n) => n.name === f.batchNorm)!;
  const gamma = graph.initializers.get(bnNode.inputs[1])!.data as Float32Array;
  const variance = graph.initializers.get(bnNode.inputs[4])!.data as Float32Array;
  const eps = bnNode.attrs.epsilon?.kind === 'float' ? bnNode.attrs.epsilon.value : 1e-5;
  const per = w.size / w.dims[0];
  const out = new Float32Array(w.size);
  for (let i = 0; i < w.size; i++) {
    const c = Math.floor(i / per);
    out[i] = (w.data as Float32Array)[i] * (gamma[c] / Math.sqrt(variance[c] + eps));
  }
  return new Tensor(w.dtype, w.dims, out);
}

/**
 * Where each weight element's scale lives: the scale tensor's dims and a map from a flat weight index to a flat
 * scale index, for per-tensor, per-channel (one scale per index of `axis`) and per-group (one per group of
 * `size` consecutive indices of `axis`, and per index of every other axis).
 */
export function scaleLayout(dims: number[], spec: QuantSpec): { dims: number[]; index: (i: number) => number } {
  const g = spec.granularity;
  if (g.kind !== 'per-channel' && g.kind !== 'per-group') return { dims: [], index: () => 0 };
  const a = g.axis;
  const inner = dims.slice(a + 1).reduce((p, q) => p * q, 1);
  if (g.kind === 'per-channel') return { dims: [dims[a]], index: (i) => Math.floor(i / inner) % dims[a] };
  const groups = dims[a] / g.size;
  return {
    dims: dims.map((d, i) => (i === a ? groups : d)),
    index: (i) => {
      const outer = Math.floor(i / (dims[a] * inner));
      const k = Math.floor(i / inner) % dims[a];
      return (outer * groups + Math.floor(k / g.size)) * inner + (i % inner);
    },
  };
}

/** Mean |w| per scale element (LSQ's initialisation statistic). */
function meanAbsPerScale(t: Tensor, layout: ReturnType<typeof scaleLayout>): number[] {
  const n = layout.dims.reduce((p, q) => p * q, 1);
  const sums = new Array(n).fill(0);
  const counts = new Array(n).fill(0);
  const data = t.data as Float32Array;
  for (let i = 0; i < t.size; i++) {
    const j = layout.index(i);
    sums[j] += Math.abs(data[i]);
    counts[j]++;
  }
  return sums.map((s, j) => s / counts[j]);
}

/**
 * Starting step sizes of learned weight quantizers: the MSE-optimal clipping range per channel divided by qmax
 * (the best PTQ scale, so QAT starts where PTQ ends); LSQ's own 2 <|w|> / sqrt(qmax) for other granularities.
 */
function initialWeightScales(values: Tensor, spec: QuantSpec, layout: ReturnType<typeof scaleLayout>, qmax: number): number[] {
  if (spec.granularity.kind === 'per-channel') {
    const observer = createObserver('mse', { spec: { ...spec, method: 'minmax' }, perChannelAxis: spec.granularity.axis });
    observer.observe(values.data as Float32Array, values.dims);
    const r = observer.range();
    if (isChannelRange(r)) return Array.from(r.max, (hi, c) => Math.max(Math.max(hi, -r.min[c]) / qmax, 1e-6));
  }
  return meanAbsPerScale(values, layout).map((m) => Math.max((2 * m) / Math.sqrt(qmax), 1e-6));
}

/**
 * Starting step sizes of per-group learned weights: per group, the clipping ratio of max|w| (1.0 down to 0.3) with
 * the least squared rounding error, over qmax. Ratio 1.0 is RTN's min/max scale, so QAT starts at or below RTN's
 * error (at 2-3 bits the searched clip is much better than max|w|).
 */
function groupMseScales(t: Tensor, layout: ReturnType<typeof scaleLayout>, range: { qmin: number; qmax: number }, offset = 0): number[] {
  // The outermost level sits at (qmax + o) s; SEQ's ratio 1.0 is ParetoQ's start, alpha = max|w| = (qmax + 2o) s.
  const top = range.qmax + 2 * offset;
  const n = layout.dims.reduce((p, q) => p * q, 1);
  const members: number[][] = Array.from({ length: n }, () => []);
  const data = t.data as Float32Array;
  for (let i = 0; i < t.size; i++) members[layout.index(i)].push(data[i]);
  return members.map((ws) => {
    const absMax = ws.reduce((m, w) => Math.max(m, Math.abs(w)), 0);
    if (absMax <= 1e-12) return 1e-6;
    let best = absMax / top;
    let bestErr = Infinity;
    for (let ratio = 1; ratio >= 0.3 - 1e-9; ratio -= 0.05) {
      const s = (absMax * ratio) / top;
      let err = 0;
      for (const w of ws) {
        const d = fakeQuantizeValue(w, s, 0, range.qmin, range.qmax, offset) - w;
        err += d * d;
      }
      if (err < bestErr) [best, bestErr] = [s, err];
    }
    return Math.max(best, 1e-6);
  });
}

/**
 * A learned (LSQ / LSQ+) step size as the quantizers use it: |s|. Adam can push a small step size across zero
 * (seen: a per-channel weight scale of ~1e-4 after 20 steps at lr 1e-3), which would turn the quantizer and the
 * exported QDQ scale negative; |s| is the same value and gradient while s > 0. Quantizer records name this value,
 * so export reads the scale the simulation used.
 */
function positiveScale(b: GraphBuilder, raw: string): string {
  return b.abs(raw);
}

/** In-graph max|w| per scale element, recomputed from the current weights each step. */
function emitAbsMax(b: GraphBuilder, w: string, dims: number[], spec: QuantSpec): string {
  const g = spec.granularity;
  const abs = b.abs(w);
  if (g.kind === 'per-channel') return b.op1('ReduceMax', [abs], { axes: dims.map((_, i) => i).filter((i) => i !== g.axis), keepdims: 0 });
  if (g.kind === 'per-group') {
    const split = [...dims.slice(0, g.axis), dims[g.axis] / g.size, g.size, ...dims.slice(g.axis + 1)];
    return b.op1('ReduceMax', [b.reshape(abs, split)], { axes: [g.axis + 1], keepdims: 0 });
  }
  return b.op1('ReduceMax', [abs], { keepdims: 0 });
}

/**
 * Inserts the quantizers of `plan` into its graph and returns the QAT model. Activation observers start from
 * the calibration statistics (`stats`, by tensor name), and so do learned activation scales (LSQ init 2 <|x|> /
 * sqrt(qmax), Esser et al. 2020) and PACT's alpha (the calibrated max).
 */
export function applyQuantization(model: Model, plan: QuantPlan, stats: Map<string, ActivationStats>, config: QatConfig, preset?: string): Model {
  const graph = plan.graph;
  const b = new GraphBuilder(graph, 'quant/');
  const params = [...model.params];
  const noDecay = [...model.noDecay];
  const observerStats: string[] = [];
  const quantizers: Quantizer[] = [];
  const learn = (name: string, t: Tensor) => {
    b.initializer(name, t);
    params.push(name);
    noDecay.push(name);
    return name;
  };
  const rewire = (tensor: string, replacement: string, keep: Set<Node>) => {
    for (const n of graph.nodes) if (!keep.has(n)) n.inputs = n.inputs.map((i) => (i === tensor ? replacement : i));
    graph.outputs.forEach((o) => {
      if (o.name === tensor) o.name = replacement;
    });
  };
  const fq = (x: string, scale: string, zero: string, spec: QuantSpec, attrs: Record<string, number>) => {
    const { qmin, qmax } = quantRange(spec);
    const axis = spec.granularity.kind === 'per-channel' || spec.granularity.kind === 'per-group' ? spec.granularity.axis : undefined;
    const groupSize = spec.granularity.kind === 'per-group' ? spec.granularity.size : undefined;
    return b.op1('FakeQuantize', [x, scale, zero], { qmin, qmax, axis, group_size: groupSize, ...attrs }, { domain: QATKIT, name: `${x}/fake_quant` });
  };

  for (const w of plan.weights) {
    const spec = w.spec;
    const before = graph.nodes.length;
    const values = weightValues(graph, plan.folded, w.tensor);
    const axis = spec.granularity.kind === 'per-channel' || spec.granularity.kind === 'per-group' ? spec.granularity.axis : 0;
    const layout = scaleLayout(values.dims, spec);
    const scaleCount = layout.dims.reduce((p, q) => p * q, 1);
    let output: string;
    let scale: string | undefined;
    let zero: string | undefined;
    const learned: string[] = [];
    if (spec.method === 'binary' || spec.method === 'ternary') {
      const op = spec.method === 'binary' ? 'BinaryQuantize' : 'TernaryQuantize';
      output = b.op1(op, [w.tensor], spec.granularity.kind === 'per-tensor' ? {} : { axis }, { domain: QATKIT, name: `${w.tensor}/${spec.method}` });
    } else {
      const { qmax } = quantRange(spec);
      zero = b.constant(Tensor.float(layout.dims, new Array(scaleCount).fill(0)));
      if (spec.method === 'minmax') {
        const absMax = emitAbsMax(b, w.tensor, values.dims, spec);
        scale = b.op1('Max', [b.div(absMax, b.scalarLike(qmax, absMax)), b.scalarLike(1e-8, absMax)]);
        output = fq(w.tensor, scale, zero, spec, {});
      } else {
        // SEQ (ParetoQ): every granularity starts from the searched clip on its own half-step grid.
        const offset = levelOffset(spec);
        const init = spec.granularity.kind === 'per-group' || offset !== 0 ? groupMseScales(values, layout, quantRange(spec), offset) : initialWeightScales(values, spec, layout, qmax);
        const raw = learn(`${w.tensor}/quant_scale`, Tensor.float(layout.dims, init));
        learned.push(raw);
        scale = positiveScale(b, raw);
        // LSQ's g = 1 / sqrt(n Qp), Qp the top level in steps: qmax, or qmax + 1/2 on SEQ's grid.
        const gradScale = 1 / Math.sqrt((values.size / scaleCount) * (qmax + offset));
        output = fq(w.tensor, scale, zero, spec, { learn_scale: 1, grad_scale: gradScale, ...(offset ? { level_offset: offset } : {}) });
      }
    }
    const quantNode = graph.nodes.at(-1)!.name;
    if (w.layers && w.layers.length > 1) {
      // A tied table: every reader (Gather, Transpose of the head) takes the one fake-quantized table.
      const added = new Set(graph.nodes.slice(before));
      for (const n of graph.nodes) if (!added.has(n)) n.inputs = n.inputs.map((i) => (i === w.tensor ? output : i));
    } else {
      const at = w.node.inputs.indexOf(w.tensor);
      if (at >= 0) w.node.inputs[at] = output;
      else for (const n of graph.nodes.slice(0, before)) n.inputs = n.inputs.map((i) => (i === w.tensor ? output : i));
    }
    quantizers.push({ role: 'weight', tensor: w.tensor, output, node: quantNode, layers: w.layers ?? [w.node.name], spec, scale, zeroPoint: zero, learned });
  }

  for (const [tensor, { spec, layers, rmsNorm }] of plan.activations) {
    const dynamic = spec.granularity.kind === 'per-token' || spec.method === 'absmax';
    const st = stats.get(tensor) ?? (dynamic ? { min: 0, max: 0, meanAbs: 0, perSample: 0 } : undefined);
    if (!st) throw new Error(`no calibration statistics for activation '${tensor}'`);
    const before = graph.nodes.length;
    // BitLinear (BitNet b1.58): x / sqrt(mean(x^2) + eps) over the channels, then the absmax quantizer.
    const input = rmsNorm ? b.mul(tensor, b.reciprocal(b.sqrt(b.add(b.op1('ReduceMean', [b.mul(tensor, tensor)], { axes: [-1], keepdims: 1 }), b.scalarLike(1e-5, tensor))))) : tensor;
    const { qmin, qmax } = quantRange(spec);
    let output: string;
    let scale: string | undefined;
    let zero: string | undefined;
    const learned: string[] = [];
    let observer: Quantizer['observer'];
    if (spec.granularity.kind === 'per-token' && spec.method === 'minmax') {
      output = b.op1('TokenMinMaxQuantize', [input], { bits: spec.bits }, { domain: QATKIT, name: `${tensor}/token_minmax` });
    } else if (spec.method === 'minmax') {
      const min = b.initializer(`${tensor}/observer_min`, Tensor.float([], [st.min]));
      const max = b.initializer(`${tensor}/observer_max`, Tensor.float([], [st.max]));
      observerStats.push(min, max);
      observer = { min, max };
      [scale, zero] = b.op(
        'RangeObserver',
        [min, max],
        { qmin, qmax, symmetric: spec.symmetric ? 1 : 0, observed: tensor, momentum: config.observerMomentum },
        { domain: QATKIT, outputs: 2, name: `${tensor}/observer` },
      );
      output = fq(tensor, scale, zero, spec, {});
    } else if (spec.method === 'pact') {
      const alpha = learn(`${tensor}/pact_alpha`, Tensor.float([], [Math.max(st.clip?.max ?? st.max, 1e-3)]));
      learned.push(alpha);
      output = b.op1('PactQuantize', [tensor, alpha], { bits: spec.bits }, { domain: QATKIT, name: `${tensor}/pact` });
    } else if (spec.method === 'lsq' || spec.method === 'lsq+') {
      const gradScale = 1 / Math.sqrt(st.perSample * qmax);
      if (spec.method === 'lsq+') {
        const q = qparamsFromRange(st.clip?.min ?? st.min, st.clip?.max ?? st.max, spec);
        const raw = learn(`${tensor}/quant_scale`, Tensor.float([], [q.scale]));
        zero = learn(`${tensor}/quant_zero_point`, Tensor.float([], [q.zeroPoint]));
        learned.push(raw, zero);
        scale = positiveScale(b, raw);
        output = fq(tensor, scale, zero, spec, { learn_scale: 1, learn_zero_point: 1, grad_scale: gradScale });
      } else {
        const start = st.clip ? Math.max(st.clip.max, spec.signed ? -st.clip.min : 0) / qmax : (2 * st.meanAbs) / Math.sqrt(qmax);
        const raw = learn(`${tensor}/quant_scale`, Tensor.float([], [Math.max(start, 1e-6)]));
        learned.push(raw);
        scale = positiveScale(b, raw);
        zero = b.constant(0);
        output = fq(tensor, scale, zero, spec, { learn_scale: 1, grad_scale: gradScale });
      }
    } else if (spec.method === 'absmax') {
      const g = spec.granularity;
      output = b.op1('AbsmaxQuantize', [input], { bits: spec.bits, per_token: g.kind === 'per-token' ? 1 : 0, block_size: g.kind === 'per-token' ? g.blockSize : undefined }, { domain: QATKIT, name: `${tensor}/absmax` });
    } else {
      throw new Error(`activation '${tensor}': method '${spec.method}' is for weights only`);
    }
    const added = new Set(graph.nodes.slice(before));
    rewire(tensor, output, added);
    quantizers.push({ role: 'activation', tensor, output, node: graph.nodes.at(-1)!.name, layers, spec, scale, zeroPoint: zero, learned, observer });
  }
  graph.nodes = topologicalOrder(graph);
  graph.opsets[QATKIT] = 1;
  return {
    ...model,
    graph,
    params,
    noDecay,
    observerStats: [...(model.observerStats ?? []), ...observerStats],
    quant: { preset, config, quantizers, folded: plan.folded },
  };
}
