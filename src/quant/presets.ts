import { QuantSpec, ScaleMethod } from './spec.js';
import type { KvCacheQuant } from './kv-cache.js';

/** One tensor role's quantization, before the per-tensor details (axis, signedness) are known. */
export interface RoleSpec {
  bits: number;
  method: ScaleMethod;
  granularity?: 'per-tensor' | 'per-channel' | 'per-group' | 'per-token';
  groupSize?: number;
  symmetric?: boolean;
  /**
   * Activations: a parameter-free RMSNorm x / sqrt(mean(x^2) + 1e-5) before quantization, as in BitNet's BitLinear
   * (Ma et al. 2024, "The Era of 1-bit LLMs": SubLN / RMSNorm ahead of the absmax quantizer).
   */
  rmsNorm?: boolean;
}

export interface LayerOverride {
  /** Node name, or a pattern with * wildcards, matched against Conv/Gemm/MatMul node names. */
  match: string;
  weight?: Partial<RoleSpec>;
  activation?: Partial<RoleSpec>;
  /** Leave this layer in float. */
  skip?: boolean;
}

export interface QatConfig {
  weight: RoleSpec;
  activation: RoleSpec;
  /** Bits for the first and last compute layers (weights and their inputs); null keeps the preset's. */
  firstLastBits: number | null;
  foldBatchNorm: boolean;
  /** Moving-average observer constant (torch's averaging_constant). */
  observerMomentum: number;
  overrides: LayerOverride[];
  /**
   * Language models: the roles of the token embedding and the LM head (the first and last weight layers; a tied
   * head is the embedding's one weight), merged over the preset's roles; a layer override still rules. BitNet
   * b1.58 keeps these two in high precision (Wang et al. 2023, BitNet section 2: the output distribution is
   * sampled in high precision), so its preset stores them as int8 rows.
   */
  tokenLayers?: { weight?: Partial<RoleSpec>; activation?: Partial<RoleSpec> };
  /** Language models: the KV cache fake-quantized as it is written (quant/kv-cache.ts); --kv-bits sets it too. */
  kvCache?: KvCacheQuant;
}

/** Presets of image models (CNNs, MLPs): static per-tensor activations. */
export const CNN_PRESETS = ['w8a8', 'w4a8', 'w4a4', 'w3a3', 'w2a2', 'w2a8', 'ternary', 'binary'] as const;
/**
 * Presets of language models: per-token dynamic activations at Linear inputs (a16: activations stay float),
 * weights per channel (w8) or per group of 32 along the input axis; b158 is BitNet b1.58.
 */
export const LM_PRESETS = ['w8a8', 'w4a16-g32', 'w4a8-g32', 'w3a16-g32', 'w2a16-g32', 'b158'] as const;
/** Every preset name `--quant` accepts; what a name means depends on the model (presetConfig's task). */
export const PRESETS = [...CNN_PRESETS, ...LM_PRESETS.filter((p) => !(CNN_PRESETS as readonly string[]).includes(p))] as const;
export type PresetName = (typeof PRESETS)[number];
export type PresetTask = 'classification' | 'language-model';

const base = { firstLastBits: 8, foldBatchNorm: true, observerMomentum: 0.01, overrides: [] as LayerOverride[] };
/** Below 8 bits scales are learned (LSQ): min/max scales waste most of a 4-bit grid on outliers. */
const weightAt = (bits: number): RoleSpec => ({ bits, method: bits >= 8 ? 'minmax' : 'lsq', granularity: 'per-channel' });
const actAt = (bits: number): RoleSpec => ({ bits, method: bits >= 8 ? 'minmax' : 'lsq', granularity: 'per-tensor' });

/** Language-model presets: no layer is kept at 8 bits by position (embedding, head and first block follow the preset). */
const lmBase = { firstLastBits: null, foldBatchNorm: false, observerMomentum: 0.01, overrides: [] as LayerOverride[] };
/** Per-token dynamic symmetric activations (absmax per row); 16 bits means the activations stay float. */
const tokenAct = (bits: number, extra: Partial<RoleSpec> = {}): RoleSpec => ({ bits, method: 'absmax', granularity: 'per-token', ...extra });
const groupWeight = (bits: number, groupSize: number): RoleSpec => ({ bits, method: 'lsq', granularity: 'per-group', groupSize });

function languageModelPreset(name: string): QatConfig {
  switch (name) {
    case 'w8a8': return { ...lmBase, weight: { bits: 8, method: 'minmax', granularity: 'per-channel' }, activation: tokenAct(8) };
    case 'w4a16-g32': return { ...lmBase, weight: groupWeight(4, 32), activation: tokenAct(16) };
    case 'w4a8-g32': return { ...lmBase, weight: groupWeight(4, 32), activation: tokenAct(8) };
    case 'w3a16-g32': return { ...lmBase, weight: groupWeight(3, 32), activation: tokenAct(16) };
    // 2 bits: ParetoQ's stretched elastic quantizer (SEQ), which ParetoQ and the LM table (docs/decisions.md) find
    // better than LSQ at 2 bits; from 3 bits LSQ.
    case 'w2a16-g32': return { ...lmBase, weight: { ...groupWeight(2, 32), method: 'seq' }, activation: tokenAct(16) };
    // BitNet b1.58: absmean ternary weights, one scale per output channel (the paper takes one per tensor; per
    // channel measured 1.14x fp32 against 1.19x on the default gpt, docs/decisions.md); per-token absmax int8
    // activations behind a parameter-free RMSNorm inside each BitLinear. The embedding and head are not
    // BitLinears: int8 rows and int8 per-token inputs (the printed layer table shows it).
    case 'b158':
      return {
        ...lmBase,
        weight: { bits: 2, method: 'ternary', granularity: 'per-channel' },
        activation: tokenAct(8, { rmsNorm: true }),
        tokenLayers: { weight: { bits: 8, method: 'minmax', granularity: 'per-channel' }, activation: { rmsNorm: false } },
      };
    default:
      throw new Error(`--quant: '${name}' is not a language-model preset; valid for language models: ${LM_PRESETS.join(', ')}${(CNN_PRESETS as readonly string[]).includes(name) ? ` ('${name}' is an image-model preset)` : ''}`);
  }
}

/** A preset's config for the task: the same name (w8a8) means per-tensor static activations on a CNN, per-token on a language model. */
export function presetConfig(name: string, task: PresetTask = 'classification'): QatConfig {
  if (task === 'language-model') return languageModelPreset(name);
  if ((LM_PRESETS as readonly string[]).includes(name) && !(CNN_PRESETS as readonly string[]).includes(name)) {
    throw new Error(`--quant: '${name}' is a language-model preset (text --data); valid for image models: ${CNN_PRESETS.join(', ')}`);
  }
  switch (name) {
    case 'w8a8': return { ...base, weight: weightAt(8), activation: actAt(8) };
    case 'w4a8': return { ...base, weight: weightAt(4), activation: actAt(8) };
    case 'w4a4': return { ...base, weight: weightAt(4), activation: actAt(4) };
    case 'w3a3': return { ...base, weight: weightAt(3), activation: actAt(3) };
    case 'w2a2': return { ...base, weight: weightAt(2), activation: actAt(2) };
    case 'w2a8': return { ...base, weight: weightAt(2), activation: actAt(8) };
    case 'ternary': return { ...base, weight: { bits: 2, method: 'ternary', granularity: 'per-channel' }, activation: actAt(8) };
    case 'binary': return { ...base, weight: { bits: 1, method: 'binary', granularity: 'per-channel' }, activation: actAt(8) };
    default: throw new Error(`--quant: unknown preset '${name}'; valid: ${CNN_PRESETS.join(', ')} (language models: ${LM_PRESETS.join(', ')})`);
  }
}

/** A full spec for one weight tensor (symmetric, signed, narrow range, channel axis known). */
export function weightSpec(r: RoleSpec, axis: number): QuantSpec {
  const granularity =
    r.granularity === 'per-tensor'
      ? { kind: 'per-tensor' as const }
      : r.granularity === 'per-group'
        ? { kind: 'per-group' as const, axis, size: r.groupSize ?? 32 }
        : { kind: 'per-channel' as const, axis };
  return { bits: r.bits, signed: true, symmetric: r.symmetric ?? true, narrowRange: r.method === 'minmax' && r.bits >= 8, granularity, method: r.method };
}

/** A full spec for one activation tensor; non-negative tensors (after ReLU) use an unsigned range. */
export function activationSpec(r: RoleSpec, nonNegative: boolean): QuantSpec {
  const method = r.method === 'pact' && !nonNegative ? 'lsq' : r.method;
  if (method === 'absmax') {
    // BitLinear: dynamic signed absmax, per token (row) unless per-tensor is asked for; groupSize: per token per block.
    const granularity =
      r.granularity === 'per-tensor'
        ? { kind: 'per-tensor' as const }
        : r.groupSize !== undefined
          ? { kind: 'per-token' as const, blockSize: r.groupSize }
          : { kind: 'per-token' as const };
    return { bits: r.bits, signed: true, symmetric: true, narrowRange: false, granularity, method };
  }
  if (method === 'minmax' && r.granularity === 'per-token') {
    // Dynamic per-row min/max, asymmetric (simulation only: no ORT kernel takes a zero point per row).
    return { bits: r.bits, signed: false, symmetric: false, narrowRange: false, granularity: { kind: 'per-token' }, method };
  }
  if (method === 'minmax') {
    // uint8 asymmetric, ORT's preferred activation type for QLinearConv / QLinearMatMul on CPU.
    return { bits: r.bits, signed: false, symmetric: false, narrowRange: false, granularity: { kind: 'per-tensor' }, method };
  }
  return { bits: r.bits, signed: !nonNegative, symmetric: method !== 'lsq+', narrowRange: false, granularity: { kind: 'per-tensor' }, method };
}
