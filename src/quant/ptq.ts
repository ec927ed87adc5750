import { Model } from '../models/model.js';
import { collectActivationStats } from './calibrate.js';
import { createObserver, isChannelRange, RangeObserver, TensorRange } from './observers/index.js';
import { ActivationStats, applyQuantization, planQuantization, QuantPlan } from './prepare.js';
import { prepareLanguageModelQat } from './qat.js';
import { LayerOverride, presetConfig, QatConfig, RoleSpec } from './presets.js';
import { ScaleMethod } from './spec.js';

/** Calibration observers PTQ can freeze activation ranges from (the range observers of ./observers). */
export const CALIB_KINDS = ['minmax', 'percentile', 'mse', 'kl'] as const;
export type CalibKind = (typeof CALIB_KINDS)[number];

/** Calibration images batched as `qat quantize --calib-batches` counts them. */
export const CALIB_BATCH_SIZE = 128;

export interface PtqCalibration {
  kind: CalibKind;
  /** Training images, sample-major NCHW in [0, 1]; the first `count` are used. */
  images: Float32Array;
  count: number;
  sampleShape: number[];
  batchSize?: number;
}

export interface PtqOptions {
  /** Preset name recorded in model.quant (defaults to the preset passed, or 'custom' for a config). */
  preset?: string;
  threads?: number;
}

/**
 * Methods whose scale QAT learns (LSQ, LSQ+, PACT) have nothing to learn from without training: PTQ uses the
 * min/max scale instead (weights: per-channel max|W| / qmax computed in-graph as QAT's minmax weights do;
 * activations: a frozen observer range). Binary/ternary weights (closed-form mean|W| scales) and absmax
 * activations (a dynamic per-token scale) take no range and stay as they are. SEQ weights (ParetoQ) are a learned
 * grid too: their PTQ baseline is RTN on the plain uniform grid of the same bits.
 */
const LEARNED: readonly ScaleMethod[] = ['lsq', 'lsq+', 'pact', 'seq'];
const toPtqRole = <R extends Partial<RoleSpec>>(r: R): R => (r.method && LEARNED.includes(r.method) ? { ...r, method: 'minmax' } : r);

/** The QAT config with every learned scale replaced by a min/max one: same bit-widths, same placement. */
export function ptqConfig(config: QatConfig): QatConfig {
  const overrides: LayerOverride[] = config.overrides.map((o) => ({
    ...o,
    ...(o.weight ? { weight: toPtqRole(o.weight) } : {}),
    ...(o.activation ? { activation: toPtqRole(o.activation) } : {}),
  }));
  return { ...config, weight: toPtqRole(config.weight), activation: toPtqRole(config.activation), overrides };
}

/**
 * Runs the float (BN-folded) graph of `plan` on the calibration images and returns, for each activation with a
 * min/max quantizer, the range the chosen observer picks (fed batch by batch, with the activation's own
 * QuantSpec, so percentile/MSE/KL optimise for the grid actually used), plus the plain statistics.
 */
export async function calibrateActivationRanges(
  model: Model,
  plan: QuantPlan,
  calib: PtqCalibration,
  threads = 2,
): Promise<{ ranges: Map<string, TensorRange>; stats: Map<string, ActivationStats> }> {
  const tensors = [...plan.activations.keys()];
  const observers = new Map<string, RangeObserver>();
  for (const [tensor, { spec }] of plan.activations) {
    if (spec.method === 'minmax') observers.set(tensor, createObserver(calib.kind, { spec }));
  }
  const stats = await collectActivationStats(plan.graph, model.input, tensors, calib.images, calib.count, calib.sampleShape, {
    threads,
    batchSize: calib.batchSize ?? CALIB_BATCH_SIZE,
    onBatch: (values) => {
      for (const [tensor, observer] of observers) observer.observe(values.get(tensor)!);
    },
  });
  const ranges = new Map<string, TensorRange>();
  for (const [tensor, observer] of observers) {
    const r = observer.range();
    if (isChannelRange(r)) throw new Error(`activation '${tensor}': PTQ calibrates per-tensor activation ranges only`);
    ranges.set(tensor, r);
  }
  return { ranges, stats };
}

/**
 * Post-training quantization into the SAME fake-quant graph that QAT trains, so PTQ and QAT accuracies compare
 * like for like: BN folded as in QAT (exact with running statistics), the preset's quantizers at the same
 * tensors with the same bit-widths, learned scales replaced by min/max ones (ptqConfig), and every activation
 * observer frozen at the range the calibration observer picked. The result is an ordinary quantization-aware
 * Model (model.quant.method = 'ptq'): evaluateModel evaluates it, saveCheckpoint saves it.
 */
export async function quantizePostTraining(fp32: Model, preset: string | QatConfig, calib: PtqCalibration, options: PtqOptions = {}): Promise<Model> {
  if (fp32.quant) throw new Error(`model '${fp32.name}' is already quantization-aware (preset ${fp32.quant.preset ?? 'custom'}); PTQ needs the fp32 model`);
  if (!(CALIB_KINDS as readonly string[]).includes(calib.kind)) throw new Error(`--calib: invalid value '${calib.kind}'; valid: ${CALIB_KINDS.join(', ')}`);
  if (!(calib.count > 0)) throw new Error(`PTQ calibration needs at least one image (count = ${calib.count})`);
  const config = ptqConfig(typeof preset === 'string' ? presetConfig(preset) : preset);
  const plan = planQuantization(fp32, config);
  const { ranges, stats } = await calibrateActivationRanges(fp32, plan, calib, options.threads);
  // applyQuantization starts each min/max observer at stats' min/max: give it the calibrated range.
  const frozen = new Map([...stats].map(([t, s]) => [t, { ...s, ...(ranges.get(t) ?? {}) }]));
  const model = applyQuantization(fp32, plan, frozen, config, options.preset ?? (typeof preset === 'string' ? preset : 'custom'));
  return { ...model, quant: { ...model.quant!, method: 'ptq', calib: calib.kind } };
}

/**
 * RTN baseline of a language model: round-to-nearest at min/max scales (per channel or per group: max|W| / qmax,
 * computed in-graph from the weights) in the SAME fake-quant graph QAT trains, learned scales replaced by min/max
 * ones (ptqConfig); per-token activations are dynamic, so nothing is calibrated.
 */
export function quantizeLanguageModelRtn(fp32: Model, config: QatConfig, preset = 'custom'): Model {
  const model = prepareLanguageModelQat(fp32, ptqConfig(config), preset);
  return { ...model, quant: { ...model.quant!, method: 'ptq', calib: 'rtn' } };
}
