/**
 * The deployable form of a language model that has no KV-cache decoder form here (an imported PyTorch decoder:
 * the attention is the user's own ops, which the zoo's decoder builder does not rebuild). The model's own
 * inference graph (input_ids [B, T] and the HF inputs it takes -> logits [B, T, V]) with each quantized weight
 * replaced by its trained integer codes in the format's kernel (lm-weights.ts), and the activation quantizers
 * left where training put them, lowered to the same float ops (or, at accuracy_level 4, computed by MatMulNBits
 * itself: lm-level4.ts). It generates by full recompute (generate/recompute-generator.ts), which is what the
 * imported model did in training and evaluation too.
 */
import { Graph, Node, topologicalOrder } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { QATKIT } from '../quant/fake-quantize-op.js';
import { Quantizer } from '../quant/prepare.js';
import { lowerCustomOps } from '../runtime/lower.js';
import { InputError } from '../validate/schema.js';
import { Emitter, pruneDead } from './emitter.js';
import { gemmAsMatMul, plainGemm } from './gemm-as-matmul.js';
import type { LmDecoderExport, LmExportOptions } from './lm-decoder.js';
import { levelFourActivations } from './lm-level4.js';
import { emitLanguageModelWeights, fetchWeightValues, nodeNamed } from './lm-weights.js';
import { raiseToOpset21 } from './opset-21.js';
import { readShapesBeforeQuantizers } from './shapes-before-quantizers.js';

export const RECOMPUTE_ATTENTION = { mode: 'ops', used: 'ops', reason: "the imported graph's own attention ops (full recompute: the model has no KV-cache decoder form here)" } as const;

/** Whether `node` reads `value` through a 2-D Transpose (the weight as [N, K], read as its transpose). */
function readsTransposed(producers: Map<string, Node>, node: Node, value: string): boolean {
  const t = producers.get(node.inputs[1]);
  const perm = t?.attrs.perm;
  return t?.opType === 'Transpose' && t.inputs[0] === value && (perm === undefined || (perm.kind === 'ints' && perm.value.join() === '1,0'));
}

/**
 * How a weight quantizer's parameter is read: [K, N] straight into MatMul B ('kn'), or [N, K] as a token table
 * (Gather) and / or through a Transpose into MatMul B ('nk'). Layers must agree; anything else is refused.
 */
function layoutOf(graph: Graph, producers: Map<string, Node>, q: Quantizer): 'kn' | 'nk' {
  const seen = new Set<'kn' | 'nk'>();
  for (const layer of q.layers) {
    const node = nodeNamed(graph, layer);
    if (node.opType === 'Gather' && node.inputs[0] === q.output) seen.add('nk');
    else if (node.opType === 'MatMul' && node.inputs[1] === q.output) seen.add('kn');
    else if (node.opType === 'MatMul' && readsTransposed(producers, node, q.output)) seen.add('nk');
    else throw new InputError(`export: layer '${layer}' (${node.opType}) reads weight '${q.tensor}' in a form the integer kernels do not take (MatMul B as [K, N] or through a Transpose, or a Gather's table)`);
  }
  if (seen.size > 1) throw new InputError(`export: weight '${q.tensor}' is read both as [K, N] and transposed by its layers (${q.layers.join(', ')}); one set of codes cannot serve both orientations`);
  return [...seen][0];
}

/** Readers of quantizer `node`'s output read its input instead, and the node goes: a kernel computes it. */
function bypass(graph: Graph, node: Node): void {
  for (const n of graph.nodes) n.inputs = n.inputs.map((i) => (i === node.outputs[0] ? node.inputs[0] : i));
  graph.nodes.splice(graph.nodes.indexOf(node), 1);
}

/** One line per activation quantizer: its bits, method and granularity, as the report lists them. */
function activationLines(model: Model, inKernel: ReadonlySet<string>): LmDecoderExport['activations'] {
  return (model.quant?.quantizers ?? [])
    .filter((q) => q.role === 'activation')
    .map((a) => {
      const g = a.spec.granularity;
      const block = g.kind === 'per-token' && g.blockSize ? ` block ${g.blockSize}` : '';
      return { tensor: a.tensor, layers: a.layers, spec: `${a.spec.bits}-bit ${a.spec.method} ${g.kind}${block}${inKernel.has(a.node) ? ' in MatMulNBits (accuracy_level 4)' : ''}` };
    });
}

/** Builds the exported full-recompute graph of `model` (an imported language model, fp32 or QAT) in `options.format`. */
export async function buildRecomputeLanguageModel(model: Model, options: LmExportOptions): Promise<LmDecoderExport> {
  if (model.task !== 'language-model' || !model.lm) throw new InputError(`export: model '${model.name}' is not a language model`);
  const format = options.format;
  if (options.attention === 'fused') throw new InputError(`--attention fused: '${model.name}' is an imported model whose attention is its own ops; only gpt and llama runs export GroupQueryAttention`);
  const weightQuantizers = model.quant?.quantizers.filter((q) => q.role === 'weight') ?? [];
  if (format !== 'fp32' && weightQuantizers.length === 0) {
    throw new InputError(`--format ${format}: run '${model.name}' has no quantized weights; export an fp32 run with --format fp32, or train it with --quant (w4a16-g32, w3a16-g32, w2a16-g32, w4a8-g32, w8a8, b158) first`);
  }
  const graph = model.graph.clone();
  graph.name = `${model.name}_${format}`;
  const em = new Emitter(graph);
  // Imported Linears that export as Gemm become MatMuls, the op every weight kernel replaces.
  for (const q of weightQuantizers) {
    for (const layer of q.layers) {
      const node = nodeNamed(graph, layer);
      if (node.opType !== 'Gemm') continue;
      if (!plainGemm(node)) throw new InputError(`export: layer '${layer}' is a Gemm with transA, alpha or beta set; the integer kernels take A x B (+ C)`);
      gemmAsMatMul(em, node);
    }
  }
  graph.nodes = topologicalOrder(graph);
  const producers = graph.producers();
  const layouts = new Map(weightQuantizers.map((q) => [q.node, layoutOf(graph, producers, q)]));
  const level4 = format === 'matmulnbits' ? levelFourActivations(model, options.blockSize) : { quantizers: new Set<string>(), layers: new Set<string>() };
  for (const name of level4.quantizers) bypass(graph, nodeNamed(graph, name));
  const values = await fetchWeightValues(model, weightQuantizers, options.threads);
  const { weights, embeddings, levels } = emitLanguageModelWeights(graph, em, weightQuantizers, values, {
    format, embeddings: options.embeddings, blockSize: options.blockSize, weightType: options.weightType, tokenIds: model.input, levelFourLayers: level4.layers,
    headsOf: (quantizer) => {
      const heads = graph.typeOf(quantizer.inputs[0]).shape[1];
      if (typeof heads !== 'number') throw new Error(`export: per-head quantizer '${quantizer.name}' reads [${graph.typeOf(quantizer.inputs[0]).shape.join(', ')}]; its head count must be known`);
      return heads;
    },
    layoutOf: (q) => layouts.get(q.node)!,
  });
  // The model's own x.size() readers must not keep a replaced Linear's float fake-quant alive.
  readShapesBeforeQuantizers(graph, new Set((model.quant?.quantizers ?? []).filter((q) => q.role === 'activation').map((q) => q.node)));
  pruneDead(graph);
  graph.nodes = topologicalOrder(graph);
  // Every quantized weight is now its codes: a float copy left behind would make the file no smaller.
  const left = weightQuantizers.filter((q) => graph.initializers.has(q.tensor) || graph.nodes.some((n) => n.domain === QATKIT && n.outputs[0] === q.output));
  if (format !== 'fp32' && left.length) {
    throw new InputError(`export: weight(s) ${left.map((q) => `'${q.tensor}'`).join(', ')} are still read in float by ops other than their layers (${left.flatMap((q) => q.layers).join(', ')}); the integer formats store each quantized weight once, as codes`);
  }
  const lowered = lowerCustomOps(graph);
  if (format === 'int4' || format === 'qdq') raiseToOpset21(lowered);
  const activations = activationLines(model, level4.quantizers);
  lowered.metadata = {
    'qatkit.format': format,
    'qatkit.model': model.name,
    'qatkit.quantization': JSON.stringify({ preset: model.quant?.preset ?? null, weights, activations }),
    'qatkit.generation': 'full-recompute',
  };
  const sorted = [...levels].sort();
  return { graph: lowered, format, weights, embeddings, activations, accuracy_level: sorted.includes(4) ? 4 : 0, accuracy_levels: sorted, attention: { ...RECOMPUTE_ATTENTION } };
}
