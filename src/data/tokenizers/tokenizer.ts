export const TOKENIZER_NAMES = ['bytes', 'gpt2'] as const;
export type TokenizerName = (typeof TOKENIZER_NAMES)[number];

/** How decode() renders the end-of-text token: GPT-2's own spelling of it. */
export const END_OF_TEXT_MARKER = '<|endoftext|>';

/** Prints tokens as they are generated: bytes of a character split over several tokens are held back until it is whole. */
export interface StreamingDecoder {
  /** The text this token completes ('' while a multi-byte character is still incomplete). */
  write(id: number): string;
  /** Flushes what is held back: an incomplete character becomes U+FFFD. The decoder can be reused afterwards. */
  end(): string;
}

/**
 * A byte-level tokenizer: every id stands for a fixed byte string, so the UTF-8 size of any token sequence is
 * the sum of its tokens' byte lengths, even where a window boundary cuts a character in two.
 */
export interface Tokenizer {
  name: TokenizerName;
  vocabSize: number;
  /** The end-of-document token, when the vocabulary has one. */
  endOfText?: number;
  /** Ordinary text only: '<|endoftext|>' in the input is encoded as those 13 characters, never as endOfText. */
  encode(text: string): number[];
  /** Invalid or incomplete UTF-8 becomes U+FFFD; endOfText becomes END_OF_TEXT_MARKER. */
  decode(ids: ArrayLike<number>): string;
  decoder(): StreamingDecoder;
  /** UTF-8 bytes of text each id stands for, indexed by id; 0 for endOfText, which marks a boundary, not text. */
  byteLengths: Uint8Array;
}
