import { Model } from '../models/model.js';
import { collectActivationStats } from './calibrate.js';
import { applyQuantization, planQuantization } from './prepare.js';
import { QatConfig } from './presets.js';
import { createObserver, isChannelRange, RangeObserver } from './observers/index.js';
import { ScaleMethod } from './spec.js';

const LEARNED: readonly ScaleMethod[] = ['lsq', 'lsq+', 'pact'];

export interface CalibrationData {
  images: Float32Array;
  count: number;
  sampleShape: number[];
}

/**
 * fp32 model -> QAT model: fold BN, plan quantizers, calibrate activation ranges on a few batches of the float
 * model, insert the quantizers. The result trains with the ordinary Trainer and evaluates with its eval graph.
 */
export async function prepareQat(model: Model, config: QatConfig, calibration: CalibrationData, preset?: string, threads = 2): Promise<Model> {
  if (model.quant) throw new Error(`model '${model.name}' is already quantization-aware (preset ${model.quant.preset ?? 'custom'})`);
  const plan = planQuantization(model, config);
  // Learned activation quantizers start from the MSE-optimal clipping range (the best PTQ range), so QAT
  // starts at least where PTQ ends; observer-based ones start from the plain min/max.
  const observers = new Map<string, RangeObserver>();
  for (const [tensor, { spec }] of plan.activations) {
    if (LEARNED.includes(spec.method)) observers.set(tensor, createObserver('mse', { spec: { ...spec, method: 'minmax' } }));
  }
  const stats = await collectActivationStats(plan.graph, model.input, [...plan.activations.keys()], calibration.images, calibration.count, calibration.sampleShape, {
    threads,
    onBatch: (values) => {
      for (const [tensor, observer] of observers) observer.observe(values.get(tensor)!);
    },
  });
  for (const [tensor, observer] of observers) {
    const r = observer.range();
    if (!isChannelRange(r)) stats.get(tensor)!.clip = r;
  }
  return applyQuantization(model, plan, stats, config, preset);
}

/**
 * fp32 language model -> QAT model. Its activation quantizers are dynamic (per token), so no calibration pass is
 * needed; weights start from their own values (LSQ per group: the MSE-searched clip). A static activation method
 * (an observer, LSQ) would need calibration windows and is refused, naming the choice to make.
 */
export function prepareLanguageModelQat(model: Model, config: QatConfig, preset?: string): Model {
  if (model.quant) throw new Error(`model '${model.name}' is already quantization-aware (preset ${model.quant.preset ?? 'custom'})`);
  const plan = planQuantization(model, config);
  for (const [tensor, { spec }] of plan.activations) {
    if (spec.granularity.kind !== 'per-token' && spec.method !== 'absmax') {
      throw new Error(`activation '${tensor}': language models take dynamic activation quantizers (method absmax or minmax with granularity per-token, or bits 16 for float); got ${spec.method} ${spec.granularity.kind}`);
    }
  }
  return applyQuantization(model, plan, new Map(), config, preset);
}
