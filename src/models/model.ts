import { DType } from '../ir/dtype.js';
import { attrInt, Graph, Node } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';

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

/** Ops that carry position indices through unchanged, or only clamp them (HF: (mask.cumsum(-1) - 1).clamp(0)). */
const POSITION_CARRIERS = new Set(['Unsqueeze', 'Squeeze', 'Expand', 'Reshape', 'Cast', 'Identity', 'Slice', 'Flatten', 'Tile', 'Clip', 'Max', 'Min']);

/** An integer tensor whose rows along the last axis count up by one (a folded arange, or a window of one). */
function consecutiveRows(t: Tensor): boolean {
  if (t.dtype !== DType.INT64 && t.dtype !== DType.INT32) return false;
  const v = t.toNumbers();
  const width = t.dims.at(-1) ?? 1;
  for (let i = 0; i < v.length; i++) if (i % width !== 0 && v[i] !== v[i - 1] + 1) return false;
  return v.length > 0;
}

/**
 * Whether `value` holds positions: from an arange (Range, or its folded constant), a graph input other than the
 * token ids (position_ids), or an attention mask's CumSum, through views, clamps and scalar offsets (a past
 * length). Relative-position buckets (T5's, from the difference of two aranges) are not positions.
 */
function arePositions(graph: Graph, producers: Map<string, Node>, value: string, ids: string, depth = 0): boolean {
  if (depth > 32 || value === ids) return false;
  const init = graph.initializers.get(value);
  if (init) return consecutiveRows(init);
  if (graph.inputs.some((v) => v.name === value)) return true;
  const p = producers.get(value);
  if (!p) return false;
  if (p.opType === 'Range' || p.opType === 'CumSum') return true;
  if (POSITION_CARRIERS.has(p.opType)) return arePositions(graph, producers, p.inputs[0], ids, depth + 1);
  if (p.opType === 'Add' || p.opType === 'Sub') {
    const scalar = (v: string) => { const t = graph.types.get(v); return !!t && t.shape.every((d) => d === 1); };
    const [a, b] = p.inputs;
    return (scalar(b) && arePositions(graph, producers, a, ids, depth + 1)) || (p.opType === 'Add' && scalar(a) && arePositions(graph, producers, b, ids, depth + 1));
  }
  return false;
}

/**
 * A learned position table's lookup (GPT-2's wpe [positions, C], nn.Embedding of arange or position_ids): a Gather
 * along axis 0 of a 2-D table (`tableRank`: the rank of input 0) by positions (arePositions), not by the token
 * ids `ids` nor by relative-position buckets.
 */
export function isPositionTableGather(graph: Graph, producers: Map<string, Node>, n: Node, tableRank: number, ids: string): boolean {
  return n.opType === 'Gather' && tableRank === 2 && n.inputs[1] !== ids && attrInt(n, 'axis', 0) === 0 && arePositions(graph, producers, n.inputs[1], ids);
}
