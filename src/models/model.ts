import { Graph } from '../ir/graph';

/**
 * A trainable model: a forward graph in inference form (BatchNormalization uses running statistics) whose
 * parameters and running statistics are initializers, plus which of them are which.
 */
export interface Model {
  name: string;
  graph: Graph;
  /** Graph input taking pixels in [0, 1], shape [N, C, H, W] (N symbolic). */
  input: string;
  /** Graph output with the logits, shape [N, classes]. */
  output: string;
  /** Trainable float initializers. */
  params: string[];
  /** BatchNormalization running mean/var initializers (updated by training, never by the optimizer). */
  runningStats: string[];
  /** Parameters exempt from weight decay by default: biases and normalisation scales/shifts. */
  noDecay: string[];
  /** Activation observer ranges (min, max initializers) that QAT updates with a moving average until frozen. */
  observerStats?: string[];
  /** Present on quantization-aware models: what was quantized, how, and where its parameters live. */
  quant?: import('../quant/prepare').QuantInfo;
}

export function parameterCount(model: Model): number {
  return model.params.reduce((n, p) => n + (model.graph.initializers.get(p)?.size ?? 0), 0);
}
