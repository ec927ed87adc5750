import { Tensor } from '../ir/tensor.js';
import { Model } from '../models/model.js';
import { Quantizer } from '../quant/prepare.js';
import { QatConfig } from '../quant/presets.js';
import { QuantSpec } from '../quant/spec.js';
import { LayerSite } from './layers.js';
import { QuantColumn } from './report.js';

/** Where a quantizer's scale comes from (QuantColumn.scale_source). */
export function scaleSource(spec: Pick<QuantSpec, 'method' | 'granularity'>, role: 'weight' | 'activation'): QuantColumn['scale_source'] {
  if (spec.method === 'lsq' || spec.method === 'lsq+' || spec.method === 'pact' || spec.method === 'seq') return 'learned';
  if (spec.method === 'binary' || spec.method === 'ternary') return 'rule';
  if (spec.granularity.kind === 'per-token' || spec.method === 'absmax') return 'dynamic';
  return role === 'weight' ? 'weight range' : 'observed';
}

/** A QuantSpec as a table column; `scales` (the scale values) gives the range. */
export function specColumn(spec: QuantSpec, role: 'weight' | 'activation', scales?: ArrayLike<number>): QuantColumn {
  const g = spec.granularity;
  const range = scales && scales.length ? scaleRange(scales) : undefined;
  return {
    bits: spec.method === 'binary' ? 1 : spec.bits,
    method: spec.method,
    granularity: g.kind,
    ...(g.kind === 'per-channel' || g.kind === 'per-group' ? { axis: g.axis } : {}),
    ...(g.kind === 'per-group' ? { group: g.size } : g.kind === 'per-token' && g.blockSize ? { group: g.blockSize } : {}),
    signed: spec.signed,
    symmetric: spec.symmetric,
    scale_source: scaleSource(spec, role),
    ...(range ? { scale_range: range } : {}),
  };
}

export function scaleRange(values: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return [lo, hi];
}

/** The value names whose numbers give each quantizer's scale (the scale the graph feeds FakeQuantize; PACT's alpha). */
export function scaleValueNames(quantizers: Quantizer[]): string[] {
  return quantizers.flatMap((q) => (q.spec.method === 'pact' ? [q.learned[0]] : q.scale && q.spec.granularity.kind !== 'per-token' && q.spec.method !== 'absmax' ? [q.scale] : []));
}

/** The scale values of a quantizer, from values fetched by scaleValueNames (PACT: alpha / (2^bits - 1)). */
export function quantizerScales(q: Quantizer, values: Map<string, Tensor>): ArrayLike<number> | undefined {
  if (q.spec.method === 'pact') {
    const alpha = values.get(q.learned[0])?.toNumbers()[0];
    return alpha === undefined ? undefined : [alpha / (2 ** q.spec.bits - 1)];
  }
  return q.scale ? values.get(q.scale)?.toNumbers() : undefined;
}

/**
 * Why a layer is quantized differently from the config's defaults: the first/last-layer rule (firstLastBits keeps
 * them at 8 bits with min/max scales: the first layer sees raw pixels, the last produces the logits, and both are
 * small; Krishnamoorthi 2018, section 3.2 / Esser et al. 2020 keep them at 8 bits), a per-layer override, a skip.
 */
export function layerNote(config: QatConfig, layer: LayerSite, index: number, count: number, weight: Quantizer | undefined, languageModel: boolean): string | undefined {
  const globMatch = (pattern: string, name: string) => new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$').test(name);
  const override = config.overrides.find((o) => globMatch(o.match, layer.node.name));
  if (override?.skip) return `float: override '${override.match}' skips it`;
  if (override) return `override '${override.match}'`;
  if (!weight && layer.node.opType === 'Gather' && !languageModel) return undefined;
  const position = index === 0 ? 'first' : index === count - 1 ? 'last' : undefined;
  if (position && config.firstLastBits && weight && weight.spec.bits > config.weight.bits) return `${position} layer: kept at ${config.firstLastBits} bits (firstLastBits)`;
  return undefined;
}

/** The quantizers of a layer: its weight's, and the activation quantizer feeding it. */
export function layerQuantizers(model: Model, node: string): { weight?: Quantizer; activation?: Quantizer } {
  const qs = model.quant?.quantizers ?? [];
  return {
    weight: qs.find((q) => q.role === 'weight' && q.layers.includes(node)),
    activation: qs.find((q) => q.role === 'activation' && q.layers.includes(node)),
  };
}
