/**
 * Evaluates a language-model ONNX file as ONNX Runtime loads it (ours, exported, or a PyTorch export): the
 * validation stream's non-overlapping windows (data/text.ts evalWindows) go in as input_ids [rows, T] with
 * attention_mask ones and position_ids 0..T-1 where the graph takes them (and empty past_key_values for a
 * KV-cache decoder); the next-token cross-entropy is summed in float64 from the logits [rows, T, V] here,
 * since the file's graph is not ours to extend.
 */
import * as ort from '../runtime/ort.js';
import { evalWindows, languageModelMetrics, TokenStream } from '../data/text.js';
import { decoderLayoutOf, emptyPast, vocabularyOf } from '../generate/decoder-layout.js';
import { fileSessionOptions, onesMask, positionsTensor } from '../generate/generator.js';
import type { LanguageModelJson } from '../generate/model-json.js';
import { TOKENIZER_NAMES } from '../data/tokenizers/index.js';
import type { LanguageModelEval } from '../train/evaluate-language-model.js';

/** Logits kept in memory per batch: rows are chosen so that rows x T x V stays below this. */
const LOGITS_PER_BATCH = 1 << 23;

export async function evaluateLanguageModelFile(
  file: string,
  stream: TokenStream,
  context: number,
  options: { threads?: number; batch?: number; json?: LanguageModelJson; tokenizerVocab?: number } = {},
): Promise<LanguageModelEval> {
  const session = await ort.InferenceSession.create(file, fileSessionOptions(options.threads, options.json?.sessionConfig));
  try {
    const layout = decoderLayoutOf(session, { heads: options.json?.heads, headSize: options.json?.headSize });
    const vocab = await vocabularyOf(session, layout, options.json?.vocabSize);
    if (options.tokenizerVocab !== undefined && vocab < options.tokenizerVocab) {
      throw new Error(`--tokenizer: its vocabulary (${options.tokenizerVocab} ids) is larger than the model's (${vocab}); choose the tokenizer the model was trained with (${TOKENIZER_NAMES.join(', ')})`);
    }
    const batch = options.batch ?? Math.max(1, Math.min(16, Math.floor(LOGITS_PER_BATCH / (context * vocab))));
    let lossSum = 0;
    let correct = 0;
    let tokens = 0;
    let bytes = 0;
    for (const w of evalWindows(stream, context, batch)) {
      const feeds: Record<string, ort.Tensor> = { [layout.inputIds]: new ort.Tensor('int64', w.ids, [w.rows, context]) };
      if (layout.layers.length > 0) Object.assign(feeds, emptyPast(layout, w.rows));
      if (layout.attentionMask) feeds[layout.attentionMask] = onesMask(w.rows, context);
      if (layout.positionIds) feeds[layout.positionIds] = positionsTensor(w.rows, 0, context, layout.positionIdsSingleRow);
      const logits = (await session.run(feeds, [layout.logits]))[layout.logits];
      const [rows, t, v] = logits.dims;
      if (logits.dims.length !== 3 || rows !== w.rows || t !== context) {
        throw new Error(`${file}: output '${layout.logits}' has shape [${logits.dims}], expected logits [${w.rows}, ${context}, vocabulary]`);
      }
      const scored = scoreNextTokens(logits.data as Float32Array, w.targets, rows * t, v);
      lossSum += scored.loss;
      correct += scored.correct;
      tokens += rows * t;
      bytes += w.targetBytes;
    }
    if (tokens === 0) throw new Error(`the validation stream (${stream.tokens.length} tokens) is shorter than one window of ${context + 1} tokens; use a smaller --context`);
    return { ...languageModelMetrics(lossSum / tokens, tokens, bytes), val_token_accuracy: correct / tokens, val_tokens: tokens };
  } finally {
    await session.release();
  }
}

/** Summed -log softmax(logits)[target] over positions (float64) and the count of argmax hits. */
export function scoreNextTokens(logits: Float32Array, targets: BigInt64Array, positions: number, vocab: number): { loss: number; correct: number } {
  let loss = 0;
  let correct = 0;
  for (let p = 0; p < positions; p++) {
    const at = p * vocab;
    let max = -Infinity;
    let best = 0;
    for (let i = 0; i < vocab; i++) {
      if (logits[at + i] > max) {
        max = logits[at + i];
        best = i;
      }
    }
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(logits[at + i] - max);
    const target = Number(targets[p]);
    if (target >= vocab) throw new Error(`token id ${target} is outside the model's vocabulary of ${vocab}; choose the tokenizer the model was trained with (--tokenizer)`);
    loss += max + Math.log(sum) - logits[at + target];
    if (best === target) correct++;
  }
  return { loss, correct };
}
