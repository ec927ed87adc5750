/**
 * The deployable KV-cache decoder of a language-model run: the zoo transformer's decoder form
 * (models/transformers.ts transformerDecoder: input_ids, position_ids, attention_mask, past_key_values.{i}.key/value
 * in, logits and present.{i}.key/value out, [batch, heads, sequence, head_size]; prefill and decode in one graph)
 * with each quantized weight replaced by its trained integer codes, and each activation quantizer placed where the
 * training graph has it. Formats (docs/export-formats.md, "Language models"):
 * - fp32: float weights (a QAT run's are its fake-quantized values: the simulation as a plain float graph);
 * - int4: standard ONNX, each weight an INT4 DequantizeLinear (axis 0, block_size = the group, opset 21) feeding
 *   its MatMul, one DequantizeLinear per MatMul (a tied LM head gets its own, of the transposed codes): the form
 *   ORT's QDQ optimizer fuses into MatMulNBits;
 * - matmulnbits: com.microsoft MatMulNBits written directly (bits 2, 4, 8; 3-bit codes in 4-bit blocks);
 * - qdq: int8 per-token activations times 8-bit (or ternary) per-channel weights on com.microsoft
 *   MatMulIntegerToFloat (lm-integer-matmul.ts), for runs trained with per-token int8 activations (w8a8, b158).
 * Token embeddings: int4 DequantizeLinear -> Gather (int4), GatherBlockQuantized or int8 DequantizeLinear -> Gather
 * (matmulnbits, qdq; lm-embeddings.ts), or float with `embeddings: 'float'`.
 */
import { DType } from '../ir/dtype.js';
import { Graph, topologicalOrder } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import { transformerDecoder } from '../models/transformers.js';
import { DECODER_ATTENTIONS, DecoderAttention, decoderNames } from '../models/transformer-builder.js';
import { QATKIT } from '../quant/fake-quantize-op.js';
import { Quantizer } from '../quant/prepare.js';
import { lowerCustomOps } from '../runtime/lower.js';
import { InputError } from '../validate/schema.js';
import { Emitter, pruneDead } from './emitter.js';
import { emitLanguageModelWeights, fetchWeightValues, LmExportedWeight, nodeNamed } from './lm-weights.js';
import { kvCacheQuantOf } from '../quant/kv-cache.js';
import { StoredKvCache, storeQuantizedKvCache } from './lm-kv-cache.js';
import { levelFourActivations } from './lm-level4.js';
import { passThroughSource } from '../quant/pass-through.js';
import { raiseToOpset21 } from './opset-21.js';

export const LM_EXPORT_FORMATS = ['fp32', 'int4', 'matmulnbits', 'qdq'] as const;
export type LmExportFormat = (typeof LM_EXPORT_FORMATS)[number];
export const EMBEDDING_MODES = ['quantized', 'float'] as const;
export type EmbeddingMode = (typeof EMBEDDING_MODES)[number];

export interface LmExportOptions {
  format: LmExportFormat;
  /** Token embeddings: 'quantized' (int4 DequantizeLinear -> Gather where the format has it) or 'float'. */
  embeddings?: EmbeddingMode;
  threads?: number;
  /** Per-channel / per-tensor weights (w8a8, b158): the widest block their repeated scale is stored in (default 256). */
  blockSize?: number;
  /** qdq: 8-bit weight codes as uint8 around 128 (u8u8 kernels, exact everywhere; the default) or int8 (u8s8: exact with VNNI/AMX). */
  weightType?: 'uint8' | 'int8';
  /** Attention: 'fused' (GroupQueryAttention), 'ops', or 'auto' (the default): fused wherever the run allows it. */
  attention?: AttentionMode;
}

export const ATTENTION_MODES = ['auto', ...DECODER_ATTENTIONS] as const;
export type AttentionMode = (typeof ATTENTION_MODES)[number];

export interface LmDecoderExport {
  graph: Graph;
  format: LmExportFormat;
  weights: LmExportedWeight[];
  /** How the token table is stored and read: 'float', or the quantized kernel. */
  embeddings: string;
  /** Activation quantizers carried into the decoder (float ops: their lowering, exactly as trained). */
  activations: { tensor: string; layers: string[]; spec: string }[];
  /**
   * MatMulNBits accuracy_level written (matmulnbits: 4 where the run trained the kernel's own per-token-per-block
   * int8 activations, lm-level4.ts, else 0; the highest when layers differ), or the one ORT's fusion must be told
   * to use (int4: 0).
   */
  accuracy_level: 0 | 4;
  /** Every accuracy_level the file's MatMulNBits take, ascending. */
  accuracy_levels: (0 | 4)[];
  /** A --kv-bits run: the cache stored quantized (lm-kv-cache.ts), its tensors and bytes per token. */
  kvCache?: StoredKvCache;
  /** How the decoder computes attention, and why. */
  attention: { mode: AttentionMode; used: DecoderAttention; reason: string };
}

/**
 * Activation quantizers at the same tensors as in training: from the first layer it feeds back through
 * value-preserving ops (what prepare.ts's planQuantization does), every reader rewired to the quantized value.
 */
function placeActivationQuantizers(graph: Graph, model: Model, em: Emitter, inKernel: ReadonlySet<string>): LmDecoderExport['activations'] {
  const placed: LmDecoderExport['activations'] = [];
  for (const a of model.quant!.quantizers.filter((q) => q.role === 'activation')) {
    if (inKernel.has(a.node)) {
      const g = a.spec.granularity;
      placed.push({ tensor: a.tensor, layers: a.layers, spec: `${a.spec.bits}-bit ${a.spec.method} per-token block ${g.kind === 'per-token' ? g.blockSize : '?'} in MatMulNBits (accuracy_level 4)` });
      continue;
    }
    const qatNode = model.graph.nodes.find((n) => n.name === a.node)!;
    const producers = graph.producers();
    const source = passThroughSource(producers, nodeNamed(graph, a.layers[0]).inputs[0]);
    const before = graph.nodes.length;
    const viewed = headsView(graph, em, model.graph.typeOf(a.tensor).shape, source, a.tensor);
    let input = viewed;
    const plan = qatNode.inputs[0] !== a.tensor; // BitLinear's RMSNorm sits between the tensor and the quantizer
    if (plan) {
      const sq = em.node('Mul', [viewed, viewed]);
      const mean = em.node('ReduceMean', [sq], { axes: [-1], keepdims: 1 });
      const inv = em.node('Reciprocal', [em.node('Sqrt', [em.node('Add', [mean, em.initializer('bitlinear/epsilon', Tensor.float([], [1e-5]))])])]);
      input = em.node('Mul', [viewed, inv], {}, undefined, `${a.tensor}/bitlinear_rms_norm`);
      graph.types.set(input, graph.typeOf(viewed)); // the quantizer's lowering reads its input's rank
    }
    let out = em.node(qatNode.opType, [input, ...qatNode.inputs.slice(1)], {}, undefined, `${a.tensor}/activation_quant`);
    graph.types.set(out, graph.typeOf(viewed));
    const quantNode = graph.nodes.at(-1)!;
    if (viewed !== source) {
      const width = graph.typeOf(source).shape.at(-1) as number;
      out = em.node('Reshape', [out, em.initializer(`${a.tensor}/merged_shape`, Tensor.int64([3], [0, 0, width]))], {}, undefined, `${a.tensor}/merge_heads`);
      graph.types.set(out, graph.typeOf(source));
    }
    quantNode.domain = QATKIT;
    quantNode.attrs = { ...qatNode.attrs };
    for (const extra of qatNode.inputs.slice(1)) {
      const t = model.graph.initializers.get(extra);
      if (!t) throw new Error(`export: activation quantizer '${a.node}' reads '${extra}', which is not a constant; only dynamic (per-token) activation quantizers export`);
      graph.initializers.set(extra, t);
    }
    const added = new Set(graph.nodes.slice(before));
    for (const n of graph.nodes) if (!added.has(n)) n.inputs = n.inputs.map((i) => (i === source ? out : i));
    const g = a.spec.granularity;
    placed.push({ tensor: source, layers: a.layers, spec: `${a.spec.bits}-bit ${a.spec.method} ${g.kind}${g.kind === 'per-token' && g.blockSize ? ` block ${g.blockSize}` : ''}${plan ? ' after RMSNorm (BitLinear)' : ''}` });
  }
  return placed;
}

/**
 * The decoder value a trained per-head quantizer reads. Training quantized the attention output per head
 * ([B, H, T, D]) before the heads merged; fused attention returns them merged ([B, T, H x D]). Viewed as
 * [B, T, H, D], every token and head has the same row of D values, so the quantizer (and BitLinear's norm, both
 * over the last axis) computes the same groups; the caller merges the result back.
 */
function headsView(graph: Graph, em: Emitter, trained: readonly (number | string)[], source: string, tensor: string): string {
  const shape = graph.typeOf(source).shape;
  if (trained.length !== 4 || shape.length !== 3) return source;
  const [heads, headSize] = [trained[1], trained[3]];
  if (typeof heads !== 'number' || typeof headSize !== 'number') throw new Error(`export: per-head quantizer on '${tensor}' has shape [${trained.join(', ')}]; heads and head size must be known`);
  const viewed = em.node('Reshape', [source, em.initializer(`${tensor}/heads_shape`, Tensor.int64([4], [0, 0, heads, headSize]))], {}, undefined, `${tensor}/split_heads`);
  graph.types.set(viewed, { dtype: DType.FLOAT, shape: [shape[0], shape[1], heads, headSize] });
  return viewed;
}

/** Which of a weight quantizer's layers read the parameter as a token table (a Gather, or a tied head's Transpose). */
function isTable(model: Model, q: Quantizer): boolean {
  return q.layers.some((l) => model.graph.nodes.find((n) => n.name === l)?.opType === 'Gather');
}

/**
 * Which attention the decoder gets. The fused op (GroupQueryAttention: one node per layer where the ops form has
 * about a dozen, and no mask subgraph) is the faster decoder; it cannot hold a quantized KV cache (stored codes,
 * lm-kv-cache.ts), nor qdq's integer product over per-head codes ([B, H, T, D]: the output projection's input in
 * w8a8 / b158 runs, one scale per token per head); per-head quantizers as float ops read a view of its output
 * (headsView). The `int4` format, standard ONNX by definition, keeps the ops unless fused is asked for.
 */
export function chooseAttention(model: Model, mode: AttentionMode = 'auto', format: LmExportFormat = 'fp32', inKernel: ReadonlySet<string> = new Set()): LmDecoderExport['attention'] {
  const blockers: string[] = [];
  if (kvCacheQuantOf(model.graph)) blockers.push('the run quantizes its KV cache (--kv-bits)');
  // Quantizers MatMulNBits computes itself at accuracy_level 4 (lm-level4.ts) leave no node in the graph.
  // Per-head quantizers stay float ops on a [B, T, H, D] view of the fused output (headsView), except in qdq, whose
  // integer product takes per-head codes [B, H, T, D] (lm-integer-matmul.ts).
  const perHead = format !== 'qdq' ? [] : (model.quant?.quantizers ?? []).filter((q) => q.role === 'activation' && !inKernel.has(q.node) && model.graph.typeOf(q.tensor).shape.length !== 3);
  if (perHead.length) blockers.push(`per-head int8 activations for MatMulIntegerToFloat (${perHead.map((q) => q.layers[0]).slice(0, 3).join(', ')})`);
  // ORT's CPU kernel (group_query_attention_helper.h) takes head sizes that are multiples of 8.
  const arch = model.lm?.arch;
  const headSize = arch ? arch.dim / arch.heads : 0;
  if (arch && headSize % 8 !== 0) blockers.push(`a head size of ${headSize} (GroupQueryAttention takes multiples of 8)`);
  if (mode === 'fused' && blockers.length) throw new InputError(`--attention fused: GroupQueryAttention cannot carry ${blockers.join(' and ')}; use --attention ops or auto`);
  if (mode === 'ops') return { mode, used: 'ops', reason: '--attention ops: standard ONNX ops' };
  if (blockers.length) return { mode, used: 'ops', reason: `standard ONNX ops: ${blockers.join(' and ')}` };
  if (mode === 'auto' && format === 'int4') return { mode, used: 'ops', reason: 'standard ONNX ops: the int4 format is standard ONNX throughout (--attention fused adds GroupQueryAttention)' };
  return { mode, used: 'fused', reason: 'com.microsoft GroupQueryAttention, one per layer' };
}

/** Builds the exported decoder of `model` (a language-model run's model, fp32 or QAT) in `options.format`. */
export async function buildLanguageModelDecoder(model: Model, options: LmExportOptions): Promise<LmDecoderExport> {
  if (model.task !== 'language-model' || !model.lm?.arch) throw new InputError(`export: model '${model.name}' is not a zoo transformer (gpt, llama); only those have a KV-cache decoder form`);
  const format = options.format;
  const level4 = format === 'matmulnbits' ? levelFourActivations(model, options.blockSize) : { quantizers: new Set<string>(), layers: new Set<string>() };
  const attention = chooseAttention(model, options.attention, format, level4.quantizers);
  const decoder = transformerDecoder(model, attention.used);
  const graph = decoder.graph;
  const kvQuant = kvCacheQuantOf(model.graph);
  const arch = model.lm.arch;
  const kvCache = kvQuant ? storeQuantizedKvCache(graph, kvQuant, { heads: arch.heads, headSize: arch.dim / arch.heads, layers: arch.layers }) : undefined;
  const quant = model.quant;
  const weightQuantizers = quant?.quantizers.filter((q) => q.role === 'weight') ?? [];
  if (format !== 'fp32' && weightQuantizers.length === 0) {
    throw new InputError(`--format ${format}: run '${model.name}' has no quantized weights; export an fp32 run with --format fp32, or train it with --quant (w4a16-g32, w3a16-g32, w2a16-g32, w4a8-g32, w8a8, b158) first`);
  }
  const em = new Emitter(graph);
  const activations = quant ? placeActivationQuantizers(graph, model, em, level4.quantizers) : [];
  const values = await fetchWeightValues(model, weightQuantizers, options.threads);
  const { weights, embeddings, levels: nbitsLevels } = emitLanguageModelWeights(graph, em, weightQuantizers, values, {
    format, embeddings: options.embeddings, blockSize: options.blockSize, weightType: options.weightType, tokenIds: decoderNames.inputIds, levelFourLayers: level4.layers,
    headsOf: () => arch.heads,
    layoutOf: (q) => (isTable(model, q) ? 'nk' : 'kn'),
  });
  pruneDead(graph);
  graph.nodes = topologicalOrder(graph);
  const lowered = lowerCustomOps(graph);
  // int4: blocked DequantizeLinear; qdq: blocked (per-token) QuantizeLinear; both opset 21.
  if (format === 'int4' || format === 'qdq') raiseToOpset21(lowered);
  lowered.metadata = {
    'qatkit.format': format,
    'qatkit.model': model.name,
    'qatkit.quantization': JSON.stringify({ preset: quant?.preset ?? null, weights, activations }),
    'qatkit.attention': attention.used,
    ...(kvCache ? { 'qatkit.kv_cache': JSON.stringify(kvCache) } : {}),
  };
  const levels = [...nbitsLevels].sort();
  return { graph: lowered, format, weights, embeddings, activations, accuracy_level: levels.includes(4) ? 4 : 0, accuracy_levels: levels, attention, ...(kvCache ? { kvCache } : {}) };
}
