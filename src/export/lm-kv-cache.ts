/**
 * The exported decoder's KV cache stored quantized, in the layout QAT trained with (quant/kv-cache.ts), so the
 * memory a cached token costs falls with the bits:
 * - codes: uint8 [B, H, P, D * bits / 8]: one code per byte at 8 bits, two (4 bits) or four (2 bits) packed
 *   little-end first (code j of a byte at bits j*b .. j*b+b-1), the order ONNX's INT4/UINT4 tensors use;
 * - per-token (keys and values alike; LLM-QAT, Liu et al. 2023, sec. 3.2): scale float32 [B, H, P, 1] and zero
 *   point uint8 [B, H, P, 1] per written row;
 * - KIVI (Liu et al. 2024): codes of the complete groups of G tokens only (P a multiple of G); keys with scale
 *   float32 and zero point uint8 [B, H, P / G, D] per group and channel, values per token as above; the unfinished
 *   group of keys and of values in float32 [B, H, R, D] (R < G: KIVI's full-precision residual), quantized into
 *   the codes when its G-th token arrives.
 * Per layer i the decoder takes past_key_values.{i}.{key,value} (the codes) and .{key,value}_scale,
 * .{key,value}_zero_point, .{key,value}_residual (KIVI) and returns the same names under present.{i}.*.
 *
 * The quantizer is the training graph's, op for op (TokenMinMaxQuantize / KvGroupQuantize: range widened to 0,
 * S = (max - min) / (2^bits - 1), Z = round(-min / S), q = clip(round(x / S), -Z, qmax - Z)); the codes are q + Z and
 * attention reads (code - Z) * S, which is q * S exactly (small integers and one rounding, the same as training's).
 * So the decoder's logits are the fake-quant model's; test/export/lm-kv-export.test.ts measures it.
 */
import * as ort from '../runtime/ort.js';
import { cachePairs, decoderLayoutOf, emptyPast } from '../generate/decoder-layout.js';
import { fileSessionOptions, onesMask, positionsTensor } from '../generate/generator.js';
import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { Graph, Shape, topologicalOrder } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { decoderNames } from '../models/transformer-builder.js';
import { attentionCores, KIVI_GROUP_SIZE, KvCacheQuant, mixKiviScores, mixKiviValues } from '../quant/kv-cache.js';
import { InputError } from '../validate/schema.js';

/** One stored cache tensor of layer i: past_key_values.{i}.{suffix} in, present.{i}.{suffix} out. */
export interface StoredCacheTensor {
  suffix: string;
  dtype: 'uint8' | 'float32';
  /** Declared shape: 'B' the batch, a symbolic length, numbers otherwise. */
  shape: Shape;
}

export interface StoredKvCache {
  bits: number;
  layout: KvCacheQuant['layout'];
  groupSize?: number;
  /** The tensors every layer stores, in input order. */
  tensors: StoredCacheTensor[];
  /** Bytes one cached token adds over all layers (KIVI: group scales amortised over their G tokens). */
  bytesPerToken: number;
  /** KIVI: the most bytes the float residuals (keys and values) hold over all layers ((G - 1) tokens), on top of bytesPerToken x tokens. */
  residualBytesMax?: number;
  /** The same cache in float32: 2 x layers x heads x headSize x 4. */
  floatBytesPerToken: number;
}

/** present.{i}.{suffix} / past_key_values.{i}.{suffix}. */
export const cacheName = {
  past: (layer: number, suffix: string) => `past_key_values.${layer}.${suffix}`,
  present: (layer: number, suffix: string) => `present.${layer}.${suffix}`,
};

/** The tensors and bytes per token of a stored quantized cache (arch: heads, head size, layers). */
export function storedKvCacheLayout(kv: KvCacheQuant, heads: number, headSize: number, layers: number): StoredKvCache {
  const packed = (headSize * kv.bits) / 8;
  const g = kv.groupSize ?? KIVI_GROUP_SIZE;
  const kivi = kv.layout === 'kivi';
  const stored = kivi ? 'P_quantized' : 'P';
  const perToken = (name: string): StoredCacheTensor[] => [
    { suffix: name, dtype: 'uint8', shape: ['B', heads, stored, packed] },
    { suffix: `${name}_scale`, dtype: 'float32', shape: ['B', heads, stored, 1] },
    { suffix: `${name}_zero_point`, dtype: 'uint8', shape: ['B', heads, stored, 1] },
  ];
  const residual = (name: string): StoredCacheTensor => ({ suffix: `${name}_residual`, dtype: 'float32', shape: ['B', heads, 'P_residual', headSize] });
  const keys: StoredCacheTensor[] = kivi
    ? [
        { suffix: 'key', dtype: 'uint8', shape: ['B', heads, 'P_quantized', packed] },
        { suffix: 'key_scale', dtype: 'float32', shape: ['B', heads, 'P_groups', headSize] },
        { suffix: 'key_zero_point', dtype: 'uint8', shape: ['B', heads, 'P_groups', headSize] },
        residual('key'),
      ]
    : perToken('key');
  const rowBytes = packed + 4 + 1;
  const keyBytes = kivi ? packed + (headSize * 5) / g : rowBytes;
  return {
    bits: kv.bits,
    layout: kv.layout,
    ...(kivi ? { groupSize: g } : {}),
    tensors: [...keys, ...perToken('value'), ...(kivi ? [residual('value')] : [])],
    bytesPerToken: layers * heads * (keyBytes + rowBytes),
    ...(kivi ? { residualBytesMax: 2 * layers * heads * (g - 1) * headSize * 4 } : {}),
    floatBytesPerToken: layers * heads * headSize * 4 * 2,
  };
}

/** Per-code weights of a byte (little-end first) and the codes per byte. */
function packing(bits: number): { per: number; weights: number[] } {
  const per = 8 / bits;
  return { per, weights: Array.from({ length: per }, (_, j) => 2 ** (bits * j)) };
}

/**
 * Rewrites the float-cache decoder `graph` (models/transformers.ts transformerDecoder) so that every layer stores
 * its cache quantized as `kv` says; returns the layout. Refuses head sizes whose codes do not fill whole bytes.
 */
export function storeQuantizedKvCache(graph: Graph, kv: KvCacheQuant, arch: { heads: number; headSize: number; layers: number }): StoredKvCache {
  const { heads, headSize: d, layers } = arch;
  const { per, weights } = packing(kv.bits);
  if (d % per !== 0) throw new InputError(`--kv-bits ${kv.bits}: head size ${d} is not a multiple of ${per}, so its ${kv.bits}-bit codes do not fill whole bytes`);
  const layout = storedKvCacheLayout(kv, heads, d, layers);
  const group = layout.groupSize ?? KIVI_GROUP_SIZE;
  const qmax = 2 ** kv.bits - 1;
  const b = new GraphBuilder(graph, 'kv_cache/');
  const f = (v: number) => b.constant(v);
  const producers = graph.producers();
  const cores = attentionCores(graph);
  if (cores.some((c) => c.keyLayout !== 'bhtd')) throw new Error('export: the decoder transposes keys from [B, T, H, D]; a stored KV cache needs keys [B, H, T, D]');
  const dims = (x: string, axis: number) => b.op1('Gather', [b.shapeOf(x), b.ints([axis])], { axis: 0 });
  const typed = (op: string, inputs: string[], shape: Shape, dtype = DType.FLOAT, attrs = {}) => b.op1(op, inputs, attrs, { types: [{ dtype, shape }] });

  /** The training graph's asymmetric min/max quantizer over `axis` of x: S, Z and the codes q + Z (floats). */
  const quantize = (x: string, axis: number) => {
    const lo = b.op1('Min', [b.op1('ReduceMin', [x], { axes: [axis], keepdims: 1 }), f(0)]);
    const hi = b.op1('Max', [b.op1('ReduceMax', [x], { axes: [axis], keepdims: 1 }), f(0)]);
    const s = b.op1('Max', [b.div(b.sub(hi, lo), f(qmax)), f(1e-8)]);
    const z = b.op1('Round', [b.neg(b.div(lo, s))]);
    const q = b.op1('Max', [b.op1('Min', [b.op1('Round', [b.div(x, s)]), b.sub(f(qmax), z)]), b.neg(z)]);
    return { s, z, codes: b.add(q, z) };
  };
  /** Float codes [..., D] -> uint8 [..., D / per]. */
  const pack = (codes: string, shape: Shape) => {
    const out: Shape = [...shape.slice(0, 3), d / per];
    if (per === 1) return typed('Cast', [codes], out, DType.UINT8, { to: DType.UINT8 });
    const pairs = typed('Reshape', [codes, b.ints([0, 0, 0, d / per, per])], [...shape.slice(0, 3), d / per, per]);
    // Mul + ReduceSum rather than a MatMul by a constant, which ORT's weight-MatMul checks would take for a layer.
    const summed = b.reduceSum(b.mul(pairs, b.constant(Tensor.float([per], weights))), [4], false);
    return typed('Cast', [summed], out, DType.UINT8, { to: DType.UINT8 });
  };
  /** uint8 [..., D / per] -> float codes [..., D]. */
  const unpack = (bytes: string, shape: Shape) => {
    const out: Shape = [...shape.slice(0, 3), d];
    const v = typed('Cast', [bytes], [...shape.slice(0, 3), d / per], DType.FLOAT, { to: DType.FLOAT });
    if (per === 1) return v;
    // code j = floor(v / 2^(bits j)) mod 2^bits: divisions by powers of two and floors of small integers are exact.
    const shifted = b.op1('Floor', [b.div(b.unsqueeze(v, [4]), b.constant(Tensor.float([per], weights)))]);
    const level = f(2 ** kv.bits);
    const digits = b.sub(shifted, b.mul(b.op1('Floor', [b.div(shifted, level)]), level));
    return typed('Reshape', [digits, b.ints([0, 0, 0, d])], out);
  };
  const u8 = (x: string, shape: Shape) => typed('Cast', [x], shape, DType.UINT8, { to: DType.UINT8 });
  const toFloat = (x: string, shape: Shape) => typed('Cast', [x], shape, DType.FLOAT, { to: DType.FLOAT });

  const setInput = (name: string, dtype: DType, shape: Shape) => {
    const existing = graph.inputs.find((v) => v.name === name);
    if (existing) Object.assign(existing, { dtype, shape });
    else graph.inputs.push({ name, dtype, shape });
    graph.types.set(name, { dtype, shape });
    return name;
  };
  const setOutput = (value: string, name: string) => {
    // The stored tensor leaves under its present.* name: an Identity, so the value keeps its graph-internal name.
    const t = b.type(value);
    b.op1('Identity', [value], {}, { outputs: [name], types: [t] });
    const existing = graph.outputs.find((o) => o.name === name);
    if (existing) Object.assign(existing, t);
    else graph.outputs.push({ name, ...t });
  };
  const dtypeOf = (t: StoredCacheTensor) => (t.dtype === 'uint8' ? DType.UINT8 : DType.FLOAT);

  for (let layer = 0; layer < layers; layer++) {
    const inputs = Object.fromEntries(layout.tensors.map((t) => [t.suffix, setInput(cacheName.past(layer, t.suffix), dtypeOf(t), t.shape)]));
    const all: Shape = ['B', heads, 'P+T', d];

    /**
     * Per-token storage of `name` ('key' or 'value'): its rows `fresh` [B, H, n, D] quantized and appended to the
     * stored ones; returns everything stored, dequantized [B, H, stored, D].
     */
    const perToken = (name: string, fresh: string, n: string, stored: string) => {
      const { s, z, codes } = quantize(fresh, 3);
      const present = {
        codes: typed('Concat', [inputs[name], pack(codes, ['B', heads, n, d])], ['B', heads, stored, d / per], DType.UINT8, { axis: 2 }),
        scale: typed('Concat', [inputs[`${name}_scale`], s], ['B', heads, stored, 1], DType.FLOAT, { axis: 2 }),
        zero: typed('Concat', [inputs[`${name}_zero_point`], u8(z, ['B', heads, n, 1])], ['B', heads, stored, 1], DType.UINT8, { axis: 2 }),
      };
      setOutput(present.codes, cacheName.present(layer, name));
      setOutput(present.scale, cacheName.present(layer, `${name}_scale`));
      setOutput(present.zero, cacheName.present(layer, `${name}_zero_point`));
      return b.mul(b.sub(unpack(present.codes, ['B', heads, stored, d]), toFloat(present.zero, ['B', heads, stored, 1])), present.scale);
    };

    /** KIVI: the float residual of `name` and the new rows; their complete groups are to be stored, the rest is the next residual. */
    const splitGroups = (name: string, fresh: string) => {
      const pending = typed('Concat', [inputs[`${name}_residual`], fresh], ['B', heads, 'R+T', d], DType.FLOAT, { axis: 2 });
      const n = dims(pending, 2);
      const g = b.constant(group, DType.INT64, [1]);
      const full = b.mul(b.div(n, g), g);
      const complete = typed('Slice', [pending, b.ints([0]), full, b.ints([2])], ['B', heads, 'F', d]);
      const tail = typed('Slice', [pending, full, n, b.ints([2])], ['B', heads, 'R2', d]);
      setOutput(tail, cacheName.present(layer, `${name}_residual`));
      return { pending, complete, tail };
    };

    /**
     * What a KIVI attention reads of `name`, given everything stored dequantized [B, H, P_quantized, D]: quantized,
     * the stored groups (earlier ones and any completed now) then the new residual; float, the same positions with
     * every row not stored before this step in float (the past groups, then the residual and new rows). Only the
     * queries of a residual's own group read its rows, in float, so the residual stands in for both.
     */
    const kiviReads = (name: string, stored: string, split: { pending: string; tail: string }) => {
      const quantized = typed('Concat', [stored, split.tail], all, DType.FLOAT, { axis: 2 });
      const pastStored = typed('Slice', [stored, b.ints([0]), dims(inputs[name], 2), b.ints([2])], ['B', heads, 'P_quantized', d]);
      return { quantized, float: typed('Concat', [pastStored, split.pending], all, DType.FLOAT, { axis: 2 }) };
    };

    const concatOf = (presentName: string) => {
      const node = producers.get(presentName);
      if (!node || node.opType !== 'Concat') throw new Error(`export: the decoder has no Concat producing '${presentName}'`);
      return node;
    };
    const keyConcat = concatOf(decoderNames.presentKey(layer));
    const valueConcat = concatOf(decoderNames.presentValue(layer));
    const [freshKey, freshValue] = [keyConcat.inputs[1], valueConcat.inputs[1]];
    graph.nodes = graph.nodes.filter((n) => n !== keyConcat && n !== valueConcat);
    graph.outputs = graph.outputs.filter((o) => o.name !== decoderNames.presentKey(layer) && o.name !== decoderNames.presentValue(layer));
    const oldKey = keyConcat.outputs[0];
    const oldValue = valueConcat.outputs[0];
    const core = cores.find((c) => c.keyTranspose.inputs[0] === oldKey);
    if (!core) throw new Error(`export: no attention reads '${oldKey}'`);

    let keys: string;
    let values: string;
    if (kv.layout === 'per-token') {
      values = perToken('value', freshValue, 'T', 'P+T');
      keys = perToken('key', freshKey, 'T', 'P+T');
    } else {
      // KIVI keys: the complete groups quantized per group and channel.
      const keySplit = splitGroups('key', freshKey);
      const grouped = typed('Reshape', [keySplit.complete, b.ints([0, 0, -1, group, d])], ['B', heads, 'F/G', group, d]);
      const { s, z, codes } = quantize(grouped, 3);
      const flat = typed('Reshape', [codes, b.shapeOf(keySplit.complete)], ['B', heads, 'F', d]);
      const groupShape: Shape = ['B', heads, 'F/G', d];
      const present = {
        codes: typed('Concat', [inputs.key, pack(flat, ['B', heads, 'F', d])], ['B', heads, 'P_quantized', d / per], DType.UINT8, { axis: 2 }),
        scale: typed('Concat', [inputs.key_scale, typed('Squeeze', [s, b.ints([3])], groupShape)], ['B', heads, 'P_groups', d], DType.FLOAT, { axis: 2 }),
        zero: typed('Concat', [inputs.key_zero_point, u8(typed('Squeeze', [z, b.ints([3])], groupShape), groupShape)], ['B', heads, 'P_groups', d], DType.UINT8, { axis: 2 }),
      };
      setOutput(present.codes, cacheName.present(layer, 'key'));
      setOutput(present.scale, cacheName.present(layer, 'key_scale'));
      setOutput(present.zero, cacheName.present(layer, 'key_zero_point'));
      // Every complete group dequantized: (code - Z) * S per group and channel.
      const codesAll = unpack(present.codes, ['B', heads, 'P_quantized', d]);
      const byGroup = typed('Reshape', [codesAll, b.ints([0, 0, -1, group, d])], ['B', heads, 'P_groups', group, d]);
      const zf = b.unsqueeze(toFloat(present.zero, ['B', heads, 'P_groups', d]), [3]);
      const deq = b.mul(b.sub(byGroup, zf), b.unsqueeze(present.scale, [3]));
      const keyReads = kiviReads('key', typed('Reshape', [deq, b.shapeOf(codesAll)], ['B', heads, 'P_quantized', d]), keySplit);
      keys = keyReads.quantized;
      core.keyTranspose.inputs[0] = keyReads.float;
      const sameGroup = mixKiviScores(b, graph, core, keyReads.float, keys, group, layer);
      // KIVI values: the complete groups' rows quantized per token.
      const valueSplit = splitGroups('value', freshValue);
      const valueReads = kiviReads('value', perToken('value', valueSplit.complete, 'F', 'P_quantized'), valueSplit);
      values = valueReads.quantized;
      core.probsValue.inputs[1] = values;
      mixKiviValues(b, graph, core, valueReads.float, sameGroup, layer);
    }
    for (const node of graph.nodes) node.inputs = node.inputs.map((x) => (x === oldKey ? keys : x === oldValue ? values : x));
  }
  graph.nodes = topologicalOrder(graph);
  return layout;
}

/**
 * Bytes of cache per token as ONNX Runtime returns them from `file`: a prefill of `tokens` tokens (one row), the
 * byte lengths of all present.* outputs summed, divided by `tokens`. For KIVI pick a multiple of the group so that
 * no residual is counted.
 */
export async function measureCacheBytesPerToken(file: string, json: { heads?: number; headSize?: number; sessionConfig?: Record<string, string> }, tokens: number, threads?: number): Promise<number> {
  const session = await ort.InferenceSession.create(file, fileSessionOptions(threads, json.sessionConfig));
  try {
    const layout = decoderLayoutOf(session, { heads: json.heads, headSize: json.headSize });
    const feeds: Record<string, ort.Tensor> = {
      ...emptyPast(layout, 1),
      [layout.inputIds]: new ort.Tensor('int64', BigInt64Array.from({ length: tokens }, (_, i) => BigInt(i % 7)), [1, tokens]),
    };
    if (layout.attentionMask) feeds[layout.attentionMask] = onesMask(1, tokens);
    if (layout.positionIds) feeds[layout.positionIds] = positionsTensor(1, 0, tokens, layout.positionIdsSingleRow);
    const presents = cachePairs(layout).map((p) => p.present);
    const out = await session.run(feeds, presents);
    const bytes = presents.reduce((n, name) => n + (out[name].data as Uint8Array | Float32Array).byteLength, 0);
    return bytes / tokens;
  } finally {
    await session.release();
  }
}
