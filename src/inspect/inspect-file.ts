import path from 'node:path';
import { DType, dtypeName } from '../ir/dtype.js';
import { attrInt, Graph, Node } from '../ir/graph.js';
import { foldedConstant } from '../ir/folded-constant.js';
import { loadModel } from '../onnx/model-io.js';
import { INTEGER_KERNELS, layerKernels, optimizedModel } from '../export/kernel-report.js';
import { readLanguageModelJson } from '../generate/model-json.js';
import { QuantSpec } from '../quant/spec.js';
import { baseRows } from './inspect-model.js';
import { findLayers, LayerSite } from './layers.js';
import { scaleRange, scaleSource, specColumn } from './quant-columns.js';
import { InspectKind, InspectReport, LayerRow, QuantColumn } from './report.js';
import { valueShapes } from './shapes.js';
import { bytesByKind, tensorBytes, tensorKinds } from './tensor-kinds.js';

/** metadata_props key of the quantization recipe (exports and fake-quant model.onnx files write it). */
export const QUANTIZATION_KEY = 'qatkit.quantization';
/** metadata_props key marking a run's fake-quant model.onnx (standard ops, the evaluation graph). */
export const FAKE_QUANT_KEY = 'qatkit.fake_quant';

const QDQ_OPS = new Set(['QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear']);
/** Ops that carry a value unchanged on the way from a DequantizeLinear to the layer reading it. */
const PASS_THROUGH = new Set(['Transpose', 'Reshape', 'Identity', 'Flatten', 'MaxPool', 'Squeeze', 'Unsqueeze', 'Cast']);

/** What a file is: a qatkit training graph (ai.qatkit ops), a run's fake-quant model, an exported integer model, or fp32. */
export function fileKind(graph: Graph): InspectKind {
  if (graph.nodes.some((n) => n.domain === 'ai.qatkit')) return 'training-graph';
  if (graph.metadata[FAKE_QUANT_KEY]) return 'fake-quant';
  if (graph.nodes.some((n) => QDQ_OPS.has(n.opType) || INTEGER_KERNELS.has(n.opType))) return 'exported';
  return 'fp32';
}

interface RecipeLayer {
  role: 'weight' | 'activation';
  tensor: string;
  layers: string[];
  spec?: QuantSpec;
  bits?: number;
  method?: string;
  signed?: boolean;
  symmetric?: boolean;
  granularity?: string;
  group?: number;
  storage?: string;
  scale_range?: [number, number];
}

/** The stored KV cache an LM export records in metadata_props ('qatkit.kv_cache'), tolerant of damaged JSON. */
function storedKvCacheOf(graph: Graph): InspectReport['kv_cache'] {
  try {
    const k = JSON.parse(graph.metadata['qatkit.kv_cache'] ?? 'null');
    if (!k || typeof k.bits !== 'number' || typeof k.bytesPerToken !== 'number') return undefined;
    return {
      bits: k.bits, layout: String(k.layout), ...(typeof k.groupSize === 'number' ? { group_size: k.groupSize } : {}), bytes_per_token: k.bytesPerToken,
      float32_bytes_per_token: k.floatBytesPerToken, tensors: Array.isArray(k.tensors) ? k.tensors.map((t: { suffix: string; dtype: string; shape: unknown[] }) => `${t.suffix} ${t.dtype} [${t.shape.join(', ')}]`) : [],
    };
  } catch {
    return undefined;
  }
}

/** The recipe in metadata_props (qatkit exports and fake-quant files), tolerant of foreign or damaged JSON. */
function recipe(graph: Graph): { preset?: string; method?: string; calib?: string; config?: { weight?: { bits?: number }; activation?: { bits?: number }; firstLastBits?: number | null }; layers: RecipeLayer[]; notes: Record<string, string> } | undefined {
  const text = graph.metadata[QUANTIZATION_KEY];
  if (!text) return undefined;
  try {
    const r = JSON.parse(text);
    const notes = r && r.notes && typeof r.notes === 'object' ? Object.fromEntries(Object.entries(r.notes).filter(([, v]) => typeof v === 'string')) as Record<string, string> : {};
    return r && Array.isArray(r.layers)
      ? { preset: typeof r.preset === 'string' ? r.preset : undefined, method: r.method, calib: typeof r.calib === 'string' ? r.calib : undefined, config: r.config && typeof r.config === 'object' ? r.config : undefined, layers: r.layers.filter((l: unknown) => l && typeof l === 'object'), notes }
      : undefined;
  } catch {
    return undefined;
  }
}

function recipeColumn(r: RecipeLayer, fallback: QuantColumn | null | undefined): QuantColumn {
  if (r.spec) return { ...specColumn(r.spec, r.role), ...(r.scale_range ? { scale_range: r.scale_range } : fallback?.scale_range ? { scale_range: fallback.scale_range } : {}) };
  const g = (r.granularity ?? fallback?.granularity ?? 'per-tensor') as QuantColumn['granularity'];
  return {
    bits: r.bits ?? fallback?.bits ?? 8,
    method: r.method ?? fallback?.method ?? 'qdq',
    granularity: g,
    ...(fallback?.axis !== undefined ? { axis: fallback.axis } : {}),
    ...(r.group ?? fallback?.group ? { group: r.group ?? fallback?.group } : {}),
    signed: r.signed ?? fallback?.signed ?? true,
    symmetric: r.symmetric ?? fallback?.symmetric ?? true,
    scale_source: r.method && r.method !== 'qdq' ? scaleSource({ method: r.method as QuantSpec['method'], granularity: { kind: g } as QuantSpec['granularity'] }, r.role) : (fallback?.scale_source ?? 'stored'),
    ...(fallback?.scale_range ? { scale_range: fallback.scale_range } : {}),
  };
}

const BITS_OF: Partial<Record<DType, number>> = { [DType.INT8]: 8, [DType.UINT8]: 8, [DType.INT4]: 4, [DType.UINT4]: 4, [DType.INT16]: 16, [DType.UINT16]: 16, [DType.INT32]: 32 };

/** A DequantizeLinear's quantization, read from the node: bits from the code type, axis / block_size, the scales. */
function dequantizeColumn(graph: Graph, dq: Node, role: 'weight' | 'activation'): QuantColumn {
  const scale = graph.initializers.get(dq.inputs[1]);
  const zero = dq.inputs[2] ? graph.initializers.get(dq.inputs[2]) : undefined;
  const codesType = zero?.dtype ?? graph.initializers.get(dq.inputs[0])?.dtype ?? DType.UINT8;
  const block = attrInt(dq, 'block_size', 0);
  const perTensor = !scale || scale.size === 1;
  const zeros = zero ? zero.toNumbers() : [0];
  const unsigned = codesType === DType.UINT8 || codesType === DType.UINT4 || codesType === DType.UINT16;
  // uint8 weights with zero point 128 are shifted int8 codes (symmetric), the export's default.
  const symmetric = zeros.every((z) => z === 0 || (role === 'weight' && codesType === DType.UINT8 && z === 128));
  return {
    bits: BITS_OF[codesType] ?? 8,
    method: 'qdq',
    granularity: perTensor ? 'per-tensor' : block ? 'per-group' : 'per-channel',
    ...(perTensor ? {} : { axis: attrInt(dq, 'axis', 1) }),
    ...(block ? { group: block } : {}),
    signed: !unsigned || (role === 'weight' && symmetric && codesType === DType.UINT8),
    symmetric,
    scale_source: 'stored',
    ...(scale ? { scale_range: scaleRange(scale.toNumbers()) } : {}),
  };
}

/** The DequantizeLinear a value comes from, through ops that pass values on unchanged. */
function dequantizeOf(graph: Graph, producers: Map<string, Node>, value: string): Node | undefined {
  let cur = value;
  for (let i = 0; i < 64; i++) {
    const p = producers.get(cur);
    if (!p) return undefined;
    if (p.opType === 'DequantizeLinear') return p;
    if (!PASS_THROUGH.has(p.opType)) return undefined;
    cur = p.inputs[0];
  }
  return undefined;
}

/** Quant columns of one layer of an exported file, from the nodes themselves (QDQ pairs or contrib integer ops). */
function exportedColumns(graph: Graph, producers: Map<string, Node>, layer: LayerSite): { weight: QuantColumn | null; activation: QuantColumn | null } {
  const n = layer.node;
  const attr = (k: string, d: number) => attrInt(n, k, d);
  if (n.opType === 'MatMulNBits') {
    const scales = foldedConstant(graph, producers, n.inputs[2]);
    const block = attr('block_size', 32);
    const weight: QuantColumn = { bits: attr('bits', 4), method: 'qdq', granularity: 'per-group', group: block, signed: true, symmetric: !n.inputs[3], scale_source: 'stored', ...(scales ? { scale_range: scaleRange(scales.toNumbers()) } : {}) };
    // accuracy_level 4: int8 compute, activations quantized per row per K-block (absmax / 127) at run time.
    const activation: QuantColumn | null = attr('accuracy_level', 0) === 4 ? { bits: 8, method: 'absmax', granularity: 'per-token', group: block, signed: true, symmetric: true, scale_source: 'dynamic' } : null;
    return { weight, activation };
  }
  if (n.opType === 'GatherBlockQuantized') {
    const scales = foldedConstant(graph, producers, n.inputs[2]);
    return { weight: { bits: attr('bits', 4), method: 'qdq', granularity: 'per-group', group: attr('block_size', 128), axis: attr('quantize_axis', 1), signed: true, symmetric: !n.inputs[3], scale_source: 'stored', ...(scales ? { scale_range: scaleRange(scales.toNumbers()) } : {}) }, activation: null };
  }
  if (n.opType === 'MatMulIntegerToFloat' || n.opType === 'DynamicQuantizeMatMul') {
    // MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zp, b_zp, bias); DynamicQuantizeMatMul(A, B, b_scale, b_zp, bias)
    // quantizes A itself (ContribOperators.md). Weight codes B with their scale and zero point, read as a
    // DequantizeLinear along axis 1 (one scale per output column) would read them.
    const dynamicOp = n.opType === 'DynamicQuantizeMatMul';
    const [bScale, bZero] = dynamicOp ? [n.inputs[2], n.inputs[3]] : [n.inputs[3], n.inputs[5]];
    const weight = dequantizeColumn(graph, { ...n, inputs: [n.inputs[1], bScale, bZero ?? ''], attrs: {} } as Node, 'weight');
    const aScale = dynamicOp ? undefined : n.inputs[2];
    // A scale computed in the graph is per token (qatkit's qdq export) or per tensor (DynamicQuantizeLinear): dynamic.
    const perToken = aScale && !graph.initializers.has(aScale) && producers.get(aScale)?.opType !== 'DynamicQuantizeLinear';
    const activation: QuantColumn = aScale && graph.initializers.has(aScale)
      ? dequantizeColumn(graph, { ...n, inputs: [n.inputs[0], aScale, n.inputs[4] ?? ''], attrs: {} } as Node, 'activation')
      : { bits: 8, method: perToken ? 'absmax' : 'minmax', granularity: perToken ? 'per-token' : 'per-tensor', signed: Boolean(perToken), symmetric: Boolean(perToken), scale_source: 'dynamic' };
    return { weight, activation };
  }
  const wdq = dequantizeOf(graph, producers, layer.weight);
  const adq = n.opType === 'Gather' ? undefined : dequantizeOf(graph, producers, layer.input);
  return { weight: wdq ? dequantizeColumn(graph, wdq, 'weight') : null, activation: adq ? dequantizeColumn(graph, adq, 'activation') : null };
}

export interface InspectFileOptions {
  /** Ask ORT for its optimized model to name each layer's kernel (exported and fp32 files). Default true. */
  kernels?: boolean;
  threads?: number;
}

/**
 * `qat inspect FILE.onnx`: the layer table of an ONNX file. Every file: layer names, ops, shapes, parameters,
 * and each initializer with its kind and stored bytes (bytes per kind: weights, scales / zero points, embeddings,
 * norms, other). Quantized files add each layer's quantization (from the file's qatkit recipe where present,
 * else read from its DequantizeLinear / MatMulNBits / GatherBlockQuantized nodes), the weight's storage type
 * and bytes, and the kernel ORT's optimized model runs it on (integer or float).
 */
export async function inspectOnnxFile(file: string, options: InspectFileOptions = {}): Promise<InspectReport> {
  const graph = loadModel(file);
  const kind = fileKind(graph);
  const layers = findLayers(graph);
  const rows = baseRows(layers, valueShapes(graph));
  const producers = graph.producers();
  const meta = recipe(graph);
  const notes: string[] = [];
  rows.forEach((row, i) => {
    const layer = layers[i];
    if (kind === 'exported') {
      const cols = exportedColumns(graph, producers, layer);
      row.weight = cols.weight;
      row.activation = cols.activation;
    }
    if (meta) {
      const w = meta.layers.find((r) => r.role === 'weight' && Array.isArray(r.layers) && r.layers.includes(layer.node.name));
      const a = meta.layers.find((r) => r.role === 'activation' && Array.isArray(r.layers) && r.layers.includes(layer.node.name));
      row.weight = w ? recipeColumn(w, row.weight) : (row.weight ?? null);
      row.activation = a ? recipeColumn(a, row.activation) : (row.activation ?? null);
      if (meta.notes[layer.node.name]) row.note = meta.notes[layer.node.name];
    }
    if (kind !== 'training-graph') {
      const sizes = layer.weightInitializers.map((name) => ({ name, t: graph.initializers.get(name)! })).sort((x, y) => y.t.size - x.t.size);
      const main = sizes[0];
      row.storage = { dtype: dtypeName[main.t.dtype] ?? String(main.t.dtype), weight_bytes: tensorBytes(main.t), other_bytes: sizes.slice(1).reduce((s, x) => s + tensorBytes(x.t), 0) };
    }
  });
  // A layer whose weight is computed from the same largest initializer as an earlier layer's reads that weight (a
  // tied LM head): marked, and its parameters are not counted twice.
  const mainOf = (l: LayerSite) => l.weightInitializers.reduce((a, b) => ((graph.initializers.get(b)?.size ?? 0) > (graph.initializers.get(a)?.size ?? 0) ? b : a));
  layers.forEach((layer, i) => {
    const first = layers.findIndex((l) => mainOf(l) === mainOf(layer));
    if (first < i) {
      rows[i].tied_to = rows[first].name;
      rows[i].note ??= `tied to ${rows[first].name} (reads its weight)`;
    }
  });
  const tensors = tensorKinds(graph);
  let optimizedCounts: Record<string, number> | undefined;
  if (options.kernels !== false && (kind === 'exported' || kind === 'fp32')) {
    try {
      // A language-model export's model.json names the session config it runs with (int4: the accuracy level ORT
      // gives the MatMulNBits it fuses); the kernels shown are those qat eval / generate get.
      let sessionConfig: Record<string, string> | undefined;
      try {
        sessionConfig = readLanguageModelJson(file)?.sessionConfig;
      } catch (e) {
        notes.push(`model.json beside the file is not usable, kernels shown with ORT's default session config: ${(e as Error).message.split('\n')[0]}`);
      }
      if (sessionConfig && Object.keys(sessionConfig).length) notes.push(`kernels with model.json's session config: ${Object.entries(sessionConfig).map(([k, v]) => `${k}=${v}`).join(', ')}`);
      const optimized = await optimizedModel(graph, { threads: options.threads, sessionConfig });
      const kernels = await layerKernels(graph, { layers, optimized });
      rows.forEach((row) => {
        const k = kernels.get(row.node);
        row.kernel = k ? { op: k.op, integer: k.integer, ...(k.accuracyLevel !== undefined ? { accuracy_level: k.accuracyLevel } : {}) } : null;
      });
      optimizedCounts = {};
      for (const n of optimized.nodes) {
        const op = n.domain ? `${n.domain}.${n.opType}` : n.opType;
        optimizedCounts[op] = (optimizedCounts[op] ?? 0) + 1;
      }
    } catch (e) {
      notes.push(`ONNX Runtime could not load the file, so no kernels are shown: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const kvCache = storedKvCacheOf(graph);
  if (kvCache) notes.push(`KV cache stored as ${kvCache.bits}-bit ${kvCache.layout} codes${kvCache.group_size ? ` (key groups of ${kvCache.group_size} tokens, float residual)` : ''}: ${kvCache.bytes_per_token} bytes per token over all layers (float32: ${kvCache.float32_bytes_per_token})`);
  if (kind === 'training-graph') notes.push('a qatkit training graph (ai.qatkit ops): inspect its run directory for scale values, or the run\'s model.onnx');
  return {
    source: path.resolve(file),
    kind,
    model: graph.metadata['qatkit.model'] ?? graph.name,
    ...(meta ? { quant: { preset: meta.preset ?? 'custom', method: meta.method === 'ptq' ? 'ptq' : 'qat', ...(meta.calib ? { calib: meta.calib } : {}), weight_bits: meta.config?.weight?.bits, activation_bits: meta.config?.activation?.bits, first_last_bits: meta.config?.firstLastBits ?? null } } : {}),
    layers: rows,
    tensors,
    bytes_by_kind: bytesByKind(tensors),
    ...(optimizedCounts ? { optimized_ops: optimizedCounts } : {}),
    ...(kvCache ? { kv_cache: kvCache } : {}),
    notes,
  };
}
