/**
 * The decoding shared by both tokenizers: each id maps to a byte string, decoding concatenates bytes and reads
 * them as UTF-8 with replacement characters (the WHATWG decoder's U+FFFD per maximal invalid subpart).
 */
import { END_OF_TEXT_MARKER, StreamingDecoder, Tokenizer, TokenizerName } from './tokenizer.js';

// ignoreBOM keeps a leading EF BB BF as U+FEFF instead of silently dropping it from generated text.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

export class ByteLevelTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly byteLengths: Uint8Array;

  constructor(
    readonly name: TokenizerName,
    private readonly tokenBytes: readonly Uint8Array[],
    readonly encode: (text: string) => number[],
    readonly endOfText?: number,
  ) {
    this.vocabSize = tokenBytes.length;
    this.byteLengths = Uint8Array.from(tokenBytes, (b, id) => {
      if (b.length > 255) throw new Error(`${name} tokenizer: token ${id} has ${b.length} bytes, more than 255`);
      return id === endOfText ? 0 : b.length;
    });
  }

  private check(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new Error(`${this.name} tokenizer: token id ${id} is outside the vocabulary 0..${this.vocabSize - 1}`);
    }
  }

  private bytesOf(ids: ArrayLike<number>, start: number, end: number): Uint8Array {
    let n = 0;
    for (let i = start; i < end; i++) n += this.byteLengths[ids[i]];
    const out = new Uint8Array(n);
    let at = 0;
    for (let i = start; i < end; i++) {
      const b = this.tokenBytes[ids[i]];
      out.set(b, at);
      at += b.length;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    const parts: string[] = [];
    let start = 0;
    for (let i = 0; i <= ids.length; i++) {
      if (i < ids.length) {
        this.check(ids[i]);
        if (ids[i] !== this.endOfText) continue;
      }
      // Each document is decoded on its own: a character cut off before an end-of-text token is U+FFFD.
      if (i > start) parts.push(utf8.decode(this.bytesOf(ids, start, i)));
      if (i < ids.length) parts.push(END_OF_TEXT_MARKER);
      start = i + 1;
    }
    return parts.join('');
  }

  decoder(): StreamingDecoder {
    const stream = new TextDecoder('utf-8', { ignoreBOM: true });
    return {
      write: (id: number) => {
        this.check(id);
        if (id === this.endOfText) return stream.decode() + END_OF_TEXT_MARKER;
        return stream.decode(this.tokenBytes[id], { stream: true });
      },
      end: () => stream.decode(),
    };
  }
}
