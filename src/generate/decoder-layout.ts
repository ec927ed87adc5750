/**
 * Where a decoder graph takes its tokens, positions, mask and KV cache, and where it returns logits and the
 * updated cache: the Hugging Face / ORT GenAI names that our zoo decoders use (models/transformer-builder.ts
 * decoderNames), read off an ONNX Runtime session so that an exported decoder file generates with its cache too.
 */
import fs from 'node:fs';
import * as ort from '../runtime/ort.js';
import onnxProto from 'onnx-proto';
import { decoderNames } from '../models/transformer-builder.js';

export interface LayerCacheNames {
  pastKey: string;
  pastValue: string;
  presentKey: string;
  presentValue: string;
}

export interface DecoderLayout {
  inputIds: string;
  logits: string;
  positionIds?: string;
  /** position_ids is declared [1, T]: one row broadcast over the batch. */
  positionIdsSingleRow?: boolean;
  attentionMask?: string;
  /** One entry per layer, in layer order; empty when the graph has no KV cache. */
  layers: LayerCacheNames[];
  /** Cache tensors are [batch, heads, sequence, headSize]. */
  heads?: number;
  headSize?: number;
  /**
   * A cache stored quantized (qat export of a --kv-bits run: export/lm-kv-cache.ts): every past_key_values.{i}.*
   * input with its present.{i}.* output, dtype and declared shape (batch first, symbolic lengths start at 0).
   */
  cacheTensors?: CacheTensor[];
  /**
   * Fused-attention decoders (models/transformer-builder.ts fusedAttention): per layer, the outputs with the keys
   * and values a step appends ([batch, tokens, heads x headSize]). Their past inputs also take a buffer longer
   * than the cache (right-padded), so a generator can keep one preallocated buffer per tensor and fetch only these.
   */
  appended?: { key: string; value: string }[];
}

export interface CacheTensor {
  past: string;
  present: string;
  type: 'uint8' | 'float32';
  shape: readonly (number | string)[];
}

/** The past -> present pairs a decode step carries to the next one. */
export function cachePairs(layout: DecoderLayout): { past: string; present: string }[] {
  return layout.cacheTensors ?? layout.layers.flatMap((l) => [{ past: l.pastKey, present: l.presentKey }, { past: l.pastValue, present: l.presentValue }]);
}

const PAST = /^past_key_values\.(\d+)\.key$/;

function tensorShape(session: ort.InferenceSession, name: string): readonly (number | string)[] | undefined {
  const meta = session.inputMetadata.find((m) => m.name === name);
  return meta && meta.isTensor ? meta.shape : undefined;
}

/**
 * The layout of the graph an ONNX Runtime InferenceSession runs. input_ids and logits are taken by name, else the first input and output;
 * past_key_values.{i}.key/value with present.{i}.key/value for i = 0..L-1 make a KV-cache decoder.
 * `cache` supplies heads and headSize where the graph leaves them symbolic (a model.json beside the file).
 */
export function decoderLayoutOf(session: ort.InferenceSession, cache: { heads?: number; headSize?: number } = {}, declared: Map<string, (number | string)[]> = new Map()): DecoderLayout {
  const inputs = session.inputNames;
  const outputs = session.outputNames;
  const has = (name: string) => inputs.includes(name);
  const layout: DecoderLayout = {
    inputIds: has(decoderNames.inputIds) ? decoderNames.inputIds : inputs[0],
    logits: outputs.includes('logits') ? 'logits' : outputs[0],
    layers: [],
  };
  if (has(decoderNames.positionIds)) {
    layout.positionIds = decoderNames.positionIds;
    layout.positionIdsSingleRow = tensorShape(session, decoderNames.positionIds)?.[0] === 1;
  }
  if (has(decoderNames.attentionMask)) layout.attentionMask = decoderNames.attentionMask;
  const layerCount = inputs.filter((n) => PAST.test(n)).length;
  for (let i = 0; i < layerCount; i++) {
    const names = { pastKey: decoderNames.pastKey(i), pastValue: decoderNames.pastValue(i), presentKey: decoderNames.presentKey(i), presentValue: decoderNames.presentValue(i) };
    const missing = [names.pastKey, names.pastValue].filter((n) => !has(n)).concat([names.presentKey, names.presentValue].filter((n) => !outputs.includes(n)));
    if (missing.length > 0) throw new Error(`decoder graph: layer ${i} lacks ${missing.join(', ')} (a KV-cache decoder has past_key_values.{i}.key/value inputs and present.{i}.key/value outputs for every layer)`);
    layout.layers.push(names);
  }
  if (layerCount > 0) {
    const shape = tensorShape(session, decoderNames.pastKey(0)) ?? [];
    const meta = session.inputMetadata.find((m) => m.name === decoderNames.pastKey(0));
    const quantized = meta?.isTensor === true && meta.type !== 'float32';
    const heads = typeof shape[1] === 'number' ? shape[1] : cache.heads;
    // A quantized cache's last axis holds packed codes; the head size is model.json's.
    const headSize = typeof shape[3] === 'number' && !quantized ? shape[3] : cache.headSize;
    if (!heads || !headSize) throw new Error(`decoder graph: ${decoderNames.pastKey(0)} has shape [${shape.join(', ')}]; give heads and head size (model.json "heads", "headSize")`);
    Object.assign(layout, { heads, headSize });
    if (quantized) layout.cacheTensors = quantizedCacheTensors(session, layerCount);
    else checkCacheShapes(session, layout, heads, headSize, declared);
    const appended = Array.from({ length: layerCount }, (_, i) => ({ key: decoderNames.newKey(i), value: decoderNames.newValue(i) }));
    if (!quantized && appended.every((a) => outputs.includes(a.key) && outputs.includes(a.value))) layout.appended = appended;
  }
  return layout;
}

/**
 * Every layer's past and present tensors must be [B, heads, *, headSize] like layer 0's: a decoder whose cache
 * shapes disagree would fail inside ONNX Runtime at the first decode step (or silently mix heads).
 */
function checkCacheShapes(session: ort.InferenceSession, layout: DecoderLayout, heads: number, headSize: number, declared: Map<string, (number | string)[]>): void {
  const outputShape = (name: string) => {
    const meta = (session as unknown as { outputMetadata?: { name: string; isTensor: boolean; shape?: readonly (number | string)[] }[] }).outputMetadata?.find((m) => m.name === name);
    return meta && meta.isTensor ? meta.shape : undefined;
  };
  for (const l of layout.layers) {
    const shapes: [string, readonly (number | string)[] | undefined][] = [
      [l.pastKey, tensorShape(session, l.pastKey)], [l.pastValue, tensorShape(session, l.pastValue)],
      [l.presentKey, outputShape(l.presentKey)], [l.presentValue, outputShape(l.presentValue)],
      [l.presentKey, declared.get(l.presentKey)], [l.presentValue, declared.get(l.presentValue)],
    ];
    for (const [name, shape] of shapes) {
      if (!shape) continue;
      const bad = shape.length !== 4 || (typeof shape[1] === 'number' && shape[1] !== heads) || (typeof shape[3] === 'number' && shape[3] !== headSize);
      if (bad) throw new Error(`decoder graph: '${name}' has shape [${shape.join(', ')}]; every past/present tensor must be [batch, ${heads}, sequence, ${headSize}] like ${decoderNames.pastKey(0)}`);
    }
  }
}

/**
 * The output shapes an ONNX file declares. ONNX Runtime's outputMetadata reports its own inference, merging a
 * declaration that contradicts it "leniently" (a warning on stderr), so a present tensor declared with other heads
 * than the cache it returns is seen only here. Unreadable files give no declarations (the session read them).
 */
export function declaredOutputShapes(file: string): Map<string, (number | string)[]> {
  const shapes = new Map<string, (number | string)[]>();
  try {
    const model = onnxProto.onnx.ModelProto.decode(fs.readFileSync(file));
    for (const o of model.graph?.output ?? []) {
      const dims = o.type?.tensorType?.shape?.dim;
      if (!o.name || !dims) continue;
      shapes.set(o.name, dims.map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null ? Number(d.dimValue) : '')));
    }
  } catch {
    // Left to the session, which loaded the file.
  }
  return shapes;
}

const PAST_ANY = /^past_key_values\.(\d+)\.(.+)$/;

/** Every past_key_values.{i}.* input of a quantized cache, paired with its present.{i}.* output. */
function quantizedCacheTensors(session: ort.InferenceSession, layers: number): CacheTensor[] {
  const tensors: CacheTensor[] = [];
  for (const m of session.inputMetadata) {
    const match = PAST_ANY.exec(m.name);
    if (!match || Number(match[1]) >= layers) continue;
    const present = `present.${match[1]}.${match[2]}`;
    if (!session.outputNames.includes(present)) throw new Error(`decoder graph: '${m.name}' has no '${present}' output (every cache input returns as present.*)`);
    if (!m.isTensor || (m.type !== 'uint8' && m.type !== 'float32')) throw new Error(`decoder graph: '${m.name}' must be a uint8 or float32 tensor`);
    if (m.shape.length !== 4 || typeof m.shape[1] !== 'number' || typeof m.shape[3] !== 'number') throw new Error(`decoder graph: '${m.name}' has shape [${m.shape.join(', ')}]; a stored cache tensor is [batch, heads, length, width] with heads and width fixed`);
    tensors.push({ past: m.name, present, type: m.type, shape: m.shape });
  }
  return tensors;
}

/** Empty past tensors [rows, heads, 0, headSize] for every layer (a quantized cache: each stored tensor at length 0): the prefill of a decoder. */
export function emptyPast(layout: DecoderLayout, rows: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  if (layout.cacheTensors) {
    for (const t of layout.cacheTensors) {
      const dims = [rows, t.shape[1] as number, 0, t.shape[3] as number];
      feeds[t.past] = t.type === 'uint8' ? new ort.Tensor('uint8', new Uint8Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
    }
    return feeds;
  }
  for (const l of layout.layers) {
    for (const name of [l.pastKey, l.pastValue]) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [rows, layout.heads!, 0, layout.headSize!]);
  }
  return feeds;
}

/**
 * The vocabulary size of a decoder's logits, taken from the first source that gives it: model.json's `declared`
 * size; the last dim the graph declares for the logits; the width of the logits of one token (id 0) run through
 * the ONNX Runtime session.
 */
export async function vocabularyOf(session: ort.InferenceSession, layout: DecoderLayout, declared?: number): Promise<number> {
  if (declared !== undefined) return declared;
  const meta = session.outputMetadata.find((m) => m.name === layout.logits);
  const last = meta?.isTensor ? meta.shape.at(-1) : undefined;
  if (typeof last === 'number') return last;
  const one = (v: bigint) => new ort.Tensor('int64', BigInt64Array.of(v), [1, 1]);
  const feeds: Record<string, ort.Tensor> = { [layout.inputIds]: one(0n), ...(layout.layers.length > 0 ? emptyPast(layout, 1) : {}) };
  if (layout.positionIds) feeds[layout.positionIds] = one(0n);
  if (layout.attentionMask) feeds[layout.attentionMask] = one(1n);
  const logits = (await session.run(feeds, [layout.logits]))[layout.logits];
  return logits.dims.at(-1)!;
}
