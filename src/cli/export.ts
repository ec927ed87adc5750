import { Command } from 'commander';
import { exportRun } from '../export/export-run.js';
import { exportLanguageModelRun, LmExportReport } from '../export/export-language-model.js';
import { ATTENTION_MODES, EMBEDDING_MODES, LM_EXPORT_FORMATS, LmExportFormat } from '../export/lm-decoder.js';
import { NBITS_BLOCK_SIZES } from '../export/lm-weight-codes.js';
import { EXPORT_FORMATS } from '../export/qdq.js';
import { WEIGHT_TYPE_CHOICES } from '../export/weight-type.js';
import { LUT_GEMM_MODES } from '../export/lut-kernel.js';
import { loadRun } from '../train/run.js';
import { InputError } from '../validate/schema.js';
import { displayName } from './terminal.js';
import { choiceOption, intOption, defaultThreads, threadsOption, outputFileOption } from './options.js';

const ALL_FORMATS = [...new Set([...EXPORT_FORMATS, ...LM_EXPORT_FORMATS])];

function printLanguageModelExport(r: LmExportReport): void {
  const p = r.parity;
  const bits = [...new Set(r.weights.map((w) => (w.bits === w.storage_bits ? `${w.bits}` : `${w.bits} (in ${w.storage_bits}-bit blocks)`)))].join(', ');
  console.log(
    `${r.format}: ${r.out} (${r.file_bytes} bytes, ${r.size_ratio_vs_fp32.toFixed(2)}x smaller than the fp32 ${r.generation === 'kv-cache' ? 'decoder' : 'model'}'s ${r.fp32_file_bytes}); ` +
      `${r.weights.length ? `weights ${bits}-bit, ` : ''}embeddings ${r.embeddings}; model.json: ${r.model_json}`,
  );
  if (r.weight_type) console.log(`8-bit weight codes as ${r.weight_type}: ${r.weight_type_reason}`);
  if (r.fusion) console.log(`ORT's optimized model: ${r.fusion.matmul_nbits} MatMulNBits (accuracy_level ${r.fusion.accuracy_levels.join(', ') || '-'}), ${r.fusion.float_matmuls.length} weight MatMuls in float`);
  console.log(
    `val_perplexity ${p.exported_val_perplexity.toFixed(4)} (ORT, exported) vs ${p.reference_val_perplexity.toFixed(4)} (${p.reference}), ${(p.perplexity_relative_difference * 100).toFixed(3)}% apart; ` +
      `top-1 agreement ${(p.top1_agreement * 100).toFixed(2)}% over ${p.top1_positions} positions; greedy: mean common prefix ${p.greedy.mean_common_prefix.toFixed(2)} of ${p.greedy.new_tokens} tokens (${p.greedy.prompts} prompts)` +
      `${p.passed ? '' : ` - NOT VERIFIED: ${p.failures.join('; ')}`}`,
  );
  console.log(`attention: ${r.attention.reason}`);
  const ir = r.integer_reference;
  if (ir) console.log(`integer reference (TypeScript, ${ir.windows} x ${ir.tokens_per_window} tokens): ${Object.entries(ir.layers).map(([op, n]) => `${n} ${op}`).join(', ')} ${ir.passed ? 'reproduce' : 'DIFFER from'} ORT's outputs (worst relative difference ${ir.worst_relative_difference.toExponential(1)}${ir.layers.QuantizeLinear ? `, codes within ${ir.worst_code_difference}` : ''})${ir.first_mismatch ? `, first at ${ir.first_mismatch.node}` : ''}`);
  if (r.lut_gemm.eligible) console.log(`2-bit kernel: ${r.lut_gemm.used ? "ORT's LUT kernel (mlas.use_lut_gemm)" : 'exact MatMulNBits'}: ${r.lut_gemm.reason}`);
  const kv = r.kv_cache;
  const kvText = !kv
    ? 'none: the file generates by full recompute (its own attention ops, no past_key_values inputs)'
    : kv.layout
    ? `${kv.bits}-bit ${kv.layout}${kv.group_size ? ` (key groups of ${kv.group_size} tokens; float residual up to ${kv.residual_bytes_max} bytes)` : ''} stored as codes, ${kv.bytes_per_token} bytes per token (measured ${kv.measured_bytes_per_token?.toFixed(1)} over ${kv.measured_tokens} tokens; float32 ${kv.float32_bytes_per_token}, ${(kv.float32_bytes_per_token / kv.bytes_per_token).toFixed(2)}x smaller)`
    : `float32, ${kv.bytes_per_token} bytes per token`;
  console.log(`KV cache: ${kvText}${Object.keys(r.session_config).length ? `; session config (set by qat eval / generate from model.json): ${JSON.stringify(r.session_config)}` : ''}`);
}

export function exportCommand(): Command {
  return new Command('export')
    .description('export a QAT run to a deployable integer ONNX model and check it against the fake-quant model')
    .requiredOption('--from <run_dir>', 'QAT run directory (its checkpoint.qat)')
    .option('--format <name>', `image runs: ${EXPORT_FORMATS.join(', ')}; language-model runs: ${LM_EXPORT_FORMATS.join(', ')}`, choiceOption('--format', ALL_FORMATS))
    .requiredOption('--out <file.onnx>', 'where to write the model', outputFileOption('--out', '.onnx'))
    .option('--json <file.json>', 'write the export report (sizes, parity) as JSON', outputFileOption('--json', '.json'))
    .option('--no-verify', 'write the model even when parity with the fake-quant model fails')
    .option('--weight-type <type>', `8-bit weight storage (image qdq, language-model qdq): ${WEIGHT_TYPE_CHOICES.join(', ')} (auto: int8 where this CPU's u8s8 kernels are exact, VNNI or ARM dot product; else uint8, exact on every CPU)`, choiceOption('--weight-type', WEIGHT_TYPE_CHOICES), 'auto')
    .option('--limit <n>', 'test samples for the parity check (default: all)', intOption('--limit', 1))
    .option('--embeddings <mode>', `language models: token embeddings ${EMBEDDING_MODES.join(' or ')} (int4 stores them as int4 blocks)`, choiceOption('--embeddings', EMBEDDING_MODES), 'quantized')
    .option('--block-size <n>', `language models: MatMulNBits block of per-channel and per-tensor weights (w8a8, b158): ${NBITS_BLOCK_SIZES.join(', ')}; a narrower layer takes the widest that divides it (default 256; grouped weights keep their trained group)`, choiceOption('--block-size', NBITS_BLOCK_SIZES.map(String)))
    .option('--lut-gemm <mode>', `language models, 2-bit matmulnbits: ORT's LUT kernel (fast, rounds activations to int8 tables): ${LUT_GEMM_MODES.join(', ')} (auto: where the file passes parity on it, else the exact 2-bit kernel)`, choiceOption('--lut-gemm', LUT_GEMM_MODES), 'auto')
    .option('--attention <mode>', `language models: ${ATTENTION_MODES.join(', ')} (auto: one com.microsoft GroupQueryAttention per layer, the faster decoder, except in int4 files (standard ONNX), runs that quantize their KV cache, and qdq files with per-head activation codes; ops: standard ONNX ops)`, choiceOption('--attention', ATTENTION_MODES), 'auto')
    .option('--allow-float', 'language models, int4: write the file even when ONNX Runtime runs some weight MatMuls in float')
    .option('--parity-windows <n>', 'language models: validation windows for the top-1 agreement (default: all)', intOption('--parity-windows', 1))
    .option('--parity-prompts <n>', 'language models: prompts for the greedy-continuation check', intOption('--parity-prompts', 1), 64)
    .option('--parity-tokens <n>', 'language models: greedy tokens per prompt', intOption('--parity-tokens', 1), 32)
    .option('--threads <n>', 'ONNX Runtime intra-op threads (1..the cores)', threadsOption(), defaultThreads())
    .action(async (o) => {
      const ckpt = loadRun(o.from);
      if (ckpt.model.task === 'language-model') {
        const format = (o.format ?? (ckpt.model.quant ? 'matmulnbits' : 'fp32')) as string;
        if (!(LM_EXPORT_FORMATS as readonly string[]).includes(format)) {
          throw new InputError(`--format ${format}: '${o.from}' is a language-model run; its formats are ${LM_EXPORT_FORMATS.join(', ')}`);
        }
        const r = await exportLanguageModelRun(ckpt, {
          from: o.from, out: o.out, json: o.json, format: format as LmExportFormat, embeddings: o.embeddings, ...(o.blockSize ? { blockSize: Number(o.blockSize) } : {}), noVerify: !o.verify, allowFloat: Boolean(o.allowFloat), threads: o.threads, weightType: o.weightType, lutGemm: o.lutGemm, attention: o.attention,
          parity: { windows: o.parityWindows, prompts: o.parityPrompts, newTokens: o.parityTokens },
        });
        printLanguageModelExport(r);
        return;
      }
      const format = o.format ?? 'qdq';
      if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new InputError(`--format ${format}: '${o.from}' is an image-model run; its formats are ${EXPORT_FORMATS.join(', ')}`);
      const r = await exportRun({ from: o.from, out: o.out, json: o.json, format, noVerify: !o.verify, weightType: o.weightType, limit: o.limit, threads: o.threads });
      const p = r.parity;
      console.log(
        `${r.format}: ${r.out} (${r.file_bytes} bytes; weights ${r.weight_ratio.toFixed(2)}x smaller than fp32${r.format === 'qdq' ? `, 8-bit codes as ${r.weight_type}: ${r.weight_type_reason}` : ''}); ` +
          `agreement ${(p.argmax_agreement * 100).toFixed(2)}%, accuracy ${(p.exported_accuracy * 100).toFixed(2)}% vs ${(p.qat_accuracy * 100).toFixed(2)}% fake-quant, ` +
          `max |logit diff| ${p.max_abs_logit_difference.toPrecision(3)}${r.verified ? '' : ' (not verified)'}`,
      );
      const i = r.integer_reference;
      if ('samples' in i) {
        console.log(
          `integer reference evaluator vs ORT's integer kernels (${i.samples} images): ${i.first_mismatch ? `first mismatch at node '${displayName(i.first_mismatch)}'` : 'codes match'} ` +
            `(${i.off_by_one} of ${i.elements} one step off from float requantization), predictions agree ${(i.argmax_agreement * 100).toFixed(1)}%`,
        );
      }
    });
}
