import { bytesTokenizer } from './bytes';
import { gpt2Tokenizer } from './gpt2';
import { TOKENIZER_NAMES, Tokenizer, TokenizerName } from './tokenizer';

export { TOKENIZER_NAMES, END_OF_TEXT_MARKER } from './tokenizer';
export type { Tokenizer, TokenizerName, StreamingDecoder } from './tokenizer';
export { bytesTokenizer, BYTES_END_OF_TEXT } from './bytes';
export { gpt2Tokenizer, GPT2_END_OF_TEXT, GPT2_VOCAB_SIZE } from './gpt2';

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
