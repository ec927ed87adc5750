import fs from 'node:fs';
import { z } from 'zod';
import { bool, InputError, intIn, jsonDepth, numberIn, oneOf, parseWith, text } from '../validate/schema.js';
import { activationSpec, LayerOverride, presetConfig, PRESETS, PresetTask, QatConfig, RoleSpec, weightSpec } from './presets.js';
import { QuantSpecError, SCALE_METHODS, validateSpec } from './spec.js';
import { KIVI_GROUP_SIZE, KV_LAYOUTS } from './kv-cache.js';

export const GRANULARITIES = ['per-tensor', 'per-channel', 'per-group', 'per-token'] as const;
const BITS = [1, 2, 3, 4, 5, 6, 7, 8, 16];
/** Largest per-group size accepted (ORT's MatMulNBits blocks go to 256; larger groups are per-channel in effect). */
export const MAX_GROUP_SIZE = 4096;
/** Largest --quant-config file read (a config is a few hundred bytes; overrides for every layer of a big model fit). */
export const MAX_QUANT_CONFIG_BYTES = 1 << 20;
const MAX_JSON_DEPTH = 16;

/** A quant config that does not fit the model (an override matching no layer, a group size dividing no axis). */
export class QuantConfigError extends InputError {}

/** The error with the config named as the user gave it: the file, or the preset. */
export function nameQuantConfig(e: unknown, file: string | undefined, preset: string | undefined): unknown {
  if (!(e instanceof QuantConfigError)) return e;
  const where = file ? `--quant-config ${file}` : `--quant ${preset ?? 'w8a8'}`;
  return new QuantConfigError(`${where}: ${e.message.replace(/^quant config: /, '')}`);
}

const bits = z.number({ error: 'must be 2..8 or 16 (1 for binary)' }).refine((b) => BITS.includes(b), { error: 'must be 2..8 or 16 (1 for binary)' });

/** One role (weight or activation) in a config file: every key optional, merged over the preset's. */
const roleSchema = z.strictObject({
  bits: bits.optional(),
  method: oneOf(SCALE_METHODS).optional(),
  granularity: oneOf(GRANULARITIES).optional(),
  groupSize: intIn(1, MAX_GROUP_SIZE).optional(),
  symmetric: bool().optional(),
  rmsNorm: bool().optional(),
}, { error: 'must be a JSON object of bits, method, granularity, groupSize, symmetric, rmsNorm' });

const overrideSchema = z.strictObject({
  match: text('a layer name or a pattern with * wildcards (a string)'),
  weight: roleSchema.optional(),
  activation: roleSchema.optional(),
  skip: bool().optional(),
}, { error: 'must be a JSON object { "match": ..., "weight"?: ..., "activation"?: ..., "skip"?: ... }' });

/** "kvCache": { "bits": 8 | 4 | 2, "layout"?: "per-token" (default) | "kivi", "groupSize"?: tokens per KIVI key group (32) }. */
export const kvCacheSchema = z.strictObject({
  bits: z.union([z.literal(8), z.literal(4), z.literal(2)], { error: 'must be 8, 4 or 2' }),
  layout: oneOf(KV_LAYOUTS).optional(),
  groupSize: intIn(1, MAX_GROUP_SIZE).optional(),
}, { error: `must be a JSON object { "bits": 8 | 4 | 2, "layout"?: ${KV_LAYOUTS.map((l) => `"${l}"`).join(' | ')}, "groupSize"?: tokens per KIVI key group (default ${KIVI_GROUP_SIZE}) }` });

/** "tokenLayers": roles of a language model's token embedding and LM head, merged over the preset's (presets.ts). */
const tokenLayersSchema = z.strictObject({
  weight: roleSchema.optional(),
  activation: roleSchema.optional(),
}, { error: 'must be a JSON object { "weight"?: ..., "activation"?: ... } (the token embedding and LM head)' });

/** The --quant-config file: see loadQuantConfigFile. */
export const quantConfigFileSchema = z.strictObject({
  preset: oneOf(PRESETS).optional(),
  weight: roleSchema.optional(),
  activation: roleSchema.optional(),
  firstLastBits: z.union([bits, z.null()], { error: 'must be 2..8 or 16, or null (keep the first and last layers at the role bits)' }).optional(),
  foldBatchNorm: bool().optional(),
  // torch's averaging_constant: the weight of the new batch's range; 0 would never move, above 1 overshoots.
  observerMomentum: numberIn(0, 1, { exclusiveMin: true }).optional(),
  overrides: z.array(overrideSchema, { error: 'must be an array of { "match": ..., "weight"?: ..., "activation"?: ..., "skip"?: ... }' }).max(10000).optional(),
  tokenLayers: z.union([tokenLayersSchema, z.null()]).optional(),
  kvCache: kvCacheSchema.optional(),
}, { error: 'must be a JSON object' });

const fullRoleSchema = z.strictObject({
  bits,
  method: oneOf(SCALE_METHODS),
  granularity: oneOf(GRANULARITIES).optional(),
  groupSize: intIn(1, MAX_GROUP_SIZE).optional(),
  symmetric: bool().optional(),
  rmsNorm: bool().optional(),
});

/** A complete QatConfig, as runs store it in their checkpoint config. */
export const qatConfigSchema = z.strictObject({
  weight: fullRoleSchema,
  activation: fullRoleSchema,
  firstLastBits: z.union([bits, z.null()], { error: 'must be 2..8 or 16, or null' }),
  foldBatchNorm: bool(),
  observerMomentum: numberIn(0, 1, { exclusiveMin: true }),
  overrides: z.array(overrideSchema).max(10000),
  tokenLayers: tokenLayersSchema.optional(),
  kvCache: kvCacheSchema.optional(),
});

/**
 * Reads a --quant-config JSON file: { "preset"?: "w4a4", "weight"?: RoleSpec, "activation"?: RoleSpec,
 * "firstLastBits"?: 8 | null, "foldBatchNorm"?: bool, "observerMomentum"?: (0, 1], "overrides"?: [{ "match":
 * "conv1*", "weight": {"bits": 8}, "skip"?: bool }] }, merged over the preset (from the file or --quant, default
 * w8a8). The schema refuses unknown keys (suggesting the closest valid one), values of the wrong JSON type
 * ("yes" for a boolean) and numbers out of range, with the file and the key named. Overrides are checked against
 * the model's layers when the model is prepared (prepare.ts: a pattern that matches no layer is refused).
 */
export function loadQuantConfigFile(file: string, preset?: string, task: PresetTask = 'classification'): QatConfig {
  let textContent: string;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > MAX_QUANT_CONFIG_BYTES) throw new Error(`${stat.size} bytes, more than the ${MAX_QUANT_CONFIG_BYTES} a config may have`);
    textContent = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`--quant-config ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(textContent);
  } catch (e) {
    throw new InputError(`--quant-config ${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (jsonDepth(raw) > MAX_JSON_DEPTH) throw new InputError(`--quant-config ${file}: nested more than ${MAX_JSON_DEPTH} levels deep; a quant config is a few levels of objects`);
  return parseQuantConfig(raw, file, preset, task);
}

/** `task` says what a preset name means: on a language model (text data) w8a8 has per-token activations, and the LM presets exist. */
export function parseQuantConfig(raw: unknown, source: string, preset?: string, task: PresetTask = 'classification'): QatConfig {
  const where = `--quant-config ${source}`;
  const obj = parseWith(quantConfigFileSchema, raw, where);
  if (preset !== undefined && obj.preset !== undefined && preset !== obj.preset) {
    throw new InputError(`${where}: preset '${obj.preset}' contradicts --quant ${preset}; give one of them`);
  }
  let base: QatConfig;
  try {
    base = presetConfig(obj.preset ?? preset ?? 'w8a8', task);
  } catch (e) {
    throw new InputError(`${where}: ${(e as Error).message}`);
  }
  const overrides: LayerOverride[] = (obj.overrides ?? []).map((o) => ({ match: o.match, weight: o.weight ?? {}, activation: o.activation ?? {}, skip: o.skip ?? false }));
  const config: QatConfig = {
    ...base,
    weight: { ...base.weight, ...obj.weight },
    activation: { ...base.activation, ...obj.activation },
    firstLastBits: obj.firstLastBits === undefined ? base.firstLastBits : obj.firstLastBits,
    foldBatchNorm: obj.foldBatchNorm ?? base.foldBatchNorm,
    observerMomentum: obj.observerMomentum ?? base.observerMomentum,
    overrides: [...base.overrides, ...overrides],
    // null: the token embedding and head follow the roles above (b158 with a ternary table, say).
    ...(obj.tokenLayers === null ? { tokenLayers: undefined } : obj.tokenLayers ? { tokenLayers: obj.tokenLayers } : {}),
    ...(obj.kvCache ? { kvCache: { bits: obj.kvCache.bits, layout: obj.kvCache.layout ?? 'per-token', ...(obj.kvCache.groupSize !== undefined ? { groupSize: obj.kvCache.groupSize } : {}) } } : {}),
  };
  if (obj.kvCache && task !== 'language-model') throw new InputError(`${where}: kvCache: KV-cache quantization applies to language models (text --data); this run trains an image model, which has no KV cache`);
  if (obj.kvCache?.groupSize !== undefined && obj.kvCache.layout !== 'kivi') throw new InputError(`${where}: kvCache.groupSize: applies to layout "kivi" only (key groups of tokens); per-token has none`);
  checkRoles(config, where);
  return config;
}

/** Checks that each role, as merged, makes a valid quantizer (e.g. per-token needs absmax), naming the config key. */
export function checkRoles(config: QatConfig, where: string): void {
  const check = (key: string, role: RoleSpec, kind: 'weight' | 'activation') => {
    if (kind === 'activation') {
      // What activationSpec (presets.ts) honours: per-tensor ranges, or dynamic per-token ones with absmax (optionally
      // per block of groupSize channels) or minmax; symmetry follows from the method. A value the quantizer would
      // ignore is refused rather than silently dropped.
      const g = role.granularity ?? 'per-tensor';
      if (role.method === 'seq' || role.method === 'binary' || role.method === 'ternary') {
        throw new InputError(`${where}: ${key}.method: '${role.method}' is a weight quantizer; activations take minmax, lsq, lsq+, pact or absmax`);
      }
      if (g === 'per-channel' || g === 'per-group') throw new InputError(`${where}: ${key}.granularity: '${g}' is for weights; activations are 'per-tensor' or 'per-token' (methods absmax, minmax)`);
      if (g === 'per-token' && role.method !== 'absmax' && role.method !== 'minmax') {
        throw new InputError(`${where}: ${key}.granularity: 'per-token' needs method 'absmax' or 'minmax' (dynamic per-token ranges), got method '${role.method}'`);
      }
      if (role.groupSize !== undefined && !(role.method === 'absmax' && g === 'per-token')) {
        throw new InputError(`${where}: ${key}.groupSize: for activations, only per-token absmax takes blocks of groupSize channels`);
      }
      if (role.symmetric !== undefined) {
        const implied = role.method === 'absmax' || role.method === 'lsq' || role.method === 'pact';
        if (role.symmetric !== implied) {
          throw new InputError(`${where}: ${key}.symmetric: ${role.symmetric} contradicts method '${role.method}', whose activation ranges are ${implied ? 'symmetric' : 'asymmetric'}; leave symmetric out or choose ${role.symmetric ? "'lsq'" : "'lsq+' or 'minmax'"}`);
        }
      }
    }
    if (kind === 'weight' && role.granularity === 'per-token') {
      throw new InputError(`${where}: ${key}.granularity: 'per-token' is for activations (dynamic absmax); weights are per-tensor, per-channel or per-group`);
    }
    if (kind === 'weight' && role.groupSize !== undefined && role.granularity !== 'per-group') {
      throw new InputError(`${where}: ${key}.groupSize: applies to granularity 'per-group' only (granularity is '${role.granularity ?? 'per-channel'}')`);
    }
    try {
      if (kind === 'weight') validateSpec(weightSpec(role, 0), key);
      else for (const nonNegative of [false, true]) validateSpec(activationSpec(role, nonNegative), key);
    } catch (e) {
      if (e instanceof QuantSpecError) throw new InputError(`${where}: ${e.message}`);
      throw e;
    }
  };
  check('weight', config.weight, 'weight');
  check('activation', config.activation, 'activation');
  config.overrides.forEach((o, i) => {
    if (o.weight && Object.keys(o.weight).length) check(`overrides[${i}].weight`, { ...config.weight, ...o.weight }, 'weight');
    if (o.activation && Object.keys(o.activation).length) check(`overrides[${i}].activation`, { ...config.activation, ...o.activation }, 'activation');
  });
}
