import { DataSplit } from './dataset.js';
import { loadMnist } from './mnist.js';
import { loadFashionMnist } from './fashion-mnist.js';

export type { Dataset, DataSplit } from './dataset.js';
export { BatchLoader } from './loader.js';
export type { Batch, BatchLoaderOptions } from './loader.js';

export const DATASET_NAMES = ['mnist', 'fashion-mnist'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

const LOADERS: Record<DatasetName, () => DataSplit> = {
  mnist: loadMnist,
  'fashion-mnist': () => loadFashionMnist(),
};

// The last dataset loaded, kept: `qat demo`, a QAT run (fp32 evaluation, calibration, training) and the tests load
// the same split several times in one process, ~0.5 s each for MNIST.
let last: { name: DatasetName; split: DataSplit } | undefined;

/** Loads a dataset bundled through npm; nothing is downloaded. The split is shared: treat it as read-only. */
export function loadDataset(name: DatasetName): DataSplit {
  if (!(DATASET_NAMES as readonly string[]).includes(name)) {
    throw new Error(`unknown dataset '${name}'; valid choices: ${DATASET_NAMES.join(', ')}`);
  }
  if (last?.name !== name) last = { name, split: LOADERS[name]() };
  return last.split;
}

export { TEXT_DATASETS, isTextData, loadTextData, splitTokenStream, tokenizeDocuments, streamBytes } from './text.js';
export { WindowSampler, evalWindows, evalWindowCount, languageModelMetrics } from './text.js';
export type { TextDatasetName, TokenStream, TextData, WindowSamplerOptions, EvalBatch, LanguageModelMetrics } from './text.js';
export { TOKENIZER_NAMES, END_OF_TEXT_MARKER, tokenizerByName, isTokenizerName, bytesTokenizer, gpt2Tokenizer } from './tokenizers/index.js';
export type { Tokenizer, TokenizerName, StreamingDecoder } from './tokenizers/index.js';
