// qatkit's library API: everything the `qat` CLI does is available here.
import './ops/index.js';

export { DType } from './ir/dtype.js';
export { Graph, topologicalOrder } from './ir/graph.js';
export type { Node, ValueInfo, Shape, Dim, Attr } from './ir/graph.js';
export { Tensor } from './ir/tensor.js';
export { GraphBuilder } from './ir/builder.js';
export { inferTypes } from './ir/infer.js';

export { defineOp, defineOps, findOp, registeredOps } from './ops/index.js';
export type { OpDef, VjpContext, VjpRule } from './ops/index.js';
export { differentiate } from './autodiff/grad.js';
export { checkGradient } from './autodiff/check.js';

export { loadModel, saveModel, encodeModel, decodeModel } from './onnx/model-io.js';
export { importModel } from './onnx/import.js';
export { Session } from './runtime/session.js';
export { lowerCustomOps } from './runtime/lower.js';

export { ModelBuilder } from './models/builder.js';
export type { Model } from './models/model.js';
export { mlp, lenet, resnet8, mobilenet, zooModel, ZOO_MODELS } from './models/zoo.js';
export { resolveModel, importForTraining } from './models/resolve.js';

export { loadDataset, BatchLoader, DATASET_NAMES } from './data/index.js';
export type { Dataset, DataSplit } from './data/index.js';

export { Rng } from './train/rng.js';
export { softmaxCrossEntropy, meanSquaredError, distillationKl } from './train/losses.js';
export { emitOptimizer, defaultOptimizer } from './train/optimizer.js';
export type { OptimizerConfig } from './train/optimizer.js';
export { learningRate } from './train/schedule.js';
export { buildTrainStep, buildEvalGraph } from './train/step-graph.js';
export { Trainer, TrainingDivergedError } from './train/trainer.js';
export { fit } from './train/fit.js';
export { train, DEFAULT_TRAIN_CONFIG } from './train/run.js';
export type { TrainConfig, TrainResult } from './train/run.js';
export { saveCheckpoint, loadCheckpoint } from './train/checkpoint.js';

// ---- language models ----
export { TransformerBuilder, decoderNames } from './models/transformer-builder.js';
export type { LayerCache, AttentionOptions } from './models/transformer-builder.js';
export { gpt, llama, transformerDecoder, swigluHidden, TRANSFORMER_DEFAULTS } from './models/transformers.js';
export type { TransformerOptions } from './models/transformers.js';
export type { ModelTask, LanguageModelInfo, TransformerArch } from './models/model.js';
export { parameterCount } from './models/model.js';
export { loadTextData, isTextData, TEXT_DATASETS, WindowSampler, evalWindows, languageModelMetrics } from './data/text.js';
export type { TextData, TokenStream } from './data/text.js';
export { tokenizerByName, TOKENIZER_NAMES } from './data/tokenizers/index.js';
export type { Tokenizer, TokenizerName } from './data/tokenizers/index.js';
export { tokenCrossEntropy, tokenCorrectCount } from './train/losses.js';
export { trainLanguageModel, LANGUAGE_MODEL_DEFAULTS } from './train/run-language-model.js';
export type { LanguageModelResult } from './train/run-language-model.js';
export { evaluateLanguageModel, buildLanguageModelEvalGraph } from './train/evaluate-language-model.js';
export type { LanguageModelEval } from './train/evaluate-language-model.js';
export { compareLanguageModels } from './train/compare-language-models.js';
export type { LanguageModelComparison } from './train/compare-language-models.js';
export { generateDataFreeWindows, DATA_FREE_GREEDY_TOKENS } from './generate/data-free-samples.js';
export type { DataFreeOptions } from './generate/data-free-samples.js';
export { GeneratedWindowSampler, readGeneratedWindows, writeGeneratedWindows, GENERATED_WINDOWS_FILE } from './data/generated-windows.js';
export type { GeneratedWindows } from './data/generated-windows.js';

// ---- quantization, PTQ, sensitivity, export and evaluation (what qat train --quant / quantize / sensitivity / export / eval run) ----
export { prepareQat } from './quant/qat.js';
export { presetConfig, PRESETS } from './quant/presets.js';
export type { QatConfig } from './quant/presets.js';
export { quantizeRun } from './train/ptq-run.js';
export type { PtqRunConfig, PtqResult } from './train/ptq-run.js';
export { layerSensitivity, suggestMixedPrecision } from './quant/sensitivity.js';
export { exportQdq, EXPORT_FORMATS } from './export/qdq.js';
export { exportRun } from './export/export-run.js';
export { checkParity } from './export/parity.js';
export { evaluateOnnxFile } from './export/evaluate-file.js';
export { evaluateModel } from './train/evaluate.js';
export { loadRun } from './train/run.js';

// ---- generation (what qat generate runs) and language-model file evaluation (qat eval --model FILE.onnx) ----
export { generate, createGenerator, createFileGenerator, KvCacheGenerator, RecomputeGenerator, TokenSampler, argmax, topKIds, decoderLayoutOf, vocabularyOf } from './generate/index.js';
export type { TokenGenerator, NextTokenLogits, GenerateOptions, GenerationResult, GenerationMode, SamplingOptions, CreateGeneratorOptions, KvCacheGeneratorOptions, DecoderLayout } from './generate/index.js';
export { MODEL_JSON, languageModelJson, writeLanguageModelJson, readLanguageModelJson, tokenizerForModel } from './generate/index.js';
export type { LanguageModelJson, KvCacheJson } from './generate/index.js';
export { evaluateLanguageModelFile } from './export/evaluate-language-model-file.js';

// ---- robustness (issue 14): checks before work, refusals, interrupts, input validation ----
export { planTrain, TrainingInterruptedError } from './train/run.js';
export type { TrainPlan, TrainOptions } from './train/run.js';
export { InputError, UsageError } from './validate/schema.js';
export { validateModelProto, validateGraphValues } from './onnx/validate.js';
export { parseQuantConfig, loadQuantConfigFile } from './quant/config-file.js';
