import { attrInt, Graph, Node } from '../ir/graph.js';

/** What a model predicts: a class per image, or the next token at every position of a token sequence. */
export type ModelTask = 'classification' | 'language-model';

/** Architecture of a zoo transformer, enough to rebuild its graphs (e.g. the KV-cache decoder) from the parameters. */
export interface TransformerArch {
  kind: 'gpt' | 'llama';
  layers: number;
  heads: number;
  dim: number;
  context: number;
  vocabSize: number;
  /** MLP hidden width. */
  hidden: number;
}

/** Language-model facts the trainer, evaluation and generation need. */
export interface LanguageModelInfo {
  vocabSize: number;
  /** Longest sequence the model was built for (position table size); imported models: the training context. */
  context: number;
  /** HF-style extra inputs, fed by the trainer: attention_mask (int64 ones [B, T]) and position_ids (0..T-1). */
  attentionMask?: string;
  positionIds?: string;
  /** Present for zoo transformers (gpt, llama): how to rebuild the decoder graph with a KV cache. */
  arch?: TransformerArch;
}

/**
 * A trainable model: a forward graph in inference form (BatchNormalization uses running statistics) whose
 * parameters and running statistics are initializers, plus which of them are which.
 */
export interface Model {
  name: string;
  graph: Graph;
  /** Default 'classification'. */
  task?: ModelTask;
  /**
   * Classification: graph input taking pixels in [0, 1], shape [N, C, H, W] (N symbolic).
   * Language model: int64 token ids [B, T] (both symbolic).
   */
  input: string;
  /** Graph output with the logits: [N, classes], or [B, T, vocab] for a language model. */
  output: string;
  /** Language models only. */
  lm?: LanguageModelInfo;
  /** Trainable float initializers. */
  params: string[];
  /** BatchNormalization running mean/var initializers (updated by training, never by the optimizer). */
  runningStats: string[];
  /** Parameters exempt from weight decay by default: biases and normalisation scales/shifts. */
  noDecay: string[];
  /** Activation observer ranges (min, max initializers) that QAT updates with a moving average until frozen. */
  observerStats?: string[];
  /** Present on quantization-aware models: what was quantized, how, and where its parameters live. */
  quant?: import('../quant/prepare.js').QuantInfo;
}

export function parameterCount(model: Model): number {
  return model.params.reduce((n, p) => n + (model.graph.initializers.get(p)?.size ?? 0), 0);
}

/**
 * A learned position table's lookup (GPT-2's wpe [positions, C], nn.Embedding of arange or position_ids): a Gather
 * along axis 0 of a 2-D table by indices other than the token ids `ids`. `tableRank`: the rank of input 0.
 */
export function isPositionTableGather(n: Node, tableRank: number, ids: string): boolean {
  return n.opType === 'Gather' && tableRank === 2 && n.inputs[1] !== ids && attrInt(n, 'axis', 0) === 0;
}
