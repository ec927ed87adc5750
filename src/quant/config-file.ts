import fs from 'node:fs';
import { LayerOverride, presetConfig, QatConfig, RoleSpec } from './presets';
import { SCALE_METHODS } from './spec';

const ROLE_KEYS = ['bits', 'method', 'granularity', 'groupSize', 'symmetric'];
const TOP_KEYS = ['preset', 'weight', 'activation', 'firstLastBits', 'foldBatchNorm', 'observerMomentum', 'overrides'];

/**
 * Reads a --quant-config JSON file: { "preset"?: "w4a4", "weight"?: RoleSpec, "activation"?: RoleSpec,
 * "firstLastBits"?: 8 | null, "foldBatchNorm"?: bool, "overrides"?: [{ "match": "conv1*", "weight": {"bits": 8},
 * "skip"?: bool }] }, merged over the preset (from the file or --quant, default w8a8). Unknown keys and bad
 * values are refused with the file, the key and the valid choices named.
 */
export function loadQuantConfigFile(file: string, preset?: string): QatConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`--quant-config ${file}: ${(e as Error).message}`);
  }
  return parseQuantConfig(raw, file, preset);
}

export function parseQuantConfig(raw: unknown, source: string, preset?: string): QatConfig {
  const fail = (key: string, why: string): never => {
    throw new Error(`--quant-config ${source}: ${key}: ${why}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('(top level)', 'must be a JSON object');
  const obj = raw as Record<string, unknown>;
  for (const k of Object.keys(obj)) if (!TOP_KEYS.includes(k)) fail(k, `unknown key; valid keys: ${TOP_KEYS.join(', ')}`);
  const base = presetConfig((obj.preset as string) ?? preset ?? 'w8a8');
  const role = (key: string, v: unknown): Partial<RoleSpec> => {
    if (v === undefined) return {};
    if (typeof v !== 'object' || v === null) fail(key, 'must be an object');
    const r = v as Record<string, unknown>;
    for (const k of Object.keys(r)) if (!ROLE_KEYS.includes(k)) fail(`${key}.${k}`, `unknown key; valid keys: ${ROLE_KEYS.join(', ')}`);
    if (r.bits !== undefined && ![1, 2, 3, 4, 5, 6, 7, 8, 16].includes(r.bits as number)) fail(`${key}.bits`, `${r.bits} is invalid; valid: 2..8 or 16 (1 for binary)`);
    if (r.method !== undefined && !(SCALE_METHODS as readonly string[]).includes(r.method as string)) fail(`${key}.method`, `'${r.method}' is invalid; valid: ${SCALE_METHODS.join(', ')}`);
    if (r.granularity !== undefined && !['per-tensor', 'per-channel', 'per-group', 'per-token'].includes(r.granularity as string)) {
      fail(`${key}.granularity`, `'${r.granularity}' is invalid; valid: per-tensor, per-channel, per-group, per-token`);
    }
    return r as Partial<RoleSpec>;
  };
  const overrides: LayerOverride[] = [];
  if (obj.overrides !== undefined) {
    if (!Array.isArray(obj.overrides)) fail('overrides', 'must be an array');
    (obj.overrides as unknown[]).forEach((o, i) => {
      const e = o as Record<string, unknown>;
      if (typeof e?.match !== 'string') fail(`overrides[${i}].match`, 'must be a node name or pattern (string)');
      overrides.push({ match: e.match as string, weight: role(`overrides[${i}].weight`, e.weight), activation: role(`overrides[${i}].activation`, e.activation), skip: Boolean(e.skip) });
    });
  }
  return {
    ...base,
    weight: { ...base.weight, ...role('weight', obj.weight) },
    activation: { ...base.activation, ...role('activation', obj.activation) },
    firstLastBits: obj.firstLastBits === undefined ? base.firstLastBits : (obj.firstLastBits as number | null),
    foldBatchNorm: obj.foldBatchNorm === undefined ? base.foldBatchNorm : Boolean(obj.foldBatchNorm),
    observerMomentum: (obj.observerMomentum as number) ?? base.observerMomentum,
    overrides: [...base.overrides, ...overrides],
  };
}
