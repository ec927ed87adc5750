/**
 * KV-cache quantization: the keys and values of every attention layer fake-quantized as they are written to the
 * cache, in one of two layouts.
 * - 'per-token' (LLM-QAT, Liu et al. 2023, sec. 3.2): each written row of the cache [B, H, T, D] (one token of one
 *   head) quantized on its own, keys and values alike.
 * - 'kivi' (Liu et al. 2024, "KIVI: a tuning-free asymmetric 2bit quantization for KV cache"): keys per channel
 *   within groups of `groupSize` consecutive tokens (each group's scales from its own tokens only); values per
 *   token; the unfinished group of keys and values kept in float (KIVI's residual).
 * Both are asymmetric min/max with the range widened to include 0 (S = (max - min) / (2^bits - 1),
 * Z = round(-min / S): the DESIGN numerics contract), as KIVI quantizes; nothing clips, so the gradient is the
 * straight-through one (dx = dy).
 *
 * One graph pass serves the training graph and the KV-cache decoder: it quantizes the K and V that each attention
 * reads. A decoder keeps float keys and values in its cache and reads them through the same quantizer, which is
 * bit for bit what quantizing on write gives: a per-token row and a complete KIVI group depend on their own tokens
 * only. Which keys and values a query sees quantized follows the cache index: those of an earlier group are
 * quantized, those of the query's own group (unfinished when the query is written) float. In the training graph that
 * is a per-query choice, Where(same group, q k^T, q k_q^T) for the scores and a masked correction for the values, so
 * training sees exactly what the decoder will (and stays causal: no query reads a scale computed from a later token).
 */
import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { attrInt, attrInts, Graph, Node, topologicalOrder } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { defineOps, OpDef } from '../ops/registry.js';
import { requireInput } from '../ops/shape-utils.js';
import { InputError } from '../validate/schema.js';
import { QATKIT } from './fake-quantize-op.js';
import './low-bit-ops.js'; // TokenMinMaxQuantize, the per-token quantizer

export const KV_BITS = [8, 4, 2] as const;
export const KV_LAYOUTS = ['per-token', 'kivi'] as const;
export type KvLayout = (typeof KV_LAYOUTS)[number];
/** KIVI's group of tokens that share one key scale per channel (its paper's G = 32). */
export const KIVI_GROUP_SIZE = 32;

export interface KvCacheQuant {
  bits: number;
  layout: KvLayout;
  /** KIVI: tokens per key group (default 32). */
  groupSize?: number;
}

/** Name prefix of the quantizer nodes the pass inserts (how kvCacheQuantOf finds them again). */
const PREFIX = 'kv_quant/';

export function checkKvCacheQuant(kv: KvCacheQuant, where = '--kv-bits'): KvCacheQuant {
  if (!(KV_BITS as readonly number[]).includes(kv.bits)) throw new InputError(`${where}: ${kv.bits} bits; valid: ${KV_BITS.join(', ')}`);
  if (!(KV_LAYOUTS as readonly string[]).includes(kv.layout)) throw new InputError(`--kv-layout: '${kv.layout}'; valid: ${KV_LAYOUTS.join(', ')}`);
  const g = kv.groupSize ?? KIVI_GROUP_SIZE;
  if (!Number.isInteger(g) || g < 1) throw new InputError(`KV cache group size ${g}: must be an integer >= 1`);
  return kv;
}

/**
 * ai.qatkit.KvGroupQuantize(x [B, H, T, D]) -> x with each complete group of group_size tokens (along axis 2, from
 * index 0) quantized per channel d: the group's min/max over its tokens, widened to include 0, S = (max - min) /
 * (2^bits - 1), Z = round(-min / S), codes clip(round(x / S) + Z, 0, 2^bits - 1). The trailing tokens that do not
 * fill a group stay float (KIVI's full-precision residual). Backward: straight-through (no value leaves its
 * group's range).
 */
const kvGroupQuantize: OpDef = {
  opType: 'KvGroupQuantize',
  domain: QATKIT,
  infer: (ctx) => [requireInput(ctx, 0)],
  vjp: (c) => [c.dy(0)!],
  lower: (node, b) => {
    const x = node.inputs[0];
    const qmax = 2 ** attrInt(node, 'bits', 4) - 1;
    const group = attrInt(node, 'group_size', KIVI_GROUP_SIZE);
    const shape = b.shape(x);
    const d = shape[3];
    if (shape.length !== 4 || typeof d !== 'number') throw new Error(`node '${node.name}' (KvGroupQuantize): input must be [B, H, T, D] with a known D, got [${shape.join(', ')}]`);
    const dims = b.shapeOf(x);
    const t = b.op1('Gather', [dims, b.ints([2])], { axis: 0 });
    const g = b.constant(group, DType.INT64, [1]);
    const full = b.mul(b.div(t, g), g); // tokens in complete groups (int64 division truncates; t >= 0)
    const head = b.op1('Slice', [x, b.ints([0]), full, b.ints([2])]);
    const tail = b.op1('Slice', [x, full, t, b.ints([2])]);
    const grouped = b.reshape(head, [0, 0, -1, group, d]);
    const axes = [3];
    const lo = b.op1('Min', [b.op1('ReduceMin', [grouped], { axes, keepdims: 1 }), b.scalarLike(0, x)]);
    const hi = b.op1('Max', [b.op1('ReduceMax', [grouped], { axes, keepdims: 1 }), b.scalarLike(0, x)]);
    const s = b.op1('Max', [b.div(b.sub(hi, lo), b.scalarLike(qmax, x)), b.scalarLike(1e-8, x)]);
    const z = b.op1('Round', [b.neg(b.div(lo, s))]);
    // clip(round(x/s) + z, 0, qmax) - z = clip(round(x/s), -z, qmax - z), as TokenMinMaxQuantize folds it.
    const q = b.op1('Max', [b.op1('Min', [b.op1('Round', [b.div(grouped, s)]), b.sub(b.scalarLike(qmax, x), z)]), b.neg(z)]);
    const quantized = b.op1('Reshape', [b.mul(q, s), b.shapeOf(head)], {}, { types: [b.type(head)] });
    b.op1('Concat', [quantized, tail], { axis: 2 }, { outputs: [node.outputs[0]], types: [b.type(x)] });
  },
};

defineOps([kvGroupQuantize]);

/** One attention core found in a graph: scores = MatMul(q, Transpose(k)) [+ mask] -> Softmax -> MatMul(probs, v). */
export interface AttentionCore {
  scores: Node;
  keyTranspose: Node;
  probsValue: Node;
  /** The layout of the keyTranspose's input: [B, H, T, D], or [B, T, H, D] (an imported PyTorch decoder). */
  keyLayout: 'bhtd' | 'bthd';
}

/**
 * Ops that may sit between q k^T and its Softmax: the mask (Add, Where), the 1/sqrt(d) scale (Mul, Div), and the
 * Cast of Hugging Face's `softmax(w, dtype=torch.float32)`.
 */
const SCORE_PASS_THROUGH = new Set(['Add', 'Where', 'Mul', 'Div', 'Cast']);

/** The MatMul(probs, v) that reads Softmax output `probs`, directly or through Casts (`.to(q.dtype)`). */
function probsMatMul(probs: string, consumers: Map<string, Node[]>, depth = 0): Node | undefined {
  for (const n of consumers.get(probs) ?? []) {
    if (n.opType === 'MatMul' && n.inputs[0] === probs) return n;
    if (n.opType === 'Cast' && depth < 2) {
      const found = probsMatMul(n.outputs[0], consumers, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

/** Whether `v` is q k^T, or reaches it through the ops above (at most 4): the operand the walk follows. */
function leadsToScores(v: string, producers: Map<string, Node>, depth = 0): boolean {
  const p = producers.get(v);
  if (!p) return false;
  if (p.opType === 'MatMul') return producers.get(p.inputs[1])?.opType === 'Transpose';
  return depth < 4 && SCORE_PASS_THROUGH.has(p.opType) && p.inputs.some((x) => leadsToScores(x, producers, depth + 1));
}

export function attentionCores(graph: Graph): AttentionCore[] {
  const producers = graph.producers();
  const consumers = graph.consumers();
  const cores: AttentionCore[] = [];
  for (const softmax of graph.nodes) {
    if (softmax.opType !== 'Softmax' || softmax.domain !== '') continue;
    const pv = probsMatMul(softmax.outputs[0], consumers);
    if (!pv) continue;
    // Between q k^T and the Softmax: an additive mask (zoo models), or what torch.onnx.export writes for
    // `(q @ k.transpose(-2, -1)) * scale` then `masked_fill(mask, -inf)`: Mul / Div by the scale, Where(mask, -inf, .).
    let scoresValue = softmax.inputs[0];
    for (let hops = 0; hops < 4; hops++) {
      const p = producers.get(scoresValue);
      if (!p || !SCORE_PASS_THROUGH.has(p.opType)) break;
      const candidates = p.opType === 'Where' ? p.inputs.slice(1) : p.opType === 'Div' ? p.inputs.slice(0, 1) : p.inputs;
      const next = candidates.find((v) => leadsToScores(v, producers));
      if (next === undefined) break;
      scoresValue = next;
    }
    const scores = producers.get(scoresValue);
    if (!scores || scores.opType !== 'MatMul') continue;
    const kt = producers.get(scores.inputs[1]);
    const perm = kt?.opType === 'Transpose' ? attrInts(kt, 'perm', undefined) : undefined;
    // 0,1,3,2: k^T of keys [B, H, T, D] (zoo models); 0,2,3,1: torch.onnx.export folds `k.view(B, T, H, D)
    // .transpose(1, 2)` and `.transpose(-2, -1)` into one Transpose of [B, T, H, D].
    const keyLayout = perm?.join() === '0,1,3,2' ? 'bhtd' : perm?.join() === '0,2,3,1' ? 'bthd' : undefined;
    if (!kt || !keyLayout) continue;
    cores.push({ scores, keyTranspose: kt, probsValue: pv, keyLayout });
  }
  return cores;
}

/**
 * Inserts the KV-cache quantizers into every attention of `graph` (a zoo transformer's training graph or its
 * KV-cache decoder: src/models/transformer-builder.ts), in place; returns the number of attention layers. Keys are
 * what each attention transposes into q k^T (after RoPE), values what it weights by the probabilities; in a
 * decoder both are the present caches. Refuses a graph that has them already.
 */
export function insertKvCacheQuantizers(graph: Graph, kv: KvCacheQuant): number {
  checkKvCacheQuant(kv);
  if (graph.nodes.some((n) => n.name.startsWith(PREFIX))) throw new Error(`the graph's KV cache is quantized already (${kvDescription(kvCacheQuantOf(graph)!)})`);
  const cores = attentionCores(graph);
  if (cores.length === 0) throw new InputError('KV-cache quantization: no attention found (Softmax(MatMul(q, Transpose(k))) -> MatMul(probs, v)); --kv-bits applies to decoder transformers');
  const b = new GraphBuilder(graph, PREFIX);
  const consumers = graph.consumers();
  const group = kv.groupSize ?? KIVI_GROUP_SIZE;
  cores.forEach((core, layer) => {
    if (core.keyLayout === 'bthd') {
      // Keys to [B, H, T, D] first, so both layouts quantize (and KIVI groups) along the token axis 2.
      core.keyTranspose.inputs[0] = b.transpose(core.keyTranspose.inputs[0], [0, 2, 1, 3]);
      core.keyTranspose.attrs.perm = { kind: 'ints', value: [0, 1, 3, 2] };
      core.keyLayout = 'bhtd';
    }
    const k = core.keyTranspose.inputs[0];
    const v = core.probsValue.inputs[1];
    const vq = b.op1('TokenMinMaxQuantize', [v], { bits: kv.bits }, { domain: QATKIT, name: `${PREFIX}${layer}/value` });
    core.probsValue.inputs[1] = vq;
    if (kv.layout === 'per-token') {
      const kq = b.op1('TokenMinMaxQuantize', [k], { bits: kv.bits }, { domain: QATKIT, name: `${PREFIX}${layer}/key` });
      core.keyTranspose.inputs[0] = kq;
      return;
    }
    // KIVI: q k^T against float keys (the query's own, unfinished group) and against group-quantized keys (every
    // earlier group), chosen per (query, key) by the cache index of each.
    const kq = b.op1('KvGroupQuantize', [k], { bits: kv.bits, group_size: group }, { domain: QATKIT, name: `${PREFIX}${layer}/key` });
    const sameGroup = mixKiviScores(b, graph, core, k, kq, group, layer, consumers);
    mixKiviValues(b, graph, core, v, sameGroup, layer, consumers);
  });
  graph.nodes = topologicalOrder(graph);
  return cores.length;
}

/**
 * KIVI attention scores: the core's q k^T, which reads `floatKeys` [B, H, Tk, D] as it is, and q k_q^T with the
 * group-quantized keys `quantKeys` (same shape and cache index), chosen per (query, key) by Where(same group): a
 * query sees the keys of its own group in float (the group is unfinished when the query is written) and those of
 * every earlier group quantized. Queries are the last Tq of the Tk cache positions (a decoder's past comes first).
 * Used by the training graph, the float-cache decoder (both here) and the export that stores codes (lm-kv-cache.ts),
 * so all three choose alike.
 */
export function mixKiviScores(b: GraphBuilder, graph: Graph, core: AttentionCore, floatKeys: string, quantKeys: string, group: number, layer: number, consumers = graph.consumers()): string {
  const q = core.scores.inputs[0];
  const floatScores = core.scores.outputs[0];
  const quantScores = b.matmul(q, b.transpose(quantKeys, [0, 1, 3, 2]));
  const length = (x: string) => b.squeeze(b.op1('Gather', [b.shapeOf(x), b.ints([2])], { axis: 0 }), [0]);
  const [tq, tk] = [length(q), length(floatKeys)];
  const one = b.constant(1, DType.INT64);
  const queryIndex = b.op1('Range', [b.sub(tk, tq), tk, one], {}, { types: [{ dtype: DType.INT64, shape: ['Tq'] }] });
  const keyIndex = b.op1('Range', [b.constant(0, DType.INT64), tk, one], {}, { types: [{ dtype: DType.INT64, shape: ['Tk'] }] });
  const g = b.constant(group, DType.INT64);
  const sameGroup = b.equal(b.unsqueeze(b.div(queryIndex, g), [1]), b.div(keyIndex, g)); // [Tq, Tk]
  const mixed = b.op1('Where', [sameGroup, floatScores, quantScores], {}, { name: `${PREFIX}${layer}/scores` });
  for (const n of consumers.get(floatScores) ?? []) n.inputs = n.inputs.map((x) => (x === floatScores ? mixed : x));
  return sameGroup;
}

/**
 * KIVI's value residual: a query weighs the values of its own (unfinished) group in float and every earlier
 * group's per-token quantized ones. The core's probs x v_q plus (probs where same group) x (v - v_q): one more
 * [Tq, Tk] x [Tk, D] product per attention.
 */
export function mixKiviValues(b: GraphBuilder, graph: Graph, core: AttentionCore, floatValues: string, sameGroup: string, layer: number, consumers = graph.consumers()): void {
  const probs = core.probsValue.inputs[0];
  const quantValues = core.probsValue.inputs[1];
  const out = core.probsValue.outputs[0];
  if (graph.outputs.some((o) => o.name === out)) throw new Error(`KV-cache quantization: attention output '${out}' is a graph output`);
  const own = b.mul(probs, b.castLike(sameGroup, probs));
  const correction = b.matmul(own, b.sub(floatValues, quantValues));
  const mixed = b.op1('Add', [out, correction], {}, { name: `${PREFIX}${layer}/values` });
  for (const n of consumers.get(out) ?? []) n.inputs = n.inputs.map((x) => (x === out ? mixed : x));
}

/** The KV-cache quantization a graph carries (inserted by insertKvCacheQuantizers), or undefined. */
export function kvCacheQuantOf(graph: Graph): KvCacheQuant | undefined {
  const key = graph.nodes.find((n) => n.name.startsWith(PREFIX) && n.name.endsWith('/key'));
  if (!key) return undefined;
  if (key.opType === 'KvGroupQuantize') return { bits: attrInt(key, 'bits', 4), layout: 'kivi', groupSize: attrInt(key, 'group_size', KIVI_GROUP_SIZE) };
  return { bits: attrInt(key, 'bits', 8), layout: 'per-token' };
}

export function kvDescription(kv: KvCacheQuant): string {
  return kv.layout === 'kivi' ? `kv${kv.bits} KIVI (keys per channel in groups of ${kv.groupSize ?? KIVI_GROUP_SIZE} tokens, values per token, the unfinished group in float)` : `kv${kv.bits} per token`;
}

/** `model` with its KV cache quantized (a copy; the model's quantizers and parameters unchanged). */
export function withKvCacheQuantization(model: Model, kv: KvCacheQuant): Model {
  if (model.task !== 'language-model') throw new InputError(`--kv-bits: model '${model.name}' is not a language model`);
  const graph = model.graph.clone();
  insertKvCacheQuantizers(graph, kv);
  return { ...model, graph };
}

/**
 * The KV-cache quantization a run asks for: --kv-bits/--kv-layout (`kvCache`) or --quant-config's "kvCache"; both
 * given and different is refused rather than one silently winning.
 */
export function runKvCache(config: { kvCache?: KvCacheQuant; quantConfig?: { kvCache?: KvCacheQuant } }): KvCacheQuant | undefined {
  const flags = config.kvCache;
  const file = config.quantConfig?.kvCache;
  if (flags && file && (flags.bits !== file.bits || flags.layout !== file.layout || (flags.groupSize ?? KIVI_GROUP_SIZE) !== (file.groupSize ?? KIVI_GROUP_SIZE))) {
    throw new InputError(`--kv-bits ${flags.bits} --kv-layout ${flags.layout} contradicts --quant-config's "kvCache" (${kvDescription(file)}); give one of them`);
  }
  const kv = flags ?? file;
  return kv ? checkKvCacheQuant(kv) : undefined;
}

/** JSON form of a KV-cache quantization for metrics and reports. */
export function kvCacheJson(kv: KvCacheQuant): { bits: number; layout: KvLayout; group_size?: number } {
  return { bits: kv.bits, layout: kv.layout, ...(kv.layout === 'kivi' ? { group_size: kv.groupSize ?? KIVI_GROUP_SIZE } : {}) };
}
