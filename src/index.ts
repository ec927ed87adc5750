// qatkit's library API: everything the `qat` CLI does is available here.
import './ops';

export { DType } from './ir/dtype';
export { Graph, topologicalOrder } from './ir/graph';
export type { Node, ValueInfo, Shape, Dim, Attr } from './ir/graph';
export { Tensor } from './ir/tensor';
export { GraphBuilder } from './ir/builder';
export { inferTypes } from './ir/infer';

export { defineOp, defineOps, findOp, registeredOps } from './ops';
export type { OpDef, VjpContext, VjpRule } from './ops';
export { differentiate } from './autodiff/grad';
export { checkGradient } from './autodiff/check';

export { loadModel, saveModel, encodeModel, decodeModel } from './onnx/model-io';
export { importModel } from './onnx/import';
export { Session } from './runtime/session';
export { lowerCustomOps } from './runtime/lower';

export { ModelBuilder } from './models/builder';
export type { Model } from './models/model';
export { mlp, lenet, resnet8, mobilenet, zooModel, ZOO_MODELS } from './models/zoo';
export { resolveModel, importForTraining } from './models/resolve';

export { loadDataset, BatchLoader, DATASET_NAMES } from './data';
export type { Dataset, DataSplit } from './data';

export { Rng } from './train/rng';
export { softmaxCrossEntropy, meanSquaredError, distillationKl } from './train/losses';
export { emitOptimizer, defaultOptimizer } from './train/optimizer';
export type { OptimizerConfig } from './train/optimizer';
export { learningRate } from './train/schedule';
export { buildTrainStep, buildEvalGraph } from './train/step-graph';
export { Trainer, TrainingDivergedError } from './train/trainer';
export { fit } from './train/fit';
export { train, DEFAULT_TRAIN_CONFIG } from './train/run';
export type { TrainConfig, TrainResult } from './train/run';
export { saveCheckpoint, loadCheckpoint } from './train/checkpoint';

// ---- language models ----
export { TransformerBuilder, decoderNames } from './models/transformer-builder';
export type { LayerCache, AttentionOptions } from './models/transformer-builder';
export { gpt, llama, transformerDecoder, swigluHidden, TRANSFORMER_DEFAULTS } from './models/transformers';
export type { TransformerOptions } from './models/transformers';
export type { ModelTask, LanguageModelInfo, TransformerArch } from './models/model';
export { parameterCount } from './models/model';
export { loadTextData, isTextData, TEXT_DATASETS, WindowSampler, evalWindows, languageModelMetrics } from './data/text';
export type { TextData, TokenStream } from './data/text';
export { tokenizerByName, TOKENIZER_NAMES } from './data/tokenizers/index';
export type { Tokenizer, TokenizerName } from './data/tokenizers/index';
export { tokenCrossEntropy, tokenCorrectCount } from './train/losses';
export { trainLanguageModel, LANGUAGE_MODEL_DEFAULTS } from './train/run-language-model';
export type { LanguageModelResult } from './train/run-language-model';
export { evaluateLanguageModel, buildLanguageModelEvalGraph } from './train/evaluate-language-model';
export type { LanguageModelEval } from './train/evaluate-language-model';

// ---- quantization, PTQ, sensitivity, export and evaluation (what qat train --quant / quantize / sensitivity / export / eval run) ----
export { prepareQat } from './quant/qat';
export { presetConfig, PRESETS } from './quant/presets';
export type { QatConfig } from './quant/presets';
export { quantizeRun } from './train/ptq-run';
export type { PtqRunConfig, PtqResult } from './train/ptq-run';
export { layerSensitivity, suggestMixedPrecision } from './quant/sensitivity';
export { exportQdq, EXPORT_FORMATS } from './export/qdq';
export { exportRun } from './export/export-run';
export { checkParity } from './export/parity';
export { evaluateOnnxFile } from './export/evaluate-file';
export { evaluateModel } from './train/evaluate';
export { loadRun } from './train/run';

// ---- generation (what qat generate runs) and language-model file evaluation (qat eval --model FILE.onnx) ----
export { generate, createGenerator, createFileGenerator, KvCacheGenerator, RecomputeGenerator, TokenSampler, argmax, topKIds, decoderLayoutOf, vocabularyOf } from './generate/index';
export type { TokenGenerator, NextTokenLogits, GenerateOptions, GenerationResult, GenerationMode, SamplingOptions, CreateGeneratorOptions, KvCacheGeneratorOptions, DecoderLayout } from './generate/index';
export { MODEL_JSON, languageModelJson, writeLanguageModelJson, readLanguageModelJson, tokenizerForModel } from './generate/index';
export type { LanguageModelJson, KvCacheJson } from './generate/index';
export { evaluateLanguageModelFile } from './export/evaluate-language-model-file';

// ---- robustness (issue 14): checks before work, refusals, interrupts, input validation ----
export { planTrain, TrainingInterruptedError } from './train/run';
export type { TrainPlan, TrainOptions } from './train/run';
export { InputError, UsageError } from './validate/schema';
export { validateModelProto, validateGraphValues } from './onnx/validate';
export { parseQuantConfig, loadQuantConfigFile } from './quant/config-file';
