import { QuantSpec, validateSpec } from '../spec.js';
import { klLevels } from './kl.js';
import { OBSERVER_KINDS, ObserverError, ObserverKind } from './types.js';

export interface ObserverOptions {
  /** The quantizer the range is for: bits, signed and symmetric decide what the search optimises. */
  spec: QuantSpec;
  /** One range per channel along this axis (negative counts from the end). Defaults to the spec's per-channel axis. */
  perChannelAxis?: number;
  /** 'moving-average': weight of the new batch, torch's averaging_constant (default 0.01). */
  momentum?: number;
  /** 'percentile': the percentile kept, in (50, 100] (default 99.99). */
  percentile?: number;
  /** 'percentile', 'kl': histogram bins over |x| (or over each side of 0), default 2048 as TensorRT. */
  bins?: number;
}

export interface ResolvedObserverOptions {
  spec: QuantSpec;
  perChannelAxis: number | undefined;
  momentum: number;
  percentile: number;
  bins: number;
}

export const DEFAULT_MOMENTUM = 0.01;
export const DEFAULT_PERCENTILE = 99.99;
export const DEFAULT_BINS = 2048;
/** Bins are capped so the KL search (quadratic in bins) stays well under a second per tensor. */
export const MIN_BINS = 16;
export const MAX_BINS = 16384;

/** Which kinds each tuning option applies to; passing it to another kind is a mistake worth reporting. */
const OPTION_KINDS: Record<'momentum' | 'percentile' | 'bins', readonly ObserverKind[]> = {
  momentum: ['moving-average'],
  percentile: ['percentile'],
  bins: ['percentile', 'kl'],
};
const KNOWN_OPTIONS = ['spec', 'perChannelAxis', 'momentum', 'percentile', 'bins'];
/** Methods whose scale is not a calibrated range: binary/ternary use mean|x|, absmax is computed per token at run time. */
const RANGELESS_METHODS = ['binary', 'ternary', 'absmax'];

export function validateObserverOptions(kind: ObserverKind, options: ObserverOptions): ResolvedObserverOptions {
  if (!(OBSERVER_KINDS as readonly string[]).includes(kind)) {
    throw new ObserverError(`observer kind ${JSON.stringify(kind)} is invalid; valid: ${OBSERVER_KINDS.join(', ')}`);
  }
  const where = `${kind} observer`;
  const fail = (option: string, value: unknown, valid: string): never => {
    throw new ObserverError(`${where}: ${option} = ${JSON.stringify(value)} is invalid; valid: ${valid}`);
  };
  if (typeof options !== 'object' || options === null) fail('options', options, 'an object with at least { spec }');
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.includes(key)) fail('option name', key, KNOWN_OPTIONS.join(', '));
  }
  for (const [option, kinds] of Object.entries(OPTION_KINDS)) {
    const value = (options as unknown as Record<string, unknown>)[option];
    if (value !== undefined && !kinds.includes(kind)) {
      fail(option, value, `leave it unset: ${option} applies to ${kinds.map((k) => `'${k}'`).join(', ')} only`);
    }
  }
  if (!options.spec) fail('spec', options.spec, 'a QuantSpec');
  const spec = validateSpec(options.spec, `${where} spec`);
  if (RANGELESS_METHODS.includes(spec.method)) {
    fail('spec.method', spec.method, 'a method that takes a range: minmax, lsq, lsq+, pact');
  }

  const g = spec.granularity;
  if (g.kind !== 'per-tensor' && g.kind !== 'per-channel') fail('spec.granularity', g.kind, "'per-tensor', 'per-channel'");
  let perChannelAxis = options.perChannelAxis;
  if (perChannelAxis !== undefined && !Number.isInteger(perChannelAxis)) fail('perChannelAxis', perChannelAxis, 'an integer axis');
  if (g.kind === 'per-channel') {
    if (perChannelAxis !== undefined && perChannelAxis !== g.axis) {
      fail('perChannelAxis', perChannelAxis, `unset or ${g.axis} (the spec is per-channel along axis ${g.axis})`);
    }
    perChannelAxis = g.axis;
  }

  const momentum = options.momentum ?? DEFAULT_MOMENTUM;
  if (typeof momentum !== 'number' || !(momentum > 0 && momentum <= 1)) fail('momentum', momentum, 'a number in (0, 1]');
  const percentile = options.percentile ?? DEFAULT_PERCENTILE;
  if (typeof percentile !== 'number' || !(percentile > 50 && percentile <= 100)) fail('percentile', percentile, 'a number in (50, 100]');
  const bins = options.bins ?? DEFAULT_BINS;
  if (!Number.isInteger(bins) || bins < MIN_BINS || bins > MAX_BINS) fail('bins', bins, `an integer in [${MIN_BINS}, ${MAX_BINS}]`);
  if (kind === 'kl') {
    // The KL search needs at least one histogram bin per quantization level.
    const levels = klLevels(spec.bits);
    if (bins < levels) fail('bins', bins, `an integer >= ${levels} (the ${levels} levels KL searches at ${spec.bits} bits); use 'minmax' or 'percentile' for 16 bits`);
  }
  return { spec, perChannelAxis, momentum, percentile, bins };
}
