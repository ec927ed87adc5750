/**
 * Proof that an exported language-model file computes what its run's model (fp32, or the fake-quant QAT model)
 * computes, measured by ONNX Runtime on the file itself: validation perplexity, teacher-forced top-1 agreement
 * on the validation windows, and greedy continuations of prompts from the validation text (the exported file
 * decodes with its KV cache; the run's model recomputes the window each step).
 */
import * as ort from '../runtime/ort.js';
import { evalWindows, TokenStream } from '../data/text.js';
import { createFileGenerator } from '../generate/create-generator.js';
import { decoderLayoutOf, emptyPast } from '../generate/decoder-layout.js';
import { fileSessionOptions, generate, onesMask, positionsTensor } from '../generate/generator.js';
import { LanguageModelJson } from '../generate/model-json.js';
import { RecomputeGenerator } from '../generate/recompute-generator.js';
import { Model } from '../models/model.js';
import { Session } from '../runtime/session.js';
import { evaluateLanguageModel, languageModelSideInputs } from '../train/evaluate-language-model.js';
import { evaluateLanguageModelFile } from './evaluate-language-model-file.js';

export interface LmParityOptions {
  threads?: number;
  /** Validation windows for the top-1 agreement (default: all of them). */
  windows?: number;
  /** Greedy continuations: prompts (default 64), tokens per prompt (default 32, at most context - newTokens), new tokens (default 32). */
  prompts?: number;
  promptTokens?: number;
  newTokens?: number;
}

/** The bounds an export must meet (issue 12): perplexity within 0.5%, top-1 >= 99%, mean common prefix >= 24 of 32. */
export const LM_PARITY_BOUNDS = { perplexityRelative: 0.005, top1Agreement: 0.99, commonPrefixFraction: 24 / 32 };

export interface LmParityReport {
  reference: 'fp32' | 'fake-quant';
  reference_val_perplexity: number;
  exported_val_perplexity: number;
  /** |exported - reference| / reference. */
  perplexity_relative_difference: number;
  val_tokens: number;
  top1_agreement: number;
  top1_positions: number;
  top1_windows: number;
  max_abs_logit_difference: number;
  greedy: { prompts: number; prompt_tokens: number; new_tokens: number; mean_common_prefix: number; min_common_prefix: number; identical: number };
  passed: boolean;
  /** The bounds missed, one line each. */
  failures: string[];
}

function argmaxRows(data: Float32Array, rows: number, vocab: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let i = 1; i < vocab; i++) if (data[r * vocab + i] > data[r * vocab + best]) best = i;
    out[r] = best;
  }
  return out;
}

/** Teacher-forced argmax agreement of the two models on the first `limit` validation windows. */
async function top1Agreement(model: Model, file: string, stream: TokenStream, context: number, json: LanguageModelJson, options: LmParityOptions) {
  const reference = await Session.create(model.graph, { threads: options.threads });
  const exported = await ort.InferenceSession.create(file, fileSessionOptions(options.threads, json.sessionConfig));
  try {
    const layout = decoderLayoutOf(exported, { heads: json.heads, headSize: json.headSize });
    let agree = 0;
    let positions = 0;
    let windows = 0;
    let maxDiff = 0;
    const limit = options.windows ?? Infinity;
    for (const w of evalWindows(stream, context, 8)) {
      if (windows >= limit) break;
      const rows = Math.min(w.rows, limit - windows);
      const ids = new ort.Tensor('int64', w.ids.subarray(0, rows * context), [rows, context]);
      const a = (await reference.run({ ...languageModelSideInputs(model, rows, context), [model.input]: ids }, [model.output]))[model.output];
      const feeds: Record<string, ort.Tensor> = { [layout.inputIds]: ids, ...emptyPast(layout, rows) };
      if (layout.attentionMask) feeds[layout.attentionMask] = onesMask(rows, context);
      if (layout.positionIds) feeds[layout.positionIds] = positionsTensor(rows, 0, context, layout.positionIdsSingleRow);
      const b = (await exported.run(feeds, [layout.logits]))[layout.logits];
      const vocab = a.dims[2];
      const da = a.data as Float32Array;
      const db = b.data as Float32Array;
      const ta = argmaxRows(da, rows * context, vocab);
      const tb = argmaxRows(db, rows * context, vocab);
      for (let i = 0; i < ta.length; i++) if (ta[i] === tb[i]) agree++;
      for (let i = 0; i < da.length; i++) maxDiff = Math.max(maxDiff, Math.abs(da[i] - db[i]));
      positions += ta.length;
      windows += rows;
    }
    return { agreement: positions ? agree / positions : 0, positions, windows, maxDiff };
  } finally {
    await reference.release();
    await exported.release();
  }
}

/** Greedy continuations from evenly spaced validation prompts: the run's model (recompute) vs the file (KV cache). */
async function greedyPrefixes(model: Model, file: string, stream: TokenStream, context: number, json: LanguageModelJson, options: LmParityOptions) {
  const newTokens = options.newTokens ?? 32;
  const promptTokens = Math.max(1, Math.min(options.promptTokens ?? 32, context - newTokens));
  const count = options.prompts ?? 64;
  const span = stream.tokens.length - promptTokens;
  const prompts = Array.from({ length: count }, (_, i) => {
    const at = Math.floor((i * span) / count);
    return Array.from(stream.tokens.subarray(at, at + promptTokens));
  });
  const vocab = json.vocabSize;
  const reference = await RecomputeGenerator.fromModel(model, { threads: options.threads, context });
  const exported = await createFileGenerator(file, context, { threads: options.threads, json });
  try {
    const sampling = { maxTokens: newTokens, temperature: 0, vocabLimit: vocab };
    const a = await generate(reference, prompts, sampling);
    const b = await generate(exported, prompts, sampling);
    const prefixes = a.tokens.map((row, r) => {
      let p = 0;
      while (p < row.length && row[p] === b.tokens[r][p]) p++;
      return p;
    });
    return {
      prompts: count,
      prompt_tokens: promptTokens,
      new_tokens: newTokens,
      mean_common_prefix: prefixes.reduce((s, p) => s + p, 0) / count,
      min_common_prefix: Math.min(...prefixes),
      identical: prefixes.filter((p) => p === newTokens).length,
    };
  } finally {
    await reference.release();
    await exported.release();
  }
}

/** Measures the exported file against `model` (the run's model) and checks LM_PARITY_BOUNDS. */
export async function checkLanguageModelParity(model: Model, file: string, stream: TokenStream, context: number, json: LanguageModelJson, options: LmParityOptions = {}): Promise<LmParityReport> {
  const ref = await evaluateLanguageModel(model, stream, context, { threads: options.threads });
  const exp = await evaluateLanguageModelFile(file, stream, context, { threads: options.threads, json });
  const top1 = await top1Agreement(model, file, stream, context, json, options);
  const greedy = await greedyPrefixes(model, file, stream, context, json, options);
  const relative = Math.abs(exp.val_perplexity - ref.val_perplexity) / ref.val_perplexity;
  const failures: string[] = [];
  const b = LM_PARITY_BOUNDS;
  if (!(relative <= b.perplexityRelative)) failures.push(`val_perplexity ${exp.val_perplexity.toFixed(4)} differs from the run model's ${ref.val_perplexity.toFixed(4)} by ${(relative * 100).toFixed(3)}% (bound ${b.perplexityRelative * 100}%)`);
  if (!(top1.agreement >= b.top1Agreement)) failures.push(`teacher-forced top-1 agreement ${(top1.agreement * 100).toFixed(2)}% over ${top1.positions} positions (bound ${b.top1Agreement * 100}%)`);
  const prefixBound = b.commonPrefixFraction * greedy.new_tokens;
  if (!(greedy.mean_common_prefix >= prefixBound)) failures.push(`greedy continuations keep a mean common prefix of ${greedy.mean_common_prefix.toFixed(2)} of ${greedy.new_tokens} tokens (bound ${prefixBound})`);
  return {
    reference: model.quant ? 'fake-quant' : 'fp32',
    reference_val_perplexity: ref.val_perplexity,
    exported_val_perplexity: exp.val_perplexity,
    perplexity_relative_difference: relative,
    val_tokens: exp.val_tokens,
    top1_agreement: top1.agreement,
    top1_positions: top1.positions,
    top1_windows: top1.windows,
    max_abs_logit_difference: top1.maxDiff,
    greedy,
    passed: failures.length === 0,
    failures,
  };
}
