export interface LanguageModelMetrics {
  /** Mean cross-entropy over the evaluated targets, in nats per token. */
  val_loss: number;
  val_perplexity: number;
  bits_per_byte: number;
}

/**
 * The language-model figures from one evaluation pass: perplexity exp(loss), and bits per byte
 * loss x tokens / bytes / ln 2, the total information in bits over the UTF-8 bytes of the target text, which
 * compares models with different tokenizers (the BPB of Gao et al. 2020, The Pile).
 */
export function languageModelMetrics(meanLoss: number, targetTokens: number, bytes: number): LanguageModelMetrics {
  if (!Number.isFinite(meanLoss)) throw new Error(`languageModelMetrics: mean loss ${meanLoss} is not finite`);
  if (!(targetTokens > 0) || !(bytes > 0)) {
    throw new Error(`languageModelMetrics: needs positive target tokens and bytes, got ${targetTokens} tokens and ${bytes} bytes`);
  }
  return {
    val_loss: meanLoss,
    val_perplexity: Math.exp(meanLoss),
    bits_per_byte: (meanLoss * targetTokens) / bytes / Math.LN2,
  };
}
