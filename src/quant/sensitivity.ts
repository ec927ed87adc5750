import { Dataset } from '../data/dataset.js';
import { Model } from '../models/model.js';
import { evaluateModel } from '../train/evaluate.js';
import { planQuantization } from './prepare.js';
import { presetConfig, QatConfig, RoleSpec } from './presets.js';
import { quantizePostTraining } from './ptq.js';

/** Where `qat sensitivity --from RUN` leaves its per-layer result inside RUN (read by `qat report`). */
export const SENSITIVITY_FILE = 'sensitivity.json';

export interface LayerSensitivity {
  layer: string;
  opType: string;
  accuracy: number;
  /** fp32 accuracy minus accuracy with only this layer quantized (points as a fraction). */
  drop: number;
}

export interface SensitivityReport {
  bits: number;
  fp32_accuracy: number;
  layers: LayerSensitivity[];
}

/** A config that quantizes only `layer` (weights and input activation) at `bits` with min/max scales. */
export function singleLayerConfig(layer: string, bits: number): QatConfig {
  const role: RoleSpec = { bits, method: 'minmax' };
  return {
    ...presetConfig('w8a8'),
    weight: { ...role, granularity: 'per-channel' },
    activation: { ...role, granularity: 'per-tensor' },
    firstLastBits: null,
    overrides: [{ match: layer }, { match: '*', skip: true }],
  };
}

/**
 * Per-layer sensitivity (as in HAWQ-style and Nagel et al.'s white paper, section 4.8): quantize one layer at a
 * time with PTQ at `bits`, everything else in float, and measure the accuracy drop on `test`.
 */
export async function layerSensitivity(
  fp32: Model,
  calibration: Dataset,
  test: Dataset,
  options: { bits: number; calibCount?: number; threads?: number; limit?: number; onLayer?: (s: LayerSensitivity) => void },
): Promise<SensitivityReport> {
  const base = await evaluateModel(fp32, test, { threads: options.threads, limit: options.limit });
  const layers = planQuantization(fp32, presetConfig('w8a8')).weights.map((w) => w.node);
  const out: LayerSensitivity[] = [];
  for (const node of layers) {
    const q = await quantizePostTraining(fp32, singleLayerConfig(node.name, options.bits), {
      kind: 'minmax',
      images: calibration.images,
      count: Math.min(calibration.count, options.calibCount ?? 1024),
      sampleShape: calibration.shape,
    }, { threads: options.threads, preset: `sensitivity-w${options.bits}` });
    const r = await evaluateModel(q, test, { threads: options.threads, limit: options.limit });
    const s = { layer: node.name, opType: node.opType, accuracy: r.accuracy, drop: base.accuracy - r.accuracy };
    out.push(s);
    options.onLayer?.(s);
  }
  return { bits: options.bits, fp32_accuracy: base.accuracy, layers: out };
}

/**
 * A mixed-precision suggestion for a target accuracy drop: the least sensitive layers stay at the low bit-width
 * while the sum of their single-layer drops fits the budget; the others go to 8 bits. Returns a --quant-config
 * object (per-layer overrides).
 */
export function suggestMixedPrecision(report: SensitivityReport, targetDrop: number): { preset: string; firstLastBits: null; overrides: { match: string; weight: Partial<RoleSpec>; activation: Partial<RoleSpec> }[] } {
  const sorted = [...report.layers].sort((a, b) => a.drop - b.drop);
  let budget = targetDrop;
  const eight: string[] = [];
  for (const l of sorted) {
    const cost = Math.max(0, l.drop);
    if (cost <= budget) budget -= cost;
    else eight.push(l.layer);
  }
  const b = report.bits;
  const preset = b === 8 ? 'w8a8' : b === 4 ? 'w4a4' : b === 3 ? 'w3a3' : b === 2 ? 'w2a2' : 'w4a4';
  return {
    preset,
    firstLastBits: null,
    overrides: eight.map((layer) => ({ match: layer, weight: { bits: 8, method: 'minmax' }, activation: { bits: 8, method: 'minmax' } })),
  };
}
