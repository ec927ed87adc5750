/**
 * The generator a model gets: the KV-cache decoder when it has one (a zoo transformer, or an ONNX file with
 * past_key_values inputs), full recompute otherwise or when asked (kvCache: false).
 */
import fs from 'node:fs';
import * as ort from '../runtime/ort.js';
import { Model } from '../models/model.js';
import { declaredOutputShapes, decoderLayoutOf, vocabularyOf } from './decoder-layout.js';
import { InputError } from '../validate/schema.js';
import { fileSessionOptions, TokenGenerator } from './generator.js';
import { KvCacheGenerator } from './kv-cache-generator.js';
import { LanguageModelJson } from './model-json.js';
import { RecomputeGenerator } from './recompute-generator.js';

export interface CreateGeneratorOptions {
  /** Use the KV cache where the model has one (default true). */
  kvCache?: boolean;
  threads?: number;
  /** KV cache: tokens kept when the window slides (default context / 2). */
  keepOnSlide?: number;
  /** The window (default: the model's context; a zoo model's is its position table, the most it takes). */
  context?: number;
}

export async function createGenerator(model: Model, options: CreateGeneratorOptions = {}): Promise<TokenGenerator> {
  if (model.task !== 'language-model' || !model.lm) throw new Error(`model '${model.name}' is not a language model (int64 token ids [B, T] -> logits [B, T, V])`);
  const kvCache = options.kvCache ?? true;
  // The zoo decoder form (transformerDecoder) is built from the float parameters; only the KV-cache quantizers are
  // re-inserted into it. A run with weight or activation quantizers therefore generates from its own fake-quant
  // graph, so the text is what the quantized model computes; `qat export` writes its integer KV-cache decoder.
  const quantized = (model.quant?.quantizers.length ?? 0) > 0 || model.quant?.lora !== undefined;
  if (kvCache && model.lm.arch && !quantized) return KvCacheGenerator.fromModel(model, options);
  const reason = !kvCache
    ? '--no-kv-cache'
    : quantized
      ? `run '${model.name}' is quantized: generating with its fake-quant model by full recompute (exact; \`qat export\` writes its KV-cache decoder)`
      : `model '${model.name}' is not a zoo transformer, so it has no KV-cache decoder form here`;
  return RecomputeGenerator.fromModel(model, { threads: options.threads, reason, context: options.context });
}

/**
 * A generator over an ONNX file run by ONNX Runtime as it is: a KV-cache decoder (past_key_values.{i}.key/value
 * inputs, present.{i}.* outputs, position_ids and attention_mask) decodes with its cache; any other language
 * model (a PyTorch export taking input_ids [B, T], with or without attention_mask / position_ids) recomputes.
 */
export async function createFileGenerator(file: string, context: number, options: CreateGeneratorOptions & { json?: LanguageModelJson } = {}): Promise<TokenGenerator> {
  if (!fs.existsSync(file)) throw new Error(`--model: no such file '${file}'`);
  const session = await ort.InferenceSession.create(file, fileSessionOptions(options.threads, options.json?.sessionConfig));
  try {
    let layout;
    try {
      layout = decoderLayoutOf(session, { heads: options.json?.heads, headSize: options.json?.headSize }, declaredOutputShapes(file));
    } catch (e) {
      // The refusal names the file as well as the tensor.
      throw e instanceof Error && e.constructor === Error ? new InputError(`${file}: ${e.message}`) : e;
    }
    if (options.json) {
      const { inputIds, attentionMask, positionIds } = options.json.inputs;
      if (session.inputNames.includes(inputIds)) layout.inputIds = inputIds;
      if (attentionMask && session.inputNames.includes(attentionMask)) layout.attentionMask = attentionMask;
      if (positionIds && session.inputNames.includes(positionIds)) layout.positionIds = positionIds;
      if (session.outputNames.includes(options.json.outputs.logits)) layout.logits = options.json.outputs.logits;
    }
    const vocab = await vocabularyOf(session, layout, options.json?.vocabSize);
    const decoder = layout.layers.length > 0 && layout.positionIds !== undefined && layout.attentionMask !== undefined;
    if ((options.kvCache ?? true) && decoder) return new KvCacheGenerator(session, layout, context, vocab, options);
    const reason = decoder ? '--no-kv-cache' : `${file} has no past_key_values inputs (not a KV-cache decoder)`;
    return new RecomputeGenerator(session, layout, context, vocab, reason);
  } catch (e) {
    await session.release();
    throw e;
  }
}
