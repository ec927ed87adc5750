import { GraphBuilder } from '../ir/builder.js';
import { attrInt, Graph, Node, topologicalOrder } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { Model } from '../models/model.js';
import { QATKIT } from './fake-quantize-op.js';
import { foldedChain, type FoldedChain } from './fold-batchnorm.js';
import { type Quantizer, weightAxis } from './prepare.js';
import { passThroughSource } from './pass-through.js';
import { levelOffset } from './spec.js';

/**
 * Integer biases in the simulation (Jacob et al. 2018, section 2.4; Brevitas' Int32Bias). An integer Conv / Gemm
 * (ONNX QLinearConv, ORT's fused QDQ Conv) adds its bias as int32 codes of s_in * s_w to the int32 accumulator,
 * so the bias it adds is round(b / (s_in s_w)) s_in s_w, not b. The simulation adds that same value: each such
 * bias goes through FakeQuantize on the s_in * s_w grid (one scale per output channel, zero point 0, the int32
 * range, the straight-through gradient to b; the scales take no gradient from it). With a folded BN in inference
 * form (the evaluation graph, the training step after the BN-freeze step) the bias is the folded shift
 * (b - mean) gamma / sqrt(var + eps) + beta, and Conv(x, W_fold) + bias replaces Conv / c, the BN and its
 * statistics: exactly what the export computes. Without it a 4-bit residual network's export moved enough codes
 * across rounding ties to lose parity (docs/export-formats.md, "Parity").
 * Only layers the export gives an int32 bias take one: a static per-tensor activation quantizer (observer, LSQ,
 * LSQ+, PACT) feeds the layer's input, its weight quantizer is symmetric per tensor or per output channel (not
 * per group), and a Gemm has alpha = beta = 1. Language models are left alone (their exports keep float biases).
 */
export interface IntegerBias {
  /** The Conv or Gemm that adds the bias. */
  layer: string;
  /** The float bias before rounding (the folded shift for a conv with a folded BN), [C]. */
  bias: string;
  /** Its grid s_in * s_w, [C]. */
  scale: string;
  /** The fake-quantized bias the layer adds, [C]. */
  output: string;
  /** Folded BN: the Add that now writes the BN's output (Conv output + bias); the export moves the bias into the conv. */
  add?: string;
}

/** The largest float32 below 2^31: the int32 clamp bound that float32 and int32 both hold exactly. */
export const INT32_CODE_MAX = 2 ** 31 - 128;
export const INT32_CODE_MIN = -(2 ** 31);

/**
 * Rewrites `graph` (a clone of `model`'s graph: evaluation or training step) in place so that every bias that
 * the integer export stores as int32 is fake-quantized on its grid; returns what it changed. Folded convs whose
 * BN has been turned into batch-statistics form (a training step before the BN freeze) are left alone: they have
 * no fixed bias yet.
 */
export function simulateIntegerBiases(graph: Graph, model: Model): IntegerBias[] {
  const quant = model.quant;
  if (!quant || model.task === 'language-model') return [];
  const producers = graph.producers();
  const consumers = graph.consumers();
  const activationOf = new Map(quant.quantizers.filter((q) => q.role === 'activation').map((q) => [q.output, q]));
  const weightOf = new Map<string, Quantizer>();
  for (const q of quant.quantizers) if (q.role === 'weight' && q.layers.length === 1) weightOf.set(q.layers[0], q);
  const folded = new Map(quant.folded.map((f) => [f.conv, f]));
  const b = new GraphBuilder(graph, 'int_bias/');
  const removed = new Set<Node>();
  const biases: IntegerBias[] = [];
  for (const layer of [...graph.nodes]) {
    if (layer.domain !== '' || (layer.opType !== 'Conv' && layer.opType !== 'Gemm')) continue;
    if (layer.opType === 'Gemm' && (attrInt(layer, 'alpha', 1) !== 1 || attrInt(layer, 'beta', 1) !== 1)) continue;
    const wq = weightOf.get(layer.name);
    const aq = activationOf.get(passThroughSource(producers, layer.inputs[0]));
    if (!wq || !aq || !staticActivation(aq) || !onOutputChannelGrid(wq, layer)) continue;
    const chain = folded.has(layer.name) ? foldedChain(graph, consumers, layer) : undefined;
    if (folded.has(layer.name) ? !chain : !layer.inputs[2]) continue;
    const channels = outputChannels(graph, layer);
    const given = layer.inputs[2];
    const floatBias = chain ? foldedShift(b, chain) : b.rank(given) === 1 ? given : b.reshape(given, [-1]);
    const weightScale = gridWeightScale(b, wq, layer, channels);
    const scale = b.mul(activationScale(b, aq), weightScale);
    const zero = b.constant(Tensor.float([channels], new Array(channels).fill(0)));
    const output = b.op1(
      'FakeQuantize',
      [floatBias, scale, zero],
      { qmin: INT32_CODE_MIN, qmax: INT32_CODE_MAX, axis: 0 },
      { domain: QATKIT, name: `${layer.name}/bias_fake_quant` },
    );
    if (chain) {
      const rank = graph.typeOf(chain.bn.outputs[0]).shape.length;
      const add = b.addNode({
        opType: 'Add',
        domain: '',
        name: `${layer.name}/bias_add`,
        inputs: [layer.outputs[0], b.reshape(output, [1, -1, ...Array(rank - 2).fill(1)])],
        outputs: [chain.bn.outputs[0]],
        attrs: {},
      });
      for (const n of [...chain.between, chain.bn]) removed.add(n);
      biases.push({ layer: layer.name, bias: floatBias, scale, output, add: add.name });
    } else {
      layer.inputs[2] = output;
      biases.push({ layer: layer.name, bias: floatBias, scale, output });
    }
  }
  if (removed.size) graph.nodes = graph.nodes.filter((n) => !removed.has(n));
  if (biases.length) graph.nodes = topologicalOrder(graph);
  return biases;
}

/** One static scale for the whole tensor, at most 8 bits: what the export's QuantizeLinear stores. */
function staticActivation(q: Quantizer): boolean {
  return q.spec.granularity.kind === 'per-tensor' && q.spec.bits <= 8 && (q.spec.method === 'pact' || Boolean(q.scale));
}

/** s_in as the export reads it: the quantizer's scale value, or PACT's alpha / (2^bits - 1) in float32. */
function activationScale(b: GraphBuilder, q: Quantizer): string {
  if (q.spec.method === 'pact') return b.div(q.learned[0], b.constant(2 ** q.spec.bits - 1));
  return b.reshape(q.scale!, []);
}

function outputChannels(graph: Graph, layer: Node): number {
  const d = graph.typeOf(layer.inputs[1]).shape[weightAxis(layer)];
  if (typeof d !== 'number') throw new Error(`layer '${layer.name}': its weight has a symbolic output dimension`);
  return d;
}

/**
 * Whether the export stores this weight with one scale per tensor or per output channel and zero point 0 (what an
 * int32 bias needs): per-group, asymmetric weights, or per-channel scales along another axis keep a float bias.
 */
function onOutputChannelGrid(q: Quantizer, layer: Node): boolean {
  const g = q.spec.granularity;
  if (g.kind !== 'per-tensor' && (g.kind !== 'per-channel' || g.axis !== weightAxis(layer))) return false;
  return q.spec.method === 'binary' || q.spec.method === 'ternary' || (q.spec.symmetric && Boolean(q.scale));
}

/**
 * s_w per output channel ([C]) as the export stores the weight: the quantizer's scale (halved on SEQ's half-step
 * grid, whose codes export as odd doubles), or max |w_q| per channel for binary / ternary weights (an all-zero
 * ternary channel takes 1), as export/weight-codes.ts reads them back.
 */
function gridWeightScale(b: GraphBuilder, q: Quantizer, layer: Node, channels: number): string {
  const perChannel = q.spec.granularity.kind === 'per-channel';
  const toChannels = (s: string) => (perChannel ? b.reshape(s, [channels]) : b.op1('Expand', [b.reshape(s, []), b.ints([channels])]));
  if (q.spec.method === 'binary' || q.spec.method === 'ternary') {
    const axes = Array.from({ length: b.rank(q.output) }, (_, i) => i).filter((i) => !perChannel || i !== weightAxis(layer));
    const max = b.op1('ReduceMax', [b.abs(q.output)], { axes, keepdims: 0 });
    return toChannels(b.where(b.equal(max, b.scalarLike(0, max)), b.scalarLike(1, max), max));
  }
  return toChannels(levelOffset(q.spec) ? b.mul(q.scale!, b.scalarLike(0.5, q.scale!)) : q.scale!);
}

/** (b - mean) F + beta per channel, F = gamma / sqrt(var + eps) as the folding computed it (the Div's divisor). */
function foldedShift(b: GraphBuilder, chain: FoldedChain): string {
  const [, , beta, mean] = chain.bn.inputs;
  const factor = b.reshape(chain.factor, [-1]);
  const centred = chain.convBias ? b.sub(b.reshape(chain.convBias, [-1]), mean) : b.neg(mean);
  return b.add(b.mul(centred, factor), beta);
}
