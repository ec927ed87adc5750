/**
 * --from RUN_DIR | --model FILE.onnx, with --tokenizer and --context, resolved into what `qat generate` and
 * `qat eval` need for a language model: a run directory's checkpoint has the model (with its zoo architecture,
 * so the KV-cache decoder can be rebuilt), tokenizer and context; a file has them in the model.json beside it,
 * or from the flags.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TOKENIZER_NAMES, Tokenizer } from '../data/tokenizers/index.js';
import { LanguageModelJson, modelJsonPath, readLanguageModelJson, tokenizerForModel } from '../generate/model-json.js';
import { Model } from '../models/model.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { UsageError } from '../validate/schema.js';

export interface LanguageModelSource {
  /** RUN_DIR or FILE.onnx, as given. */
  label: string;
  tokenizer: Tokenizer;
  context: number;
  /** The run's model (--from). */
  model?: Model;
  /** The ONNX file (--model). */
  file?: string;
  json?: LanguageModelJson;
  /** The run's training data (--from), the default of `qat eval --data`. */
  data?: string;
}

export interface LanguageModelFlags {
  from?: string;
  model?: string;
  tokenizer?: string;
  context?: number;
}

function checkTokenizerFlag(name: string | undefined): void {
  if (name !== undefined && !(TOKENIZER_NAMES as readonly string[]).includes(name)) {
    throw new Error(`--tokenizer must be one of ${TOKENIZER_NAMES.join(', ')}, got '${name}'`);
  }
}

export function resolveLanguageModelSource(o: LanguageModelFlags): LanguageModelSource {
  if ((o.from === undefined) === (o.model === undefined)) throw new Error('give one of --from RUN_DIR (a qat train run on text) or --model FILE.onnx (a language model)');
  checkTokenizerFlag(o.tokenizer);
  if (o.from !== undefined) {
    const ckpt = path.join(o.from, 'checkpoint.qat');
    if (!fs.existsSync(ckpt)) throw new Error(`--from: no checkpoint.qat in '${o.from}'; give the directory of a qat train run (--out RUN_DIR)`);
    const { model, config } = loadCheckpoint(ckpt);
    if (model.task !== 'language-model' || !model.lm) {
      throw new Error(`--from: '${o.from}' is an image-classification run (data '${String(config.data)}'); give a run trained on text (--data moby-dick, sotu or FILE.txt)`);
    }
    const trained = (config.tokenizer as string | undefined) ?? 'bytes';
    // The run's token ids mean what its own tokenizer says; another one would read them as different text.
    if (o.tokenizer !== undefined && o.tokenizer !== trained) {
      throw new UsageError(`--tokenizer ${o.tokenizer} does not apply to --from ${o.from}: the run was trained with the ${trained} tokenizer, which it uses; leave --tokenizer out`);
    }
    const tokenizerName = trained;
    const context = o.context ?? (config.context as number | undefined) ?? model.lm.context;
    if (model.lm.arch && context > model.lm.context) {
      throw new Error(`--context ${context} is longer than the model's ${model.lm.context} positions; give --context 1..${model.lm.context}`);
    }
    return { label: o.from, tokenizer: tokenizerForModel(tokenizerName, model.lm.vocabSize), context, model, data: config.data as string | undefined };
  }
  const file = o.model!;
  if (!fs.existsSync(file)) throw new Error(`--model: no such file '${file}'`);
  const json = readLanguageModelJson(file);
  const context = o.context ?? json?.context;
  if (context === undefined) {
    throw new Error(`--context: ${file} has no ${path.basename(modelJsonPath(file))} beside it; give --context N (the context it was trained with) and --tokenizer ${TOKENIZER_NAMES.join('|')}`);
  }
  const tokenizerName = o.tokenizer ?? json?.tokenizer ?? 'bytes';
  const tokenizer = tokenizerForModel(tokenizerName, json?.vocabSize ?? 0, o.tokenizer === undefined || o.tokenizer === json?.tokenizer ? json?.endOfText : undefined);
  return { label: file, tokenizer, context, file, ...(json ? { json } : {}) };
}
