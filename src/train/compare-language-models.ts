/**
 * How far a quantized language model's next-token distributions are from a reference (its fp32 source), on the
 * validation windows both are evaluated on (evalWindows): the mean per-token KL(reference || candidate) in nats,
 * the divergence LLM-QAT and EfficientQAT-style distillation minimise, and the fraction of positions where both
 * models' argmax agree (teacher-forced top-1 agreement). Perplexity alone can hide a model that is as uncertain as
 * the reference on average but wrong in other places; these two see every position.
 */
import * as ort from '../runtime/ort.js';
import { evalWindows, TokenStream } from '../data/text.js';
import { Model } from '../models/model.js';
import '../ops/index.js';
import { Session } from '../runtime/session.js';
import { languageModelSideInputs } from './evaluate-language-model.js';

export interface LanguageModelComparison {
  /** Mean over positions of sum_v p_ref(v) (log p_ref(v) - log p_cand(v)), nats. */
  kl_to_reference: number;
  /** Fraction of positions whose argmax is the same in both models (ties: the lowest id). */
  top1_agreement: number;
  positions: number;
}

/** log-softmax of one row of logits, in float64. */
function logSoftmax(logits: Float32Array, at: number, vocab: number, out: Float64Array): number {
  let max = -Infinity;
  let arg = 0;
  for (let v = 0; v < vocab; v++) if (logits[at + v] > max) (max = logits[at + v]), (arg = v);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[at + v] - max);
  const logSum = Math.log(sum) + max;
  for (let v = 0; v < vocab; v++) out[v] = logits[at + v] - logSum;
  return arg;
}

/** Compares `candidate` with `reference` on the stream's validation windows (at most `maxWindows` of them). */
export async function compareLanguageModels(
  reference: Model,
  candidate: Model,
  stream: TokenStream,
  context: number,
  options: { threads?: number; batch?: number; maxWindows?: number } = {},
): Promise<LanguageModelComparison> {
  const sessions = await Promise.all([reference, candidate].map((m) => Session.create(m.graph.clone(), { threads: options.threads ?? 2 })));
  try {
    let kl = 0;
    let agree = 0;
    let positions = 0;
    let windows = 0;
    for (const w of evalWindows(stream, context, options.batch ?? 8)) {
      if (options.maxWindows !== undefined && windows >= options.maxWindows) break;
      const rows = options.maxWindows !== undefined ? Math.min(w.rows, options.maxWindows - windows) : w.rows;
      const ids = new ort.Tensor('int64', w.ids.subarray(0, rows * context), [rows, context]);
      const [ref, cand] = await Promise.all(
        [reference, candidate].map(async (m, i) => (await sessions[i].run({ ...languageModelSideInputs(m, rows, context), [m.input]: ids }, [m.output]))[m.output]),
      );
      const vocab = ref.dims[2];
      if (cand.dims[2] !== vocab) throw new Error(`compareLanguageModels: vocabularies differ (${vocab} vs ${cand.dims[2]})`);
      const [a, b] = [ref.data as Float32Array, cand.data as Float32Array];
      const lp = new Float64Array(vocab);
      const lq = new Float64Array(vocab);
      for (let p = 0; p < rows * context; p++) {
        const ra = logSoftmax(a, p * vocab, vocab, lp);
        const rb = logSoftmax(b, p * vocab, vocab, lq);
        let d = 0;
        for (let v = 0; v < vocab; v++) d += Math.exp(lp[v]) * (lp[v] - lq[v]);
        kl += d;
        if (ra === rb) agree++;
      }
      positions += rows * context;
      windows += rows;
    }
    if (positions === 0) throw new Error(`compareLanguageModels: the stream has no whole window of ${context + 1} tokens`);
    return { kl_to_reference: kl / positions, top1_agreement: agree / positions, positions };
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
}
