/**
 * The export's integer check of a language-model decoder file: a few validation windows through ONNX Runtime
 * with every integer layer's inputs and output fetched, each layer recomputed from its stored codes in
 * TypeScript (src/reference/integer/lm-layers.ts) and compared, the first layer beyond its tolerance named.
 */
import { TokenStream } from '../data/text.js';
import { decoderLayoutOf, emptyPast } from '../generate/decoder-layout.js';
import { fileSessionOptions, idsTensor, onesMask, positionsTensor } from '../generate/generator.js';
import { Graph } from '../ir/graph.js';
import { compareLanguageModelLayers, LmLayerComparison } from '../reference/integer/lm-layers.js';
import { LUT_GEMM_SESSION_CONFIG } from './lut-kernel.js';

export interface LmIntegerReport {
  passed: boolean;
  windows: number;
  tokens_per_window: number;
  /** Integer layers compared, by op type. */
  layers: Record<string, number>;
  /** Largest relative difference of a float-output layer, and largest code difference of a QuantizeLinear. */
  worst_relative_difference: number;
  worst_code_difference: number;
  first_mismatch?: LmLayerComparison;
  /** Why the check ran on another kernel than the file's session config picks, when it did. */
  note?: string;
}

/** Checks `graph` (the exported decoder; `cache`: its heads, head size and context) on a few validation windows under `sessionConfig`. */
export async function checkLanguageModelIntegerLayers(graph: Graph, stream: TokenStream, sessionConfig: Record<string, string>, cache: { heads?: number; headSize?: number; context: number }, options: { windows?: number; tokens?: number; threads?: number } = {}): Promise<LmIntegerReport> {
  const tokens = Math.min(options.tokens ?? 32, cache.context, stream.tokens.length);
  const windows = Math.max(1, Math.min(options.windows ?? 2, Math.floor(stream.tokens.length / tokens)));
  // ORT's LUT kernel rounds activations into int8 tables, which the reference does not model: check the exact kernel.
  const lut = Object.keys(LUT_GEMM_SESSION_CONFIG).some((k) => k in sessionConfig);
  const config = Object.fromEntries(Object.entries(sessionConfig).filter(([k]) => !(k in LUT_GEMM_SESSION_CONFIG)));
  const sessionOptions = fileSessionOptions(options.threads ?? 2, config);
  const ids = Array.from({ length: windows }, (_, w) => Array.from(stream.tokens.subarray(w * tokens, (w + 1) * tokens)));
  const r = await compareLanguageModelLayers(graph, (session) => {
    const layout = decoderLayoutOf(session, cache);
    return {
      ...emptyPast(layout, windows),
      [layout.inputIds]: idsTensor(ids),
      ...(layout.positionIds ? { [layout.positionIds]: positionsTensor(windows, 0, tokens, layout.positionIdsSingleRow) } : {}),
      ...(layout.attentionMask ? { [layout.attentionMask]: onesMask(windows, tokens) } : {}),
    };
  }, sessionOptions);
  const layers: Record<string, number> = {};
  for (const l of r.layers) layers[l.opType] = (layers[l.opType] ?? 0) + 1;
  const floats = r.layers.filter((l) => l.compute !== 'codes');
  const codes = r.layers.filter((l) => l.compute === 'codes');
  return {
    passed: r.passed,
    windows,
    tokens_per_window: tokens,
    layers,
    worst_relative_difference: Math.max(0, ...floats.map((l) => l.relativeDiff)),
    worst_code_difference: Math.max(0, ...codes.map((l) => l.maxDiff)),
    ...(r.firstMismatch ? { first_mismatch: r.firstMismatch } : {}),
    ...(lut ? { note: "checked on the exact 2-bit kernel: ORT's LUT kernel rounds activations into int8 tables, which the parity check covers instead" } : {}),
  };
}
