import { QuantSpec, ScaleMethod } from './spec';

/** One tensor role's quantization, before the per-tensor details (axis, signedness) are known. */
export interface RoleSpec {
  bits: number;
  method: ScaleMethod;
  granularity?: 'per-tensor' | 'per-channel' | 'per-group' | 'per-token';
  groupSize?: number;
  symmetric?: boolean;
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
}

export const PRESETS = ['w8a8', 'w4a8', 'w4a4', 'w3a3', 'w2a2', 'w2a8', 'ternary', 'binary'] as const;
export type PresetName = (typeof PRESETS)[number];

const base = { firstLastBits: 8, foldBatchNorm: true, observerMomentum: 0.01, overrides: [] as LayerOverride[] };
/** Below 8 bits scales are learned (LSQ): min/max scales waste most of a 4-bit grid on outliers. */
const weightAt = (bits: number): RoleSpec => ({ bits, method: bits >= 8 ? 'minmax' : 'lsq', granularity: 'per-channel' });
const actAt = (bits: number): RoleSpec => ({ bits, method: bits >= 8 ? 'minmax' : 'lsq', granularity: 'per-tensor' });

export function presetConfig(name: string): QatConfig {
  switch (name) {
    case 'w8a8': return { ...base, weight: weightAt(8), activation: actAt(8) };
    case 'w4a8': return { ...base, weight: weightAt(4), activation: actAt(8) };
    case 'w4a4': return { ...base, weight: weightAt(4), activation: actAt(4) };
    case 'w3a3': return { ...base, weight: weightAt(3), activation: actAt(3) };
    case 'w2a2': return { ...base, weight: weightAt(2), activation: actAt(2) };
    case 'w2a8': return { ...base, weight: weightAt(2), activation: actAt(8) };
    case 'ternary': return { ...base, weight: { bits: 2, method: 'ternary', granularity: 'per-channel' }, activation: actAt(8) };
    case 'binary': return { ...base, weight: { bits: 1, method: 'binary', granularity: 'per-channel' }, activation: actAt(8) };
    default: throw new Error(`--quant: unknown preset '${name}'; valid: ${PRESETS.join(', ')}`);
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
    // BitLinear: dynamic signed absmax, per token (row) unless per-tensor is asked for.
    const granularity = r.granularity === 'per-tensor' ? { kind: 'per-tensor' as const } : { kind: 'per-token' as const };
    return { bits: r.bits, signed: true, symmetric: true, narrowRange: false, granularity, method };
  }
  if (method === 'minmax') {
    // uint8 asymmetric, ORT's preferred activation type for QLinearConv / QLinearMatMul on CPU.
    return { bits: r.bits, signed: false, symmetric: false, narrowRange: false, granularity: { kind: 'per-tensor' }, method };
  }
  return { bits: r.bits, signed: !nonNegative, symmetric: method !== 'lsq+', narrowRange: false, granularity: { kind: 'per-tensor' }, method };
}
