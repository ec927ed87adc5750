// Types of web/lm.js for the TypeScript tests that run it in Node.
import type { OrtLike } from './qat-step.js';
import type { LanguageModelJson } from '../src/generate/model-json.js';

export interface LmCatalogEntry {
  file: string;
  url?: string;
  config: LanguageModelJson;
}
export interface LmGeneration {
  promptIds: number[];
  ids: number[];
  text: string;
  prefillMs: number;
  decodeMs: number;
  decodeSteps: number;
  decodeTokensPerSecond: number;
  slides: number;
}
export class BytesTokenizer {
  constructor(endOfText?: number);
  readonly vocabSize: number;
  encode(text: string): number[];
}
export class LmGenerator {
  static create(ort: OrtLike, model: LmCatalogEntry): Promise<LmGenerator>;
  constructor(ort: OrtLike, model: LmCatalogEntry, session: unknown);
  generate(prompt: string, maxTokens: number, onToken?: (id: number, text: string) => void | Promise<void>): Promise<LmGeneration>;
  release(): Promise<void>;
}
