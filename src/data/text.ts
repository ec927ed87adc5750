/**
 * Language-model data: a text source (text-sources.ts) tokenized into one token stream, split 90/10.
 *
 * - Documents are joined with the tokenizer's end-of-text token between them (sotu has 233 documents; a single
 *   document, like moby-dick or a .txt file, has none, so bytes keeps its vocabulary of 256).
 * - Split: the whole text is tokenized first, then the first floor(9n/10) of the n tokens train and the rest
 *   validate. Splitting tokens, not characters, keeps both splits tokenized exactly as in the full stream.
 * - Each split records the UTF-8 bytes of text its tokens stand for (the sum of the tokenizer's byte lengths;
 *   end-of-text counts 0), which bits_per_byte divides by.
 *
 * GPT-2 tokenization of sotu (10.8 MB) takes about a second, so nothing is cached on disk.
 */
import { Tokenizer, TokenizerName, tokenizerByName } from './tokenizers/index.js';
import { readTextSource } from './text-sources.js';

export { WindowSampler, evalWindows, evalWindowCount } from './text-windows.js';
export type { WindowSamplerOptions, EvalBatch } from './text-windows.js';
export { languageModelMetrics } from './text-metrics.js';
export type { LanguageModelMetrics } from './text-metrics.js';

export const TEXT_DATASETS = ['moby-dick', 'sotu'] as const;
export type TextDatasetName = (typeof TEXT_DATASETS)[number];

/** A bundled text dataset's name, or a path ending in .txt. */
export function isTextData(name: string): boolean {
  return (TEXT_DATASETS as readonly string[]).includes(name) || /\.txt$/i.test(name);
}

export interface TokenStream {
  tokens: Int32Array;
  /** UTF-8 bytes of the text these tokens stand for. */
  bytes: number;
  /** Bytes per vocabulary id (Tokenizer.byteLengths); absent means one byte per token. */
  byteLengths?: Uint8Array;
}

export interface TextData {
  name: string;
  tokenizer: Tokenizer;
  vocabSize: number;
  /** Documents in the source, so documents - 1 end-of-text tokens in the stream. */
  documents: number;
  train: TokenStream;
  val: TokenStream;
}

/** Bytes of text that tokens[start, end) stand for. */
export function streamBytes(tokens: ArrayLike<number>, byteLengths: Uint8Array | undefined, start = 0, end = tokens.length): number {
  if (!byteLengths) return end - start;
  let n = 0;
  for (let i = start; i < end; i++) n += byteLengths[tokens[i]];
  return n;
}

/** The documents' tokens with endOfText between consecutive documents. */
export function tokenizeDocuments(tokenizer: Tokenizer, documents: readonly string[]): Int32Array {
  if (documents.length > 1 && tokenizer.endOfText === undefined) {
    throw new Error(`${tokenizer.name} tokenizer: ${documents.length} documents need an end-of-text token, and this vocabulary has none`);
  }
  const parts = documents.map((d) => tokenizer.encode(d));
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0) + documents.length - 1);
  let at = 0;
  parts.forEach((p, i) => {
    if (i > 0) out[at++] = tokenizer.endOfText!;
    out.set(p, at);
    at += p.length;
  });
  return out;
}

/** The fixed split: the first floor(9n/10) tokens train, the remaining ones validate (views, no copy). */
export function splitTokenStream(tokens: Int32Array, byteLengths?: Uint8Array): { train: TokenStream; val: TokenStream } {
  const cut = Math.floor((tokens.length * 9) / 10);
  const part = (start: number, end: number): TokenStream => ({
    tokens: tokens.subarray(start, end),
    bytes: streamBytes(tokens, byteLengths, start, end),
    ...(byteLengths ? { byteLengths } : {}),
  });
  return { train: part(0, cut), val: part(cut, tokens.length) };
}

/** Tokenizes a text source and splits it 90/10; see the file comment. */
export function loadTextData(name: string, tokenizer: TokenizerName = 'bytes'): TextData {
  if (!isTextData(name)) {
    throw new Error(`unknown text data '${name}'; valid choices: ${TEXT_DATASETS.join(', ')}, or a path ending in .txt`);
  }
  const tokenizerName = String(tokenizer);
  tokenizerByName(tokenizerName); // rejects an unknown name before the text is read
  const { documents } = readTextSource(name);
  const tok = tokenizerByName(tokenizerName, { endOfText: documents.length > 1 });
  const { train, val } = splitTokenStream(tokenizeDocuments(tok, documents), tok.byteLengths);
  return { name, tokenizer: tok, vocabSize: tok.vocabSize, documents: documents.length, train, val };
}
