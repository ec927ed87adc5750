import { Command } from 'commander';
import { DATASET_NAMES, loadDataset } from '../data/index.js';
import { isTextData, loadTextData, TextData, TEXT_DATASETS } from '../data/text.js';
import { TOKENIZER_NAMES, TokenizerName } from '../data/tokenizers/index.js';
import { evaluateOnnxFile } from '../export/evaluate-file.js';
import { evaluateLanguageModelFile } from '../export/evaluate-language-model-file.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { evaluateLanguageModel } from '../train/evaluate-language-model.js';
import { dataOption, defaultThreads, intOption, threadsOption } from './options.js';
import { LanguageModelSource, resolveLanguageModelSource } from './language-model-source.js';
import { compareLanguageModels } from '../train/compare-language-models.js';
import { UsageError } from '../validate/schema.js';

export function evalCommand(): Command {
  return new Command('eval')
    .description('evaluate an ONNX model (fp32 or exported) on a test set, or a language model on a text validation split')
    .option('--model <file.onnx>', 'model taking [N, C, H, W] pixels in [0, 1] returning logits, or a language model (int64 token ids -> logits [B, T, V])')
    .option('--from <run_dir>', 'language models: a qat train run on text (its checkpoint)')
    .option('--data <name>', `dataset: ${DATASET_NAMES.join(', ')} (images, default mnist), ${TEXT_DATASETS.join(', ')} or FILE.txt (text; default with --from: the run's)`, dataOption(DATASET_NAMES, TEXT_DATASETS))
    .option('--tokenizer <name>', `language models: ${TOKENIZER_NAMES.join(', ')} (default: the run's, model.json's, or bytes)`)
    .option('--context <n>', "language models: tokens per window (default: the run's or model.json's)", intOption('--context', 1))
    .option('--reference <run_dir>', 'language models, with --from: also the mean per-token KL(reference || model) and top-1 agreement with this run (e.g. the fp32 source of a quantized run)')
    .option('--json <file>', 'write the result as JSON')
    .option('--limit <n>', 'evaluate only the first n test samples', intOption('--limit', 1))
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .action(async (o) => {
      if (o.from !== undefined || (o.data !== undefined && isTextData(o.data))) return evalLanguageModel(o);
      if (o.model === undefined) throw new Error("required option '--model <file.onnx>' not specified");
      const data = o.data ?? 'mnist';
      const r = await evaluateOnnxFile(o.model, loadDataset(data).test, { threads: o.threads, limit: o.limit });
      const result = { model: o.model, data, samples: r.samples, test_accuracy: r.test_accuracy, test_loss: r.test_loss };
      console.log(`${o.model} on ${data}: test accuracy ${(r.test_accuracy * 100).toFixed(2)}% (${r.samples} samples), loss ${r.test_loss.toFixed(4)}`);
      if (o.json) writeFileAtomic(o.json, JSON.stringify(result, null, 2) + '\n');
    });
}

/** val_loss, val_perplexity and bits_per_byte of a language model (run or file) on a text's validation split. */
async function evalLanguageModel(o: Record<string, any>): Promise<void> {
  const source = resolveLanguageModelSource(o);
  const data: string | undefined = o.data ?? source.data;
  if (data === undefined || !isTextData(data)) {
    throw new Error(`--data must be one of ${TEXT_DATASETS.join(', ')} or a path ending in .txt for a language model, got '${data}'`);
  }
  const text = loadTextData(data, source.tokenizer.name as TokenizerName);
  const r = source.model
    ? await evaluateLanguageModel(source.model, text.val, source.context, { threads: o.threads })
    : await evaluateLanguageModelFile(source.file!, text.val, source.context, { threads: o.threads, json: source.json, tokenizerVocab: text.vocabSize });
  const comparison = o.reference !== undefined ? await compareWithReference(o, source, text) : undefined;
  const result = {
    ...(source.model ? { from: source.label } : { model: source.label }),
    data,
    tokenizer: text.tokenizer.name,
    context: source.context,
    val_loss: r.val_loss,
    val_perplexity: r.val_perplexity,
    bits_per_byte: r.bits_per_byte,
    val_token_accuracy: r.val_token_accuracy,
    val_tokens: r.val_tokens,
    ...(comparison ? { reference: o.reference, ...comparison } : {}),
  };
  console.log(
    `${source.label} on ${data} (validation, ${r.val_tokens} tokens, ${text.tokenizer.name}, context ${source.context}): ` +
      `val_loss ${r.val_loss.toFixed(4)} nats/token, val_perplexity ${r.val_perplexity.toFixed(3)}, bits_per_byte ${r.bits_per_byte.toFixed(3)}`,
  );
  if (comparison) console.log(`against ${o.reference}: mean per-token KL ${comparison.kl_to_reference.toFixed(5)} nats, top-1 agreement ${(comparison.top1_agreement * 100).toFixed(2)}% (${comparison.positions} positions)`);
  if (o.json) writeFileAtomic(o.json, JSON.stringify(result, null, 2) + '\n');
}

/** --reference RUN_DIR: a language-model run on the same tokenizer and context as --from's. */
async function compareWithReference(o: Record<string, any>, source: LanguageModelSource, text: TextData) {
  if (!source.model) throw new UsageError('--reference applies with --from RUN_DIR (a run whose model is compared), not --model FILE.onnx');
  const reference = resolveLanguageModelSource({ from: o.reference });
  if (reference.tokenizer.name !== source.tokenizer.name || reference.context !== source.context) {
    throw new UsageError(`--reference ${o.reference}: its tokenizer/context (${reference.tokenizer.name}, ${reference.context}) differ from --from's (${source.tokenizer.name}, ${source.context})`);
  }
  return compareLanguageModels(reference.model!, source.model, text.val, source.context, { threads: o.threads });
}
