import * as ort from '../runtime/ort.js';
import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../models/model.js';
import { Session } from '../runtime/session.js';
import { tokenCorrectCount, tokenCrossEntropySum } from './losses.js';
import { evalWindows, languageModelMetrics, TokenStream } from '../data/text.js';

export interface LanguageModelEval {
  /** Mean next-token cross-entropy over every validation target, nats/token. */
  val_loss: number;
  val_perplexity: number;
  bits_per_byte: number;
  /** Fraction of targets that are the argmax of their logits. */
  val_token_accuracy: number;
  /** Targets evaluated. */
  val_tokens: number;
}

export const EVAL_TARGETS = 'targets';
export const EVAL_LOSS_SUM = 'loss_sum';
export const EVAL_CORRECT = 'correct';

/**
 * The model's inference graph plus a `targets` input [B, T] and two scalar outputs, the summed cross-entropy and
 * the count of correct argmaxes, so evaluation never copies [B, T, V] logits out of ONNX Runtime.
 */
export function buildLanguageModelEvalGraph(model: Model): Graph {
  const g = model.graph.clone();
  g.name = `${model.name}_eval`;
  const b = new GraphBuilder(g, 'eval/');
  const shape = b.shape(model.input);
  const targets = b.input(EVAL_TARGETS, DType.INT64, shape);
  g.outputs = [];
  b.output(b.op1('Identity', [tokenCrossEntropySum(b, model.output, targets)], {}, { outputs: [EVAL_LOSS_SUM] }));
  b.output(b.op1('Identity', [tokenCorrectCount(b, model.output, targets)], {}, { outputs: [EVAL_CORRECT] }));
  return g;
}

/** Feeds for a language model's Hugging Face style inputs: attention_mask ones and position_ids 0..T-1. */
export function languageModelSideInputs(model: Model, rows: number, length: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const info = (name: string) => model.graph.inputs.find((v) => v.name === name);
  const mask = model.lm?.attentionMask;
  if (mask && info(mask)) feeds[mask] = new ort.Tensor('int64', new BigInt64Array(rows * length).fill(1n), [rows, length]);
  const positions = model.lm?.positionIds;
  const positionInfo = positions ? info(positions) : undefined;
  if (positions && positionInfo) {
    const r = positionInfo.shape[0] === 1 ? 1 : rows;
    feeds[positions] = new ort.Tensor('int64', BigInt64Array.from({ length: r * length }, (_, i) => BigInt(i % length)), [r, length]);
  }
  return feeds;
}

/**
 * Validation metrics over consecutive non-overlapping windows of the stream (data/text.ts evalWindows):
 * val_loss in nats/token, perplexity exp(val_loss), bits per byte of the evaluated text.
 * `feeds` holds the parameters when the session takes them as inputs (the trainer's eval session).
 */
export async function evaluateLanguageModelSession(
  session: Session,
  model: Model,
  stream: TokenStream,
  context: number,
  options: { batch?: number; feeds?: Record<string, ort.Tensor> } = {},
): Promise<LanguageModelEval> {
  let lossSum = 0;
  let correct = 0;
  let tokens = 0;
  let bytes = 0;
  for (const w of evalWindows(stream, context, options.batch ?? 16)) {
    const feeds: Record<string, ort.Tensor> = {
      ...options.feeds,
      ...languageModelSideInputs(model, w.rows, context),
      [model.input]: new ort.Tensor('int64', w.ids, [w.rows, context]),
      [EVAL_TARGETS]: new ort.Tensor('int64', w.targets, [w.rows, context]),
    };
    const out = await session.run(feeds, [EVAL_LOSS_SUM, EVAL_CORRECT]);
    lossSum += (out[EVAL_LOSS_SUM].data as Float32Array)[0];
    correct += (out[EVAL_CORRECT].data as Float32Array)[0];
    tokens += w.rows * context;
    bytes += w.targetBytes;
  }
  if (tokens === 0) throw new Error(`the validation stream (${stream.tokens.length} tokens) is shorter than one window of ${context + 1} tokens; use a smaller --context`);
  return { ...languageModelMetrics(lossSum / tokens, tokens, bytes), val_token_accuracy: correct / tokens, val_tokens: tokens };
}

/** Evaluates a language model (its own initializers) on a token stream. */
export async function evaluateLanguageModel(model: Model, stream: TokenStream, context: number, options: { threads?: number; batch?: number } = {}): Promise<LanguageModelEval> {
  const session = await Session.create(buildLanguageModelEvalGraph(model), { threads: options.threads ?? 2 });
  try {
    return await evaluateLanguageModelSession(session, model, stream, context, options);
  } finally {
    await session.release();
  }
}
