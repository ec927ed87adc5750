/**
 * model.json: what generation and evaluation need to know about an exported language-model file that the ONNX
 * graph itself does not say: its tokenizer, the context it was trained for, and its KV-cache layout. It lies
 * beside the .onnx file (one per directory); `qat generate --model FILE.onnx` and `qat eval --model FILE.onnx`
 * read it, and flags (--tokenizer, --context) override it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TOKENIZER_NAMES, Tokenizer, TokenizerName, tokenizerByName } from '../data/tokenizers/index.js';
import { Model } from '../models/model.js';
import { decoderNames } from '../models/transformer-builder.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';

export const MODEL_JSON = 'model.json';
export const MODEL_JSON_FORMAT = 'qatkit-language-model';

/** Cache tensors are [batch, heads, sequence, head_size], named with {i} for the layer index. */
export interface KvCacheJson {
  layout: 'batch,heads,sequence,head_size';
  pastKey: string;
  pastValue: string;
  presentKey: string;
  presentValue: string;
  /**
   * A cache stored quantized (qat export of a --kv-bits run, export/lm-kv-cache.ts): bits, layout, and the
   * tensors each layer stores as past_key_values.{i}.<suffix> / present.{i}.<suffix>.
   */
  quantization?: { bits: number; layout: 'per-token' | 'kivi'; groupSize?: number; tensors: { suffix: string; dtype: string; shape: (number | string)[] }[]; bytesPerToken: number };
}

export interface LanguageModelJson {
  format: typeof MODEL_JSON_FORMAT;
  version: 1;
  tokenizer: TokenizerName;
  /** The tokenizer's end-of-text id, when its vocabulary has one (bytes: 256 for multi-document data). */
  endOfText?: number;
  /** Rows of the model's logits. */
  vocabSize: number;
  /** Longest sequence the model takes (its position table; generation's window). */
  context: number;
  arch?: 'gpt' | 'llama';
  layers?: number;
  heads?: number;
  headSize?: number;
  inputs: { inputIds: string; attentionMask?: string; positionIds?: string };
  outputs: { logits: string };
  /** Present when the file is a KV-cache decoder (past_key_values.{i}.* in, present.{i}.* out). */
  kvCache?: KvCacheJson;
  /**
   * ONNX Runtime session config entries the file's numerics depend on, set by `qat generate` / `qat eval`
   * (an int4 QDQ export: "session.qdq_matmulnbits_accuracy_level").
   */
  sessionConfig?: Record<string, string>;
  /** A quantized export: its format and weights (what `qat export` wrote). */
  quantization?: { format: string; preset?: string | null; weightBits: number[]; embeddings: string; activations: string[] };
}

export const KV_CACHE_NAMES: KvCacheJson = {
  layout: 'batch,heads,sequence,head_size',
  pastKey: 'past_key_values.{i}.key',
  pastValue: 'past_key_values.{i}.value',
  presentKey: 'present.{i}.key',
  presentValue: 'present.{i}.value',
};

/** model.json for `model` (a training-form graph, or with kvCache its decoder form) tokenized by `tokenizer`. */
export function languageModelJson(model: Model, tokenizer: Pick<Tokenizer, 'name' | 'endOfText'>, options: { kvCache?: boolean } = {}): LanguageModelJson {
  if (model.task !== 'language-model' || !model.lm) throw new Error(`model '${model.name}' is not a language model`);
  const arch = model.lm.arch;
  if (options.kvCache && !arch) throw new Error(`model '${model.name}': only a zoo transformer (gpt, llama) has a KV-cache decoder form`);
  return {
    format: MODEL_JSON_FORMAT,
    version: 1,
    tokenizer: tokenizer.name,
    ...(tokenizer.endOfText !== undefined ? { endOfText: tokenizer.endOfText } : {}),
    vocabSize: model.lm.vocabSize,
    context: model.lm.context,
    ...(arch ? { arch: arch.kind, layers: arch.layers, heads: arch.heads, headSize: arch.dim / arch.heads } : {}),
    inputs: {
      inputIds: model.input,
      ...(options.kvCache ? { attentionMask: decoderNames.attentionMask, positionIds: decoderNames.positionIds } : {}),
      ...(!options.kvCache && model.lm.attentionMask ? { attentionMask: model.lm.attentionMask } : {}),
      ...(!options.kvCache && model.lm.positionIds ? { positionIds: model.lm.positionIds } : {}),
    },
    outputs: { logits: model.output },
    ...(options.kvCache ? { kvCache: KV_CACHE_NAMES } : {}),
  };
}

export function modelJsonPath(onnxFile: string): string {
  return path.join(path.dirname(onnxFile), MODEL_JSON);
}

/** Writes model.json beside `onnxFile`; returns its path. */
export function writeLanguageModelJson(onnxFile: string, json: LanguageModelJson): string {
  const file = modelJsonPath(onnxFile);
  writeFileAtomic(file, JSON.stringify(json, null, 2) + '\n');
  return file;
}

/** The model.json beside `onnxFile`, checked; undefined when there is none. */
export function readLanguageModelJson(onnxFile: string): LanguageModelJson | undefined {
  const file = modelJsonPath(onnxFile);
  if (!fs.existsSync(file)) return undefined;
  let json: LanguageModelJson;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${file}: must be a JSON object (format "${MODEL_JSON_FORMAT}"), got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`);
  }
  const fail = (field: string, valid: string) => {
    throw new Error(`${file}: field "${field}" must be ${valid}, got ${JSON.stringify((json as unknown as Record<string, unknown>)[field])}`);
  };
  if (json.format !== MODEL_JSON_FORMAT) fail('format', `"${MODEL_JSON_FORMAT}"`);
  if (!(TOKENIZER_NAMES as readonly string[]).includes(json.tokenizer)) fail('tokenizer', `one of ${TOKENIZER_NAMES.join(', ')}`);
  for (const field of ['vocabSize', 'context'] as const) if (!Number.isInteger(json[field]) || json[field] < 1) fail(field, 'an integer >= 1');
  for (const field of ['layers', 'heads', 'headSize'] as const) if (json[field] !== undefined && (!Number.isInteger(json[field]) || json[field]! < 1)) fail(field, 'an integer >= 1');
  if (json.endOfText !== undefined && !Number.isInteger(json.endOfText)) fail('endOfText', 'a token id');
  const isName = (v: unknown) => typeof v === 'string' && v !== '';
  if (typeof json.inputs !== 'object' || json.inputs === null || !isName(json.inputs.inputIds)) fail('inputs', 'an object with inputIds (a tensor name)');
  if (typeof json.outputs !== 'object' || json.outputs === null || !isName(json.outputs.logits)) fail('outputs', 'an object with logits (a tensor name)');
  if (json.sessionConfig !== undefined && (typeof json.sessionConfig !== 'object' || json.sessionConfig === null || Array.isArray(json.sessionConfig) || Object.values(json.sessionConfig).some((v) => typeof v !== 'string'))) {
    fail('sessionConfig', 'an object of string values (ONNX Runtime session config entries)');
  }
  return json;
}

/**
 * The tokenizer called `name` for a model: bytes gets its end-of-text token (id 256) when `endOfText` says so
 * or, without that, when the model's vocabulary is exactly 257 (bytes trained on multi-document data).
 */
export function tokenizerForModel(name: string, vocabSize: number, endOfText?: number): Tokenizer {
  const withEnd = name === 'bytes' ? (endOfText !== undefined ? true : vocabSize === 257) : true;
  return tokenizerByName(name, { endOfText: withEnd });
}
