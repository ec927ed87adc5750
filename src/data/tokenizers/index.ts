import { bytesTokenizer } from './bytes.js';
import { gpt2Tokenizer } from './gpt2.js';
import { TOKENIZER_NAMES, Tokenizer, TokenizerName } from './tokenizer.js';

export { TOKENIZER_NAMES, END_OF_TEXT_MARKER } from './tokenizer.js';
export type { Tokenizer, TokenizerName, StreamingDecoder } from './tokenizer.js';
export { bytesTokenizer, BYTES_END_OF_TEXT } from './bytes.js';
export { gpt2Tokenizer, GPT2_END_OF_TEXT, GPT2_VOCAB_SIZE } from './gpt2.js';

export function isTokenizerName(name: string): name is TokenizerName {
  return (TOKENIZER_NAMES as readonly string[]).includes(name);
}

/**
 * The tokenizer called `name`. `endOfText` asks bytes for its document separator (id 256, vocabulary 257);
 * gpt2 always has one (<|endoftext|>, 50256).
 */
export function tokenizerByName(name: string, options: { endOfText?: boolean } = {}): Tokenizer {
  if (!isTokenizerName(name)) throw new Error(`unknown tokenizer '${name}'; valid choices: ${TOKENIZER_NAMES.join(', ')}`);
  return name === 'bytes' ? bytesTokenizer(options) : gpt2Tokenizer();
}
