/**
 * `qat export --from LM_RUN --format fp32|int4|matmulnbits`: a language-model run's KV-cache decoder as a
 * deployable ONNX file with model.json beside it, checked on the file by ONNX Runtime (lm-parity.ts) and, for the
 * quantized formats, on the model ORT optimizes it into (lm-fusion-check.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTextData } from '../data/text.js';
import { TokenizerName } from '../data/tokenizers/index.js';
import { languageModelJson, LanguageModelJson, writeLanguageModelJson } from '../generate/model-json.js';
import { transformerDecoder } from '../models/transformers.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { encodeModel } from '../onnx/model-io.js';
import { Checkpoint } from '../train/checkpoint.js';
import { bytesByKind, tensorKinds, TensorKind } from '../inspect/tensor-kinds.js';
import { InputError } from '../validate/schema.js';
import { METRICS_FILE } from '../train/run-lifecycle.js';
import { checkFusion, FusionReport } from './lm-fusion-check.js';
import { measureCacheBytesPerToken } from './lm-kv-cache.js';
import { AttentionMode, buildLanguageModelDecoder, EmbeddingMode, LmDecoderExport, LmExportFormat } from './lm-decoder.js';
import { checkLanguageModelParity, LmParityOptions, LmParityReport } from './lm-parity.js';
import { resolveWeightType, WeightTypeChoice } from './weight-type.js';
import { chooseLutGemm, LutGemmChoice, LutGemmMode } from './lut-kernel.js';
import { checkLanguageModelIntegerLayers, LmIntegerReport } from './lm-integer-check.js';
import { buildRecomputeLanguageModel } from './lm-recompute.js';

/** `json` (which has no session config yet) with `config` as its session config, when it has entries. */
function withSessionConfig(json: LanguageModelJson, config: Record<string, string>): LanguageModelJson {
  return Object.keys(config).length ? { ...json, sessionConfig: config } : json;
}

export interface LmExportRunOptions {
  from: string;
  out: string;
  json?: string;
  format: LmExportFormat;
  embeddings?: EmbeddingMode;
  /** MatMulNBits block of per-channel / per-tensor weights (the widest of 16..256 dividing each layer, at most this). */
  blockSize?: number;
  /** Write the model even when a parity bound is missed (the figures are still measured and reported). */
  noVerify?: boolean;
  /** int4: accept weight MatMuls that ORT did not fuse into MatMulNBits (they run in float). */
  allowFloat?: boolean;
  threads?: number;
  parity?: LmParityOptions;
  /** qdq: 8-bit weight storage (weight-type.ts; default auto: int8 where this CPU's u8s8 kernels are exact). */
  weightType?: WeightTypeChoice;
  /** 2-bit MatMulNBits: ORT's LUT kernel where it passes parity (auto, the default), always (on) or never (off). */
  lutGemm?: LutGemmMode;
  /** Decoder attention: GroupQueryAttention where the run allows it (auto, the default), always (fused) or never (ops). */
  attention?: AttentionMode;
}

export interface LmExportReport {
  format: LmExportFormat;
  from: string;
  out: string;
  model_json: string;
  data: string;
  tokenizer: string;
  context: number;
  preset: string | null;
  file_bytes: number;
  /** The same decoder with float32 weights, encoded the same way. */
  fp32_file_bytes: number;
  /** fp32_file_bytes / file_bytes. */
  size_ratio_vs_fp32: number;
  /** Stored bytes of the initializers by kind (src/inspect/tensor-kinds.ts), of this file and of the fp32 decoder. */
  tensor_bytes: { exported: Record<TensorKind | 'total', number>; fp32: Record<TensorKind | 'total', number> };
  weights: LmDecoderExport['weights'];
  embeddings: LmDecoderExport['embeddings'];
  activations: LmDecoderExport['activations'];
  accuracy_level: number;
  /** qdq: how the 8-bit weight codes are stored and why (weight-type.ts); null for the other formats. */
  weight_type: 'uint8' | 'int8' | null;
  weight_type_reason: string | null;
  /** ONNX Runtime session config entries the file needs (also in model.json; qat eval / generate set them). */
  session_config: Record<string, string>;
  /** Whether 2-bit weights run on ORT's LUT kernel, and why (lut-kernel.ts). */
  lut_gemm: LutGemmChoice;
  /** How the decoder computes attention (fused GroupQueryAttention or standard ops), and why (lm-decoder.ts chooseAttention). */
  attention: LmDecoderExport['attention'];
  /** How the file generates: with its KV cache (a gpt / llama decoder), or by recomputing the window (an imported model's own graph). */
  generation: 'kv-cache' | 'full-recompute';
  /**
   * KV cache per token over all layers: float32 [batch, heads, sequence, head_size] keys and values, or (a --kv-bits
   * run) the stored codes with their scales and zero points (lm-kv-cache.ts), computed and measured on the file;
   * absent for a full-recompute file.
   */
  kv_cache?: {
    bits: number;
    layout?: 'per-token' | 'kivi';
    group_size?: number;
    bytes_per_token: number;
    float32_bytes_per_token: number;
    /** Bytes of all present.* outputs after a prefill of measured_tokens tokens, per token (ORT on the file). */
    measured_bytes_per_token?: number;
    measured_tokens?: number;
    /** KIVI: the float residual (the unfinished group) at its largest, over all layers. */
    residual_bytes_max?: number;
    tensors?: string[];
  };
  fusion?: FusionReport;
  parity: LmParityReport;
  /** The integer layers recomputed in TypeScript against ORT, layer by layer (lm-integer-check.ts); absent for fp32. */
  integer_reference?: LmIntegerReport;
  /**
   * The run's final val_perplexity as training measured it (RUN_DIR/metrics.json; null without one) and the
   * file's relative difference from it: the proof against the figure the run reported, beside parity's
   * reference, which is re-measured on the same windows.
   */
  training_val_perplexity: number | null;
  exported_vs_training_relative_difference: number | null;
  verified: boolean;
}

/** val_perplexity from a run directory's metrics.json, when it has one. */
function trainingPerplexity(runDir: string): number | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(runDir, METRICS_FILE), 'utf8'));
    return typeof m?.val_perplexity === 'number' ? m.val_perplexity : null;
  } catch {
    return null;
  }
}

/** int4 (QDQ) files rely on ORT fusing DequantizeLinear -> MatMul into MatMulNBits at this level (0: A stays float). */
export const INT4_SESSION_CONFIG = { 'session.qdq_matmulnbits_accuracy_level': '0' };

export async function exportLanguageModelRun(ckpt: Checkpoint, options: LmExportRunOptions): Promise<LmExportReport> {
  const model = ckpt.model;
  // QAT + LoRA exports the merged model its last phase trained (src/quant/lora.ts); adapters still apart mean the run stopped early.
  if (model.quant?.lora) throw new InputError(`--from: '${options.from}' stopped at step ${ckpt.step} with its LoRA adapters not merged yet; finish it (qat train --out ${options.from} --resume): its last --lora-merge-steps steps merge them into the weights that export`);
  if (model.task !== 'language-model' || !model.lm) throw new InputError(`--from: '${options.from}' is not a language-model run`);
  // gpt / llama runs export their KV-cache decoder; an imported model its own graph, which generates by full recompute.
  const arch = model.lm.arch;
  const data = String(ckpt.config.data);
  const tokenizerName = (ckpt.config.tokenizer as TokenizerName | undefined) ?? 'bytes';
  const context = (ckpt.config.context as number | undefined) ?? model.lm!.context;
  const text = loadTextData(data, tokenizerName);
  const weightType = options.format === 'qdq' ? resolveWeightType(options.weightType) : null;
  const build = arch ? buildLanguageModelDecoder : buildRecomputeLanguageModel;
  const exported = await build(model, { format: options.format, embeddings: options.embeddings, blockSize: options.blockSize, threads: options.threads, attention: options.attention, ...(weightType ? { weightType: weightType.type } : {}) });
  const bytes = encodeModel(exported.graph);
  const fp32Graph =
    options.format === 'fp32' && !model.quant ? exported.graph : arch ? transformerDecoder(model, exported.attention.used).graph : (await buildRecomputeLanguageModel(model, { format: 'fp32', embeddings: 'float', threads: options.threads })).graph;
  const fp32Bytes = fp32Graph === exported.graph ? bytes.byteLength : encodeModel(fp32Graph).byteLength;
  const tensorBytes = { exported: bytesByKind(tensorKinds(exported.graph)), fp32: bytesByKind(tensorKinds(fp32Graph)) };
  const baseSessionConfig: Record<string, string> = options.format === 'int4' ? { ...INT4_SESSION_CONFIG } : {};
  const lutEligible = options.format === 'matmulnbits' && exported.weights.some((w) => w.storage_bits === 2);
  const json: LanguageModelJson = {
    ...languageModelJson(model, text.tokenizer, { kvCache: Boolean(arch) }),
    context,
    ...(model.quant
      ? {
          quantization: {
            format: options.format,
            preset: model.quant.preset ?? null,
            weightBits: [...new Set(exported.weights.map((w) => w.bits))].sort(),
            embeddings: exported.embeddings,
            activations: exported.activations.map((a) => a.spec),
          },
        }
      : {}),
  };
  if (exported.kvCache && json.kvCache) {
    const k = exported.kvCache;
    json.kvCache.quantization = { bits: k.bits, layout: k.layout, ...(k.groupSize ? { groupSize: k.groupSize } : {}), tensors: k.tensors.map((t) => ({ ...t, shape: [...t.shape] })), bytesPerToken: k.bytesPerToken };
  }
  // The candidate is checked from a scratch file; `out` and its model.json are written only once it passes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatkit-lm-export-'));
  try {
    const staged = path.join(dir, 'model.onnx');
    fs.writeFileSync(staged, bytes);
    let fusion: FusionReport | undefined;
    if (options.format !== 'fp32') {
      fusion = await checkFusion(staged, baseSessionConfig);
      if (fusion.float_matmuls.length > 0 && !options.allowFloat) {
        throw new InputError(`--format ${options.format}: ONNX Runtime left ${fusion.float_matmuls.length} weight MatMul(s) in float instead of MatMulNBits (${fusion.float_matmuls.slice(0, 5).join(', ')}); pass --allow-float to write it anyway`);
      }
      if (fusion.accuracy_levels.join() !== exported.accuracy_levels.join()) {
        throw new Error(`--format ${options.format}: ORT's optimized model runs MatMulNBits at accuracy_level ${fusion.accuracy_levels.join(', ')}, not ${exported.accuracy_levels.join(', ')}`);
      }
    }
    // 2-bit weights: the parity check picks the kernel (lut-kernel.ts), so the proof covers the one that generates.
    const { sessionConfig, parity, lut } = await chooseLutGemm(options.lutGemm ?? 'auto', lutEligible, baseSessionConfig, (config) =>
      checkLanguageModelParity(model, staged, text.val, context, withSessionConfig(json, config), { threads: options.threads, ...options.parity }),
    );
    const shipped = withSessionConfig(json, sessionConfig);
    if (!parity.passed && !options.noVerify) {
      const hint = lut.mode === 'on' ? '; --lut-gemm auto falls back to the exact 2-bit kernel' : '';
      throw new InputError(`export ${options.format} of '${options.from}' is not equal to the run's model: ${parity.failures.join('; ')}; nothing was written (pass --no-verify to write it anyway${hint})`);
    }
    // Every integer layer recomputed from its codes in TypeScript against ORT's own (lm-integer-check.ts).
    const cache = arch ? { heads: arch.heads, headSize: arch.dim / arch.heads } : {};
    const integer = options.format === 'fp32' ? undefined : await checkLanguageModelIntegerLayers(exported.graph, text.val, sessionConfig, { ...cache, context }, { threads: options.threads });
    if (integer && !integer.passed && !options.noVerify) {
      const m = integer.first_mismatch!;
      throw new InputError(`export ${options.format} of '${options.from}': the integer reference differs from ONNX Runtime first at ${m.opType} '${m.node}' (${m.compute === 'codes' ? `codes ${m.maxDiff} steps apart` : `relative difference ${m.relativeDiff.toExponential(2)}`}); nothing was written (pass --no-verify to write it anyway)`);
    }
    writeFileAtomic(options.out, bytes);
    const modelJson = writeLanguageModelJson(options.out, shipped);
    const trained = trainingPerplexity(options.from);
    const kvBytes = arch ? arch.layers * 2 * arch.dim * 4 : 0;
    const stored = exported.kvCache;
    // KIVI: a whole number of groups (no residual) within the context.
    const measuredTokens = stored ? (stored.groupSize && context >= stored.groupSize ? context - (context % stored.groupSize) : context) : 0;
    const measured = stored ? await measureCacheBytesPerToken(staged, shipped, measuredTokens, options.threads) : undefined;
    const report: LmExportReport = {
      format: options.format,
      from: options.from,
      out: options.out,
      model_json: modelJson,
      data,
      tokenizer: text.tokenizer.name,
      context,
      preset: model.quant?.preset ?? null,
      file_bytes: bytes.byteLength,
      fp32_file_bytes: fp32Bytes,
      size_ratio_vs_fp32: fp32Bytes / bytes.byteLength,
      tensor_bytes: tensorBytes,
      weights: exported.weights,
      embeddings: exported.embeddings,
      activations: exported.activations,
      accuracy_level: exported.accuracy_level,
      weight_type: weightType?.type ?? null,
      weight_type_reason: weightType?.reason ?? null,
      session_config: sessionConfig,
      lut_gemm: lut,
      attention: exported.attention,
      generation: arch ? 'kv-cache' : 'full-recompute',
      kv_cache: !arch
        ? undefined
        : stored
        ? {
            bits: stored.bits,
            layout: stored.layout,
            ...(stored.groupSize ? { group_size: stored.groupSize } : {}),
            bytes_per_token: stored.bytesPerToken,
            float32_bytes_per_token: stored.floatBytesPerToken,
            measured_bytes_per_token: measured,
            measured_tokens: measuredTokens,
            ...(stored.residualBytesMax !== undefined ? { residual_bytes_max: stored.residualBytesMax } : {}),
            tensors: stored.tensors.map((t) => `${t.suffix} ${t.dtype} [${t.shape.join(', ')}]`),
          }
        : { bits: 32, bytes_per_token: kvBytes, float32_bytes_per_token: kvBytes },
      ...(fusion ? { fusion } : {}),
      parity,
      ...(integer ? { integer_reference: integer } : {}),
      training_val_perplexity: trained,
      exported_vs_training_relative_difference: trained === null ? null : Math.abs(parity.exported_val_perplexity - trained) / trained,
      verified: !options.noVerify,
    };
    if (options.json) writeFileAtomic(options.json, JSON.stringify(report, null, 2) + '\n');
    return report;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

