/**
 * GPT-2's byte-level BPE (Radford et al. 2019; tiktoken's r50k_base ranks), encoded by the gpt-tokenizer npm
 * package, which ships the 50256 merge ranks inside the package: nothing is downloaded. Id 50256 is
 * <|endoftext|>; the vocabulary is 50257.
 *
 * The package is loaded on first use with require (its CommonJS build), so importing qatkit costs nothing for
 * runs that use bytes, and loadTextData stays synchronous. Decoding does not go through the package: its
 * decode shares one streaming TextDecoder between calls, so a call ending inside a character leaks bytes into the
 * next; we keep the byte string of every id from its rank table instead.
 */
import { createRequire } from 'node:module';
import { ByteLevelTokenizer } from './byte-level.js';
import { Tokenizer } from './tokenizer.js';

export const GPT2_END_OF_TEXT = 50256;
export const GPT2_VOCAB_SIZE = 50257;

type Gpt2Encoding = typeof import('gpt-tokenizer/encoding/gpt2');
type Gpt2Ranks = typeof import('gpt-tokenizer/bpeRanks/r50k_base');

const require = createRequire(import.meta.url);
let cached: Tokenizer | undefined;

function load<T>(specifier: string): T {
  try {
    return require(specifier) as T;
  } catch (e) {
    throw new Error(`gpt2 tokenizer: cannot load '${specifier}' from the gpt-tokenizer package (run npm install): ${(e as Error).message}`);
  }
}

export function gpt2Tokenizer(): Tokenizer {
  if (cached) return cached;
  const encoding = load<Gpt2Encoding>('gpt-tokenizer/encoding/gpt2');
  const ranks = load<Gpt2Ranks>('gpt-tokenizer/bpeRanks/r50k_base').default;
  if (ranks.length !== GPT2_END_OF_TEXT || encoding.vocabularySize !== GPT2_VOCAB_SIZE) {
    throw new Error(`gpt2 tokenizer: gpt-tokenizer has ${ranks.length} ranks and vocabulary ${encoding.vocabularySize}, expected ${GPT2_END_OF_TEXT} and ${GPT2_VOCAB_SIZE}`);
  }
  const utf8 = new TextEncoder();
  const table = ranks.map((t) => (typeof t === 'string' ? utf8.encode(t) : Uint8Array.from(t)));
  table.push(new Uint8Array(0));
  // An empty disallowed set makes special-token spellings in the text ordinary text (tiktoken's encode_ordinary).
  const ordinary = { disallowedSpecial: new Set<string>() };
  cached = new ByteLevelTokenizer('gpt2', table, (text) => encoding.encode(text, ordinary), GPT2_END_OF_TEXT);
  return cached;
}
