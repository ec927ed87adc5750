import { Model } from '../models/model';
import { collectActivationStats } from './calibrate';
import { applyQuantization, planQuantization } from './prepare';
import { QatConfig } from './presets';

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
  const stats = await collectActivationStats(plan.graph, model.input, [...plan.activations.keys()], calibration.images, calibration.count, calibration.sampleShape, { threads });
  return applyQuantization(model, plan, stats, config, preset);
}
