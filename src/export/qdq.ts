import { DType } from '../ir/dtype.js';
import { attrFloat, Graph, Node, topologicalOrder } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import { QATKIT } from '../quant/fake-quantize-op.js';
import { Quantizer } from '../quant/prepare.js';
import { quantRange, roundHalfEven } from '../quant/spec.js';
import { buildEvalGraphWithBiases } from '../train/step-graph.js';
import { INT32_CODE_MAX, INT32_CODE_MIN, type IntegerBias } from '../quant/integer-bias.js';
import { foldedChain, type FoldedChain } from '../quant/fold-batchnorm.js';
import { passThroughSource, VALUE_PRESERVING_OPS } from '../quant/pass-through.js';
import { Emitter, pruneDead } from './emitter.js';
import { raiseToOpset21 } from './opset-21.js';
import { fetchValues } from './fetch-values.js';
import { weightCodes } from './weight-codes.js';
import { emitWeightCodes, fitsInt4, packedLayout, scaleDimsOf, WeightStorage } from './weight-storage.js';
import { InputError } from '../validate/schema.js';

export const EXPORT_FORMATS = ['qdq', 'int4', 'packed'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export const WEIGHT_TYPES = ['uint8', 'int8'] as const;

export interface ExportOptions {
  format?: ExportFormat;
  threads?: number;
  /**
   * Storage of 8-bit weight codes. Default uint8 (codes and zero point shifted by 128: the same values):
   * ORT's x86 u8s8 kernels on AVX2 / AVX-512 without VNNI add pairs of uint8 x int8 products in int16
   * (VPMADDUBSW) and saturate, which breaks parity (ORT's quantization docs: reduce_range); u8u8 kernels
   * accumulate exactly on every CPU. int8 is the standard form for VNNI x86 and ARM targets.
   */
  weightType?: (typeof WEIGHT_TYPES)[number];
}

export interface ExportedLayer {
  role: Quantizer['role'];
  tensor: string;
  layers: string[];
  bits: number;
  method: string;
  signed: boolean;
  symmetric: boolean;
  granularity: string;
  /** Per group: elements per group (the blocked DequantizeLinear's block_size). */
  group?: number;
  /** How the codes are stored: int8 / int4 / packed (weights), uint8 / int8 (activations). */
  storage: string;
}

export interface ExportResult {
  graph: Graph;
  format: ExportFormat;
  /** Bytes of the quantized weights as float32 in the trained model, and as stored in the export. */
  weightBytes: { float32: number; stored: number };
  layers: ExportedLayer[];
}

interface FoldChain extends FoldedChain {
  conv: Node;
}

/** The nodes of one folded Conv -> Div(factor) [-> Add(bias)] -> Identity -> BatchNormalization chain. */
function foldChain(graph: Graph, consumers: Map<string, Node[]>, conv: string, batchNorm: string): FoldChain {
  const node = graph.nodes.find((n) => n.name === conv);
  if (!node) throw new Error(`export: folded conv '${conv}' is not in the graph`);
  const chain = foldedChain(graph, consumers, node);
  if (!chain || chain.bn.name !== batchNorm) {
    throw new Error(`export: folded conv '${conv}' does not reach BN '${batchNorm}' as the folding wrote it (Div by the fold factor [-> Add of the conv bias] -> Identity, each value read once)`);
  }
  return { conv: node, ...chain };
}

const data32 = (t: Tensor | undefined, what: string): Float32Array => {
  if (!t || t.dtype !== DType.FLOAT) throw new Error(`export: ${what} is not a float32 tensor`);
  return t.data as Float32Array;
};

interface ActivationQ {
  scale: number;
  scaleName: string;
  zeroName: string;
  /** The clamp of codes narrower than their storage type, when it waits for the layers' re-quantized inputs. */
  deferredClamp?: { min: string; max: string };
}

/**
 * Turns a QAT model into a deployable ONNX QDQ model (see docs/export-formats.md):
 * - BN folded into the conv: W_fold is the trained graph's own `<W>/folded` value (fetched from ONNX Runtime),
 *   bias_fold = (b - mean) * F + beta with F = gamma / sqrt(var + eps) as the graph computed it;
 * - weights stored as integer codes (int8, int4 or packed) with DequantizeLinear (per-channel axis), the codes
 *   checked to dequantize bit for bit to the fake-quantized weights;
 * - Conv / Gemm biases as int32 with scale s_in * s_w and zero point 0 where an activation quantizer feeds the
 *   layer (the form of Jacob et al. 2018, section 2.4, and of ORT's QLinearConv): the codes the evaluation graph
 *   itself rounds the bias to (quant/integer-bias.ts), so the simulation adds the bias the integer model adds;
 * - activations as QuantizeLinear / DequantizeLinear pairs (uint8; a signed grid shifted by 128) with the
 *   trained scales and zero points, also re-applied after MaxPool / Flatten so ORT can fuse every layer;
 * - observers and ai.qatkit ops removed; normalisation kept, so the input is still [0, 1] pixels.
 * Scales and zero points are the values the evaluation graph computes in ONNX Runtime: nothing is recomputed
 * in float64 and nothing is re-calibrated.
 */
export async function exportQdq(model: Model, options: ExportOptions = {}): Promise<ExportResult> {
  const quant = model.quant;
  if (!quant) throw new Error(`export: model '${model.name}' is not quantization-aware (train it with --quant first)`);
  const format = options.format ?? 'qdq';
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new Error(`export: unknown format '${format}'; valid: ${EXPORT_FORMATS.join(', ')}`);
  const { graph, integerBiases } = buildEvalGraphWithBiases(model);
  graph.name = `${model.name}_${format}`;
  const intBias = new Map(integerBiases.map((x) => [x.layer, x]));
  // Folded convs whose frozen BN the evaluation graph already replaced by Conv + int32-grid bias need no chain.
  const chainConsumers = graph.consumers();
  const chains = quant.folded.filter((f) => !intBias.has(f.conv)).map((f) => foldChain(graph, chainConsumers, f.conv, f.batchNorm));

  const fetch = new Set<string>();
  for (const q of quant.quantizers) {
    for (const v of [q.tensor, q.output, q.scale, q.zeroPoint]) if (v) fetch.add(v);
    if (q.spec.method === 'pact') fetch.add(q.learned[0]);
  }
  for (const c of chains) {
    fetch.add(c.factor);
    if (c.convBias) fetch.add(c.convBias);
  }
  for (const x of integerBiases) for (const v of [x.bias, x.scale, x.output]) fetch.add(v);
  const values = await fetchValues(model, [...fetch], options.threads);
  const em = new Emitter(graph);
  const remove = new Set<Node>();
  const producers = graph.producers();

  // BN folding: the conv now writes the BN's output; its bias is the folded shift.
  const floatBias = new Map<string, Float64Array>();
  for (const c of chains) {
    const init = (i: number) => data32(graph.initializers.get(c.bn.inputs[i]), `input ${i} of BN '${c.bn.name}'`);
    const [beta, mean] = [init(2), init(3)];
    const factor = data32(values.get(c.factor), `fold factor '${c.factor}'`);
    const bias = c.convBias ? data32(values.get(c.convBias), `conv bias '${c.convBias}'`) : undefined;
    floatBias.set(c.conv.name, Float64Array.from(beta, (b, ch) => ((bias?.[ch] ?? 0) - mean[ch]) * factor[ch] + b));
    c.conv.outputs = [c.bn.outputs[0]];
    c.conv.inputs = c.conv.inputs.slice(0, 2);
    for (const n of [...c.between, c.bn]) remove.add(n);
  }

  const layers: ExportedLayer[] = [];
  const weightBytes = { float32: 0, stored: 0 };
  // Layers whose weights are quantized: the ones whose inputs are re-quantized and whose biases are emitted below.
  const quantizedLayers = new Set<string>();
  let blocked = false;
  const record = (q: Quantizer, storage: string) =>
    layers.push({
      role: q.role, tensor: q.tensor, layers: q.layers, bits: q.spec.bits, method: q.spec.method, signed: q.spec.signed, symmetric: q.spec.symmetric, granularity: q.spec.granularity.kind,
      ...(q.spec.granularity.kind === 'per-group' ? { group: q.spec.granularity.size } : {}), storage,
    });
  const replaceQuantizer = (q: Quantizer) => {
    const node = producers.get(q.output);
    if (!node || node.domain !== QATKIT) throw new Error(`export: quantizer output '${q.output}' is not produced by an ai.qatkit node`);
    remove.add(node);
  };

  for (const q of quant.quantizers.filter((x) => x.role === 'weight')) {
    const w = weightCodes(q, values);
    const storage: WeightStorage =
      format === 'int4' && fitsInt4(w) ? 'int4' : format === 'packed' && (packedLayout(w)?.perByte ?? 1) > 1 ? 'packed' : (options.weightType ?? 'uint8');
    replaceQuantizer(q);
    const { codes, zeroPoint } = emitWeightCodes(em, w, storage);
    const scale = em.initializer(`${w.tensor}/scale`, new Tensor(DType.FLOAT, scaleDimsOf(w), w.scale));
    // Per-group weights: DequantizeLinear-21's blocked form (block_size along the grouped axis).
    em.node('DequantizeLinear', [codes, scale, zeroPoint], { axis: w.axis, ...(w.blockSize ? { block_size: w.blockSize } : {}) }, q.output, `${w.tensor}/dequantize`);
    if (w.blockSize) blocked = true;
    for (const layer of q.layers) quantizedLayers.add(layer);
    weightBytes.float32 += w.codes.length * 4;
    weightBytes.stored += storage === 'int8' || storage === 'uint8' ? w.codes.length : storage === 'int4' ? Math.ceil(w.codes.length / 2) : Math.ceil(w.codes.length / packedLayout(w)!.perByte);
    record(q, storage);
  }

  const activations = new Map<string, ActivationQ>();
  // Readers of each activation in the trained graph (the nodes emitted below read codes, not these values).
  const readers = graph.consumers();
  for (const q of quant.quantizers.filter((x) => x.role === 'activation')) {
    const spec = q.spec;
    // Dynamic activation scales (per token, absmax) are computed at run time; the CNN formats' QuantizeLinear
    // nodes carry constants, so such a run trains but cannot export: say so and what would.
    if (spec.granularity.kind !== 'per-tensor') throw new InputError(`export: activation '${q.tensor}' uses ${spec.granularity.kind} (dynamic) quantization; none of the image export formats (${EXPORT_FORMATS.join(', ')}) takes it: they store one static scale per activation tensor. Retrain with a static activation method (--quant-config activation.method minmax, lsq, lsq+ or pact, granularity per-tensor); the run's model.onnx keeps it as a float simulation`);
    if (spec.bits > 8) throw new Error(`export: activation '${q.tensor}' has ${spec.bits} bits; export supports up to 8`);
    let scale: number;
    let zero: number;
    const grid = quantRange(spec);
    if (spec.method === 'pact') {
      // PACT: y = round(min(relu(x), alpha) / s) * s with s = alpha / (2^bits - 1) computed in float32.
      const alpha = data32(values.get(q.learned[0]), `PACT alpha '${q.learned[0]}'`)[0];
      scale = Math.fround(alpha / (2 ** spec.bits - 1));
      zero = 0;
    } else if (q.scale && q.zeroPoint) {
      scale = data32(values.get(q.scale), `scale '${q.scale}'`)[0];
      zero = roundHalfEven(data32(values.get(q.zeroPoint), `zero point '${q.zeroPoint}'`)[0]);
    } else {
      throw new InputError(`export: activation '${q.tensor}' uses method '${spec.method}', which has no static scale; none of the image export formats (${EXPORT_FORMATS.join(', ')}) takes it: they store one static scale per activation tensor. Retrain with a static activation method (--quant-config activation.method minmax, lsq, lsq+ or pact, granularity per-tensor); the run's model.onnx keeps it as a float simulation`);
    }
    // Every activation is stored as uint8: a signed grid's codes and zero point move up by 128 (the same values).
    // ORT fuses a QDQ Conv into QLinearConv only when its input and output codes have the same type, so a conv
    // reading a Relu's unsigned codes and writing a residual Add's signed ones would otherwise run in float.
    const type = DType.UINT8;
    const [tmin, tmax] = [0, 255];
    const shift = spec.signed ? 128 : 0;
    const zeroCode = zero + shift;
    let [qmin, qmax] = [grid.qmin + shift, grid.qmax + shift];
    // A Clip (ReLU6) right before the quantizer becomes part of the code clamp: round(clip(x, a, b) / s) + z =
    // clip(round(x / s) + z, code(a), code(b)), both maps being monotonic, so the codes are the same; ORT does not
    // fuse a float Clip between a conv and its QuantizeLinear (unless the clip spans the whole uint8 range), and
    // would run that conv in float.
    const clip = clipBeforeQuantizer(graph, producers, readers, q.tensor);
    const codeOf = (v: number) => (Number.isFinite(v) ? Math.min(tmax, Math.max(tmin, roundHalfEven(Math.fround(Math.fround(v) / scale)) + zeroCode)) : v < 0 ? tmin : tmax);
    let quantized = q.tensor;
    if (clip && Math.max(qmin, codeOf(clip.min)) <= Math.min(qmax, codeOf(clip.max))) {
      [qmin, qmax] = [Math.max(qmin, codeOf(clip.min)), Math.min(qmax, codeOf(clip.max))];
      quantized = clip.node.inputs[0];
      remove.add(clip.node);
    }
    replaceQuantizer(q);
    const scaleName = em.initializer(`${q.tensor}/scale`, Tensor.float([], [scale]));
    const zeroName = em.initializer(`${q.tensor}/zero_point`, new Tensor(type, [], Uint8Array.of(zeroCode)));
    // Narrower than the storage type (e.g. 4-bit codes in uint8): the codes are clamped to the trained grid
    // [qmin, qmax] after QuantizeLinear, not the floats to [(qmin - z) s, (qmax - z) s] (PACT: [0, alpha]) before
    // it. Both give the same codes (round is monotonic, the float bounds sit on the grid), but ORT does not fold a
    // float Clip between a conv's Relu and its QuantizeLinear into QLinearConv, and runs that layer in float on
    // dequantized weights (docs/decisions.md, "Narrow activation codes are clamped as codes").
    const narrow = qmin > tmin || qmax < tmax;
    const bounds = narrow ? codeBounds(em, q.tensor, type, qmin, qmax) : undefined;
    // Where every reader reaches its layers only through MaxPool / Flatten / Reshape / Transpose (the clamp
    // commutes with them), the clamp moves to the layers' re-quantized inputs: a uint8 Clip in front of a MaxPool
    // whose output is flattened keeps ORT from running that pool in NHWC.
    const defer = bounds && readsOnlyThroughPassThrough(graph, readers, q.output, (n) => quantizedLayers.has(n.name));
    let codes = em.node('QuantizeLinear', [quantized, scaleName, zeroName], {}, undefined, `${q.tensor}/quantize`);
    if (bounds && !defer) codes = clampCodes(em, codes, bounds, q.tensor);
    em.node('DequantizeLinear', [codes, scaleName, zeroName], {}, q.output, `${q.tensor}/dequantize`);
    activations.set(q.output, { scale, scaleName, zeroName, ...(defer ? { deferredClamp: bounds } : {}) });
    record(q, 'uint8');
  }

  // Layers: re-quantize inputs that reach them through MaxPool / Flatten (exact: those values are on the grid),
  // and store biases as int32 codes of s_in * s_w.
  graph.nodes = graph.nodes.filter((n) => !remove.has(n));
  const producerOf = graph.producers();
  for (const node of graph.nodes.filter((n) => quantizedLayers.has(n.name))) {
    const src = passThroughSource(producerOf, node.inputs[0]);
    const act = activations.get(src);
    if (act && node.inputs[0] !== src) {
      let codes = em.node('QuantizeLinear', [node.inputs[0], act.scaleName, act.zeroName], {}, undefined, `${node.name}/input_quantize`);
      if (act.deferredClamp) codes = clampCodes(em, codes, act.deferredClamp, `${node.name}/input`);
      node.inputs[0] = em.node('DequantizeLinear', [codes, act.scaleName, act.zeroName], {}, undefined, `${node.name}/input_dequantize`);
    }
    const simulated = intBias.get(node.name);
    if (simulated) {
      // The simulation's own int32 codes and grid (quant/integer-bias.ts): re-derived and checked bit for bit.
      const { codes, scale } = int32BiasCodes(simulated, values);
      const codeName = em.initializer(`${node.name}/bias_int32`, new Tensor(DType.INT32, [codes.length], codes));
      const scaleName = em.initializer(`${node.name}/bias_scale`, new Tensor(DType.FLOAT, [codes.length], scale));
      const zero = em.initializer(`${node.name}/bias_zero_point`, new Tensor(DType.INT32, [codes.length], new Int32Array(codes.length)));
      node.inputs[2] = em.node('DequantizeLinear', [codeName, scaleName, zero], { axis: 0 }, undefined, `${node.name}/bias_dequantize`);
      if (simulated.add) {
        const add = graph.nodes.find((n) => n.name === simulated.add);
        if (!add) throw new Error(`export: bias Add '${simulated.add}' of '${node.name}' is not in the graph`);
        node.outputs = [add.outputs[0]];
        graph.nodes = graph.nodes.filter((n) => n !== add);
      }
      continue;
    }
    const biasName = node.inputs[2];
    const given = biasName ? graph.initializers.get(biasName) : undefined;
    const bias = floatBias.get(node.name) ?? (given ? Float64Array.from(data32(given, `bias '${biasName}'`)) : undefined);
    if (!bias) continue;
    node.inputs[2] = em.initializer(`${node.name}/bias`, Tensor.float([bias.length], bias));
  }

  pruneDead(graph);
  graph.nodes = topologicalOrder(graph);
  const custom = graph.nodes.filter((n) => n.domain !== '');
  if (custom.length) throw new Error(`export: custom ops left in the exported graph: ${custom.map((n) => `${n.name} (${n.domain}.${n.opType})`).join(', ')}`);
  // INT4 tensors and blocked DequantizeLinear (per-group weights) are opset 21.
  graph.opsets = { '': 17 };
  if (format === 'int4' || blocked) raiseToOpset21(graph);
  graph.metadata = exportMetadata(model, graph, format, layers);
  return { graph, format, weightBytes, layers };
}

/**
 * int32 codes of a bias the simulation rounded to its grid: round(b / s) as FakeQuantize computes it (float32
 * division, half to even, the int32 clamp), checked to dequantize to the simulated bias exactly.
 */
function int32BiasCodes(x: IntegerBias, values: Map<string, Tensor>): { codes: Int32Array; scale: Float32Array } {
  const bias = data32(values.get(x.bias), `bias '${x.bias}'`);
  const scale = data32(values.get(x.scale), `bias scale '${x.scale}'`);
  const simulated = data32(values.get(x.output), `quantized bias '${x.output}'`);
  const codes = Int32Array.from(bias, (b, c) => Math.max(INT32_CODE_MIN, Math.min(INT32_CODE_MAX, roundHalfEven(Math.fround(b / scale[c])))));
  codes.forEach((q, c) => {
    if (Math.fround(q * scale[c]) !== simulated[c]) {
      throw new Error(`export: bias of '${x.layer}' channel ${c}: code ${q} dequantizes to ${Math.fround(q * scale[c])}, but the trained model adds ${simulated[c]}`);
    }
  });
  return { codes, scale: Float32Array.from(scale) };
}

/**
 * The standard Clip that writes `tensor` with constant bounds (absent: unbounded), when the quantizer is its only
 * reader and it is no graph output.
 */
function clipBeforeQuantizer(graph: Graph, producers: Map<string, Node>, readers: Map<string, Node[]>, tensor: string): { node: Node; min: number; max: number } | undefined {
  const node = producers.get(tensor);
  if (!node || node.opType !== 'Clip' || node.domain !== '' || graph.outputs.some((o) => o.name === tensor)) return undefined;
  if ((readers.get(tensor) ?? []).filter((n) => n.domain === '').length > 0) return undefined;
  // Clip-6 and earlier carry the bounds as attributes, Clip-11 and later as optional inputs.
  const bound = (i: number, fallback: number): number | undefined => {
    if (!node.inputs[i]) return attrFloat(node, i === 1 ? 'min' : 'max', fallback);
    const t = graph.initializers.get(node.inputs[i]);
    return t && t.size === 1 ? t.toNumbers()[0] : undefined;
  };
  const [min, max] = [bound(1, -Infinity), bound(2, Infinity)];
  return min === undefined || max === undefined ? undefined : { node, min, max };
}

/** The trained grid's codes [qmin, qmax] as initializers of the storage type, for a Clip on codes. */
function codeBounds(em: Emitter, tensor: string, type: DType, qmin: number, qmax: number): { min: string; max: string } {
  const code = (v: number) => new Tensor(type, [], type === DType.INT8 ? Int8Array.of(v) : Uint8Array.of(v));
  return { min: em.initializer(`${tensor}/code_min`, code(qmin)), max: em.initializer(`${tensor}/code_max`, code(qmax)) };
}

function clampCodes(em: Emitter, codes: string, bounds: { min: string; max: string }, name: string): string {
  return em.node('Clip', [codes, bounds.min, bounds.max], {}, undefined, `${name}/clamp`);
}

/**
 * Whether every reader of `value` is a value-preserving op (as input 0), and so on down each path, until layers that
 * `isLayer` accepts read it as their input 0: the inputs the exporter re-quantizes. A layer or any other op
 * reading `value` directly, or a path ending at a graph output, answers false.
 */
function readsOnlyThroughPassThrough(graph: Graph, readers: Map<string, Node[]>, value: string, isLayer: (n: Node) => boolean): boolean {
  const reaches = (v: string, depth: number): boolean => {
    if (graph.outputs.some((o) => o.name === v)) return false;
    const of = readers.get(v) ?? [];
    return (
      of.length > 0 &&
      of.every((n) => {
        const asInput0Only = n.inputs.indexOf(v) === 0 && n.inputs.lastIndexOf(v) === 0;
        if (depth > 0 && isLayer(n)) return asInput0Only;
        return VALUE_PRESERVING_OPS.has(n.opType) && asInput0Only && reaches(n.outputs[0], depth + 1);
      })
    );
  };
  return reaches(value, 0);
}

/** metadata_props: input/output names and shapes, and the quantization recipe. */
function exportMetadata(model: Model, graph: Graph, format: ExportFormat, layers: ExportedLayer[]): Record<string, string> {
  const io = (v: Graph['inputs'][number]) => ({ name: v.name, shape: v.shape, dtype: 'float32' });
  const input = graph.inputs.find((v) => v.name === model.input)!;
  const output = graph.outputs.find((v) => v.name === model.output)!;
  return {
    'qatkit.format': format,
    'qatkit.model': model.name,
    'qatkit.input': JSON.stringify({ ...io(input), range: [0, 1], note: 'pixels in [0, 1]; normalisation is inside the graph' }),
    'qatkit.output': JSON.stringify({ ...io(output), meaning: 'logits' }),
    'qatkit.quantization': JSON.stringify({ preset: model.quant?.preset ?? null, config: model.quant?.config, layers }),
  };
}
