/**
 * Language-model export benchmark (issue 12): decode and prefill speed, file sizes and memory traffic of the
 * exported KV-cache decoders, every format timed in alternation in one process so that the ratios against fp32
 * are taken under the same load.
 *
 *   node --import tsx bench/lm-export.ts [--models default,25m] [--rounds 3] [--threads 2] [--prefill-reps 9]
 *     [--variants fp32,int4-a4,...] [--json bench/results/lm-export.json]
 *
 * --variants times a subset (fp32 is always in: every ratio is against it) and prints the table only; the
 * targets and the ternary sizes by block need every variant.
 *
 * Models: gpt with a bytes vocabulary and context 128, randomly initialised (the cost of a token does not depend
 * on the weights): `default` (4 layers, width 128, 0.84M parameters) and `25m` (8 layers, width 512, 4 heads,
 * 25.3M parameters). Each quantized variant is the model prepared for QAT with a language-model preset (no
 * training steps: the trained codes would have the same layout) and exported by buildLanguageModelDecoder:
 * - fp32: float MatMul;
 * - int4: w4a16-g32 as INT4 DequantizeLinear -> MatMul, fused by ORT into MatMulNBits (accuracy_level 0);
 * - matmulnbits: w4a16-g32 as MatMulNBits written directly (bits 4, block 32, accuracy_level 0); int4-a4: w4a8-g32
 *   with per-token-per-block int8 activations (block 32), which the export runs at accuracy_level 4;
 * - matmulnbits-g128, int4-a4-g128: the same two at weight group (and activation block) 128, torchao's int4
 *   weight-only default group; fewer scales per weight, so fewer per-block steps in the kernel;
 * - fp32-ops, int4-a4-ops: the same files with attention as standard ONNX ops (the others as `qat export` picks:
 *   fused GroupQueryAttention where the run allows it, lm-decoder.ts chooseAttention);
 * - w8a8-qdq: w8a8 on MatMulIntegerToFloat (per-token activation scales; weights stored as `qat export`'s
 *   --weight-type auto picks on this CPU: int8 (u8s8) with VNNI/AMX, else uint8 (u8u8));
 * - w8a8-nbits8: 8-bit per-channel weights as MatMulNBits bits 8, block 256, accuracy_level 4 (the kernel
 *   quantizes A to int8 per row per block itself, so no activation quantizer is in the graph);
 * - ternary-nbits2: b158 as MatMulNBits bits 2 (codes {1, 2, 3} around zero point 2), block 256, accuracy_level 0;
 *   ternary-nbits2-a4: the same file at accuracy_level 4; ternary-nbits2-lut: accuracy_level 0 with ORT's
 *   LUT kernel (session option mlas.use_lut_gemm = 1, T-MAC style); ternary-qdq: b158 codes on
 *   MatMulIntegerToFloat (same weight storage).
 * Decode: batch 1, a 64-token prompt (prefill), then 64 new tokens, the context 128 exactly full; decode tokens/s
 * counts the 63 single-token steps after the prompt's logits. Each variant generates its sequence in one turn,
 * the variants in turn, --rounds times (median; one warm-up round first). Prefill:
 * 8 x 128 tokens from an empty cache, the variants in turn, --prefill-reps times each. Sizes: the whole encoded
 * file and its initializer bytes per tensor kind (src/inspect/tensor-kinds.ts), against fp32; ternary also at
 * blocks 32 and 128, as the b158 preset stores it (token table and head int8 rows) and with those ternary too
 * (sizes only). Bytes read per decode token: the weights, scales
 * and norms every token reads (the token and position tables contribute one row, left out); GB/s implied =
 * bytes per token x decode tokens/s, against this machine's copy bandwidth (a 256 MB Float32Array copied with
 * TypedArray.set, read + write bytes, best of 5).
 */
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import '../src/ops';
import '../src/quant';
import { emptyPast, decoderLayoutOf } from '../src/generate/decoder-layout';
import { fileSessionOptions, onesMask, positionsTensor } from '../src/generate/generator';
import { argmax } from '../src/generate/index';
import { KvCacheGenerator } from '../src/generate/kv-cache-generator';
import { buildLanguageModelDecoder, LmExportFormat } from '../src/export/lm-decoder';
import { INT4_SESSION_CONFIG } from '../src/export/export-language-model';
import { resolveWeightType } from '../src/export/weight-type';
import { checkFusion, FusionReport } from '../src/export/lm-fusion-check';
import { bytesByKind, tensorKinds } from '../src/inspect/tensor-kinds';
import { Graph } from '../src/ir/graph';
import { DType } from '../src/ir/dtype';
import { foldedConstant } from '../src/ir/folded-constant';
import { gpt } from '../src/models/transformers';
import { Model } from '../src/models/model';
import { encodeModel } from '../src/onnx/model-io';
import { presetConfig, QatConfig } from '../src/quant/presets';
import { prepareLanguageModelQat } from '../src/quant/qat';
import { runMain, writeJson } from './lib/cli';
import { loadStr, median, printTable } from './lib/timing';

const CONTEXT = 128;
const PROMPT_TOKENS = 64;
const NEW_TOKENS = 64;
const PREFILL = { rows: 8, tokens: 128 };

const MODELS = {
  default: { layers: 4, heads: 4, dim: 128 },
  '25m': { layers: 8, heads: 4, dim: 512 },
} as const;
type ModelName = keyof typeof MODELS;

interface Variant {
  name: string;
  /** LM preset the model is prepared with (null: fp32), or a custom config. */
  preset: string | null;
  config?: QatConfig;
  format: LmExportFormat;
  /** Rewrite every MatMulNBits to this accuracy_level. */
  accuracyLevel?: 0 | 4;
  sessionConfig?: Record<string, string>;
  /** Same file as another variant (only the session differs). */
  sameFileAs?: string;
  kernel: string;
  /** Decoder attention (default: what `qat export` picks, `--attention auto`). */
  attention?: 'ops';
}

/** 8-bit per-channel weights with float activations: MatMulNBits accuracy_level 4 quantizes A itself. */
const W8_WEIGHT_ONLY: QatConfig = { ...presetConfig('w8a8', 'language-model'), activation: { bits: 16, method: 'absmax', granularity: 'per-token' } };

/** w4a8-g32 with per-token-per-block int8 activations (block = the weight group): the export runs them at MatMulNBits accuracy_level 4 (lm-level4.ts). */
const W4A8_BLOCKED: QatConfig = { ...presetConfig('w4a8-g32', 'language-model'), activation: { ...presetConfig('w4a8-g32', 'language-model').activation, groupSize: 32 } };

/** A 4-bit config at another weight group (torchao's int4 weight-only default is 128); `blocked`: activations per token per block of the same size. */
function fourBitAt(group: number, blocked: boolean): QatConfig {
  const preset = presetConfig(blocked ? 'w4a8-g32' : 'w4a16-g32', 'language-model');
  return { ...preset, weight: { ...preset.weight, groupSize: group }, activation: blocked ? { ...preset.activation, groupSize: group } : preset.activation };
}

/**
 * A per-token-per-block config whose block is wider than a head: the attention output is quantized per head
 * (rows of one head's width), so the output projection takes blocks of the head size (weights and inputs alike,
 * so that it still runs at accuracy_level 4). The default gpt's heads are 32 wide; the 25M one's 128.
 */
function narrowBlocksForHeads(config: QatConfig, model: Model): QatConfig {
  const arch = model.lm!.arch!;
  const head = arch.dim / arch.heads;
  const block = config.activation.groupSize;
  if (block === undefined || block <= head) return config;
  return { ...config, overrides: [...config.overrides, { match: '*attn.proj*', weight: { groupSize: head }, activation: { groupSize: head } }] };
}

/** The qdq variants' weight storage: what `qat export --weight-type auto` picks on this CPU. */
const QDQ_WEIGHTS = resolveWeightType('auto');
const QDQ_KERNEL = `MatMulIntegerToFloat ${QDQ_WEIGHTS.type === 'int8' ? 'u8s8' : 'u8u8'}`;

const VARIANTS: Variant[] = [
  { name: 'fp32', preset: null, format: 'fp32', kernel: 'MatMul (fp32)' },
  { name: 'int4', preset: 'w4a16-g32', format: 'int4', sessionConfig: INT4_SESSION_CONFIG, kernel: 'INT4 DQ -> MatMul fused to MatMulNBits bits 4 g32, accuracy_level 0' },
  { name: 'matmulnbits', preset: 'w4a16-g32', format: 'matmulnbits', kernel: 'MatMulNBits bits 4 g32, accuracy_level 0' },
  { name: 'int4-a4', preset: 'w4a8-g32-blocked', config: W4A8_BLOCKED, format: 'matmulnbits', kernel: 'MatMulNBits bits 4 g32, accuracy_level 4 (w4a8: int8 A per row per block, as trained)' },
  { name: 'matmulnbits-g128', preset: 'w4a16-g128', config: fourBitAt(128, false), format: 'matmulnbits', kernel: 'MatMulNBits bits 4 g128, accuracy_level 0' },
  { name: 'int4-a4-g128', preset: 'w4a8-g128-blocked', config: fourBitAt(128, true), format: 'matmulnbits', kernel: 'MatMulNBits bits 4 g128, accuracy_level 4 (w4a8: int8 A per row per block of 128, as trained)' },
  { name: 'fp32-ops', preset: null, format: 'fp32', attention: 'ops', kernel: 'MatMul (fp32), attention as ONNX ops' },
  { name: 'int4-a4-ops', preset: 'w4a8-g32-blocked', config: W4A8_BLOCKED, format: 'matmulnbits', attention: 'ops', kernel: 'MatMulNBits bits 4 g32, accuracy_level 4, attention as ONNX ops' },
  { name: 'w8a8-qdq', preset: 'w8a8', format: 'qdq', kernel: `${QDQ_KERNEL}, per-token scales` },
  { name: 'w8a8-nbits8', preset: 'w8-weights', config: W8_WEIGHT_ONLY, format: 'matmulnbits', accuracyLevel: 4, kernel: 'MatMulNBits bits 8 block 256, accuracy_level 4 (int8 A per row per block)' },
  { name: 'ternary-nbits2', preset: 'b158', format: 'matmulnbits', kernel: 'MatMulNBits bits 2 block 256, accuracy_level 0' },
  { name: 'ternary-nbits2-a4', preset: 'b158', format: 'matmulnbits', accuracyLevel: 4, kernel: 'MatMulNBits bits 2 block 256, accuracy_level 4' },
  { name: 'ternary-nbits2-lut', preset: 'b158', format: 'matmulnbits', sameFileAs: 'ternary-nbits2', sessionConfig: { 'mlas.use_lut_gemm': '1' }, kernel: 'MatMulNBits bits 2 block 256, LUT GEMM (mlas.use_lut_gemm)' },
  { name: 'ternary-qdq', preset: 'b158', format: 'qdq', kernel: `${QDQ_KERNEL} (ternary codes)` },
];

/** The accuracy_level 0 variant with the same weight codes as `v`, where `v` only changes the kernel. */
function exactOf(v: Variant): string | undefined {
  if (v.name === 'ternary-nbits2-lut' || v.name === 'ternary-nbits2-a4') return 'ternary-nbits2';
  return undefined;
}

/** The variants named by --variants (fp32 first: every ratio is against it), or all of them. */
function selectVariants(list: string | undefined): Variant[] {
  if (!list) return VARIANTS;
  const names = new Set(['fp32', ...list.split(',').map((n) => n.trim()).filter(Boolean)]);
  for (const n of names) if (!VARIANTS.some((v) => v.name === n)) throw new Error(`--variants: unknown variant '${n}'; valid: ${VARIANTS.map((v) => v.name).join(', ')}`);
  const chosen = VARIANTS.filter((v) => names.has(v.name));
  for (const v of chosen) if (v.sameFileAs && !names.has(v.sameFileAs)) throw new Error(`--variants: '${v.name}' runs the file of '${v.sameFileAs}'; name both`);
  return chosen;
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected an integer >= 1, got '${v}'`);
  return n;
}

/** Copy bandwidth of this machine: bytes read + written per second by TypedArray.set over 256 MB, best of 5. */
function copyBandwidth(): number {
  const n = 64 * 1024 * 1024;
  const src = new Float32Array(n).fill(1);
  const dst = new Float32Array(n);
  let best = Infinity;
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    dst.set(src);
    const ms = performance.now() - t;
    if (i > 0) best = Math.min(best, ms);
  }
  return (2 * n * 4) / (best / 1000);
}

function parameterCount(model: Model): number {
  return model.params.reduce((s, p) => s + model.graph.initializers.get(p)!.size, 0);
}

function withAccuracyLevel(graph: Graph, level: 0 | 4): Graph {
  for (const n of graph.nodes) if (n.opType === 'MatMulNBits') n.attrs.accuracy_level = { kind: 'int', value: level };
  return graph;
}

/**
 * Bytes of per-block scales a file stores compressed (ConstantOfShape of one value, or Expand of one per row:
 * matmul-nbits.ts) beyond what it stores: ORT folds them to full [N, blocks] tensors at load, and decode reads those.
 */
function filledScaleBytes(graph: Graph): number {
  const producers = graph.producers();
  const scaleInputs = new Set(graph.nodes.filter((n) => n.opType === 'MatMulNBits' || n.opType === 'GatherBlockQuantized').map((n) => n.inputs[2]));
  let bytes = 0;
  for (const name of scaleInputs) {
    const p = producers.get(name);
    const folded = p ? foldedConstant(graph, producers, name) : undefined;
    if (!p || !folded) continue;
    const storedFloats = p.inputs.map((i) => graph.initializers.get(i)).filter((t) => t?.dtype === DType.FLOAT).reduce((a, t) => a + t!.size, 0);
    bytes += 4 * (folded.size - storedFloats);
  }
  return bytes;
}

interface Built {
  variant: Variant;
  file: string;
  attention: 'ops' | 'fused';
  bytes: number;
  kinds: Record<string, number>;
  bytesPerToken: number;
  fusion?: FusionReport;
  session: ort.InferenceSession;
  generator: KvCacheGenerator;
}

async function build(fp32: Model, name: ModelName, dir: string, threads: number, variants: Variant[]): Promise<{ built: Built[]; ternaryBlocks?: Record<string, number>; allTernaryBlocks?: Record<string, number> }> {
  const prepared = new Map<string, Model>();
  const modelFor = (v: Variant): Model => {
    if (!v.preset) return fp32;
    if (!prepared.has(v.preset)) prepared.set(v.preset, prepareLanguageModelQat(fp32, narrowBlocksForHeads(v.config ?? presetConfig(v.preset, 'language-model'), fp32), v.preset));
    return prepared.get(v.preset)!;
  };
  const built: Built[] = [];
  const files = new Map<string, Omit<Built, 'session' | 'generator' | 'variant' | 'fusion'>>();
  for (const v of variants) {
    let f = v.sameFileAs ? files.get(v.sameFileAs) : undefined;
    if (!f) {
      const exported = await buildLanguageModelDecoder(modelFor(v), { format: v.format, threads, attention: v.attention ?? 'auto', ...(v.format === 'qdq' ? { weightType: QDQ_WEIGHTS.type } : {}) });
      if (v.accuracyLevel !== undefined) withAccuracyLevel(exported.graph, v.accuracyLevel);
      const bytes = encodeModel(exported.graph);
      const file = path.join(dir, `${name}-${v.name}.onnx`);
      fs.writeFileSync(file, bytes);
      const kinds = bytesByKind(tensorKinds(exported.graph));
      f = { file, attention: exported.attention.used, bytes: bytes.byteLength, kinds, bytesPerToken: kinds.weights + kinds.scales + kinds.norms + filledScaleBytes(exported.graph) };
      files.set(v.name, f);
    }
    const fusion = v.format === 'fp32' ? undefined : await checkFusion(f.file, v.sessionConfig);
    const session = await ort.InferenceSession.create(f.file, fileSessionOptions(threads, v.sessionConfig));
    const arch = fp32.lm!.arch!;
    const layout = decoderLayoutOf(session, { heads: arch.heads, headSize: arch.dim / arch.heads });
    const generator = new KvCacheGenerator(session, layout, CONTEXT, arch.vocabSize);
    built.push({ variant: v, ...f, fusion, session, generator });
    console.log(`${name} ${v.name}: ${(f.bytes / 1e6).toFixed(2)} MB, attention ${f.attention}${fusion ? `, ORT runs ${fusion.matmul_nbits} MatMulNBits (levels ${fusion.accuracy_levels.join(',') || '-'}), ${fusion.integer_matmuls} integer MatMuls, ${fusion.float_matmuls.length} float weight MatMuls` : ''}`);
  }
  if (!prepared.has('b158')) return { built };
  // Ternary's size by block (each row's absmean scale is stored once whatever the block, so the sizes differ by
  // the Expand shapes only). The b158 preset keeps the token table and head as int8 rows (as BitNet);
  // `allTernary` ternarizes them too.
  const b158 = presetConfig('b158', 'language-model');
  const allTernary = prepareLanguageModelQat(fp32, { ...b158, tokenLayers: undefined }, 'b158');
  const ternaryBlocks: Record<string, number> = {};
  const allTernaryBlocks: Record<string, number> = {};
  for (const block of [32, 128, 256]) {
    for (const [sizes, model] of [[ternaryBlocks, prepared.get('b158')!], [allTernaryBlocks, allTernary]] as const) {
      const exported = await buildLanguageModelDecoder(model, { format: 'matmulnbits', threads, blockSize: block });
      sizes[String(block)] = encodeModel(exported.graph).byteLength;
    }
  }
  return { built, ternaryBlocks, allTernaryBlocks };
}

/** One decode round: every variant prefills the prompt, then they take turns token by token. */
async function decodeRound(built: Built[], prompt: number[]): Promise<{ prefillMs: number[]; decodeMs: number[]; tokens: number[][] }> {
  const prefillMs: number[] = [];
  const decodeMs = built.map(() => 0);
  const tokens: number[][] = built.map(() => []);
  // Each variant generates its whole sequence in one turn, the variants in turn: its weights stay as cached as
  // in a user's generation (alternating token by token evicts every file's weights between its tokens, which
  // penalises the quantized files whose weights would stay in the last-level cache).
  for (const [i, b] of built.entries()) {
    let t = performance.now();
    let logits = await b.generator.start([prompt]);
    prefillMs.push(performance.now() - t);
    let last = argmax(logits.data, 0, logits.vocab);
    tokens[i].push(last);
    t = performance.now();
    for (let step = 1; step < NEW_TOKENS; step++) {
      logits = await b.generator.next([last]);
      last = argmax(logits.data, 0, logits.vocab);
      tokens[i].push(last);
    }
    decodeMs[i] = performance.now() - t;
  }
  return { prefillMs, decodeMs, tokens };
}

/** Prefill of PREFILL.rows x PREFILL.tokens from an empty cache, logits only fetched. */
async function prefillOnce(b: Built, ids: ort.Tensor): Promise<number> {
  const layout = b.generator.layout;
  const feeds: Record<string, ort.Tensor> = { [layout.inputIds]: ids, ...emptyPast(layout, PREFILL.rows) };
  feeds[layout.attentionMask!] = onesMask(PREFILL.rows, PREFILL.tokens);
  feeds[layout.positionIds!] = positionsTensor(PREFILL.rows, 0, PREFILL.tokens, layout.positionIdsSingleRow);
  const t = performance.now();
  await b.session.run(feeds, [layout.logits]);
  return performance.now() - t;
}

runMain(async () => {
  const { values } = parseArgs({
    options: {
      models: { type: 'string', default: 'default,25m' },
      rounds: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      'prefill-reps': { type: 'string', default: '9' },
      variants: { type: 'string' },
      json: { type: 'string', default: 'bench/results/lm-export.json' },
    },
  });
  const names = values.models!.split(',') as ModelName[];
  for (const n of names) if (!(n in MODELS)) throw new Error(`--models: unknown model '${n}'; valid: ${Object.keys(MODELS).join(', ')}`);
  const rounds = positiveInt('--rounds', values.rounds!);
  const threads = positiveInt('--threads', values.threads!);
  const prefillReps = positiveInt('--prefill-reps', values['prefill-reps']!);
  const variants = selectVariants(values.variants);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatkit-bench-lm-export-'));
  const bandwidth = copyBandwidth();
  console.log(`copy bandwidth: ${(bandwidth / 1e9).toFixed(1)} GB/s (read + write, 256 MB Float32Array.set, best of 5)`);
  console.log(`qdq weight codes: ${QDQ_WEIGHTS.type} (${QDQ_WEIGHTS.reason})`);
  const results: Record<string, unknown> = {};
  const loadBefore = os.loadavg();
  try {
    for (const name of names) {
      const fp32 = gpt({ vocabSize: 256, ...MODELS[name], context: CONTEXT, seed: 0 });
      const parameters = parameterCount(fp32);
      console.log(`\n${name}: gpt ${MODELS[name].layers} layers, width ${MODELS[name].dim}, ${MODELS[name].heads} heads, context ${CONTEXT}, vocabulary 256, ${(parameters / 1e6).toFixed(2)}M parameters`);
      const { built, ternaryBlocks, allTernaryBlocks } = await build(fp32, name, dir, threads, variants);
      // A fixed prompt: the bytes of a sentence, repeated to 64 tokens.
      const text = Buffer.from('Call me Ishmael. Some years ago, never mind how long precisely, having little or no money. ');
      const prompt = Array.from(text.subarray(0, PROMPT_TOKENS));
      const perRound: { prefillMs: number[]; decodeMs: number[] }[] = [];
      let tokens: number[][] = [];
      const modelLoad = os.loadavg();
      for (let round = 0; round <= rounds; round++) {
        const r = await decodeRound(built, prompt);
        if (round > 0) perRound.push(r); // round 0 warms up
        tokens = r.tokens;
      }
      const ids = new ort.Tensor('int64', BigInt64Array.from({ length: PREFILL.rows * PREFILL.tokens }, (_, i) => BigInt(text[i % text.length])), [PREFILL.rows, PREFILL.tokens]);
      const prefill: number[][] = built.map(() => []);
      for (const b of built) await prefillOnce(b, ids); // warm-up
      for (let rep = 0; rep < prefillReps; rep++) for (const [i, b] of built.entries()) prefill[i].push(await prefillOnce(b, ids));
      const rows = built.map((b, i) => {
        const decodeMs = median(perRound.map((r) => r.decodeMs[i]));
        const decodeTps = ((NEW_TOKENS - 1) * 1000) / decodeMs;
        const prefillMs = median(prefill[i]);
        return {
          variant: b.variant.name,
          kernel: b.variant.kernel,
          attention: b.attention,
          session_config: b.variant.sessionConfig ?? {},
          file_bytes: b.bytes,
          tensor_bytes: b.kinds,
          decode_tokens_per_second: decodeTps,
          decode_ms_per_token: decodeMs / (NEW_TOKENS - 1),
          prompt_prefill_ms: median(perRound.map((r) => r.prefillMs[i])),
          prefill_8x128_ms: prefillMs,
          prefill_tokens_per_second: (PREFILL.rows * PREFILL.tokens * 1000) / prefillMs,
          weight_bytes_per_token: b.bytesPerToken,
          implied_gb_per_second: (b.bytesPerToken * decodeTps) / 1e9,
          fraction_of_copy_bandwidth: (b.bytesPerToken * decodeTps) / bandwidth,
          greedy_tokens_equal_fp32: tokens[i].filter((t, j) => t === tokens[0][j]).length,
          // A variant that changes only the kernel (LUT, accuracy_level 4) against the exact kernel on the same codes.
          ...(exactOf(b.variant) ? { greedy_tokens_equal_exact_kernel: { variant: exactOf(b.variant)!, tokens: tokens[i].filter((t, j) => t === tokens[built.findIndex((x) => x.variant.name === exactOf(b.variant))][j]).length } } : {}),
          ...(b.fusion ? { fusion: b.fusion } : {}),
        };
      });
      const base = rows[0];
      const withRatios = rows.map((r) => ({
        ...r,
        size_ratio_vs_fp32: base.file_bytes / r.file_bytes,
        decode_speedup_vs_fp32: r.decode_tokens_per_second / base.decode_tokens_per_second,
        prefill_speedup_vs_fp32: r.prefill_tokens_per_second / base.prefill_tokens_per_second,
      }));
      printTable([
        ['variant', 'MB', 'size x', 'decode tok/s', 'decode x', 'prefill 8x128 ms', 'prefill x', 'MB read/token', 'GB/s', '% of copy bw'],
        ...withRatios.map((r) => [
          r.variant,
          (r.file_bytes / 1e6).toFixed(2),
          r.size_ratio_vs_fp32.toFixed(2),
          r.decode_tokens_per_second.toFixed(1),
          r.decode_speedup_vs_fp32.toFixed(2),
          r.prefill_8x128_ms.toFixed(1),
          r.prefill_speedup_vs_fp32.toFixed(2),
          (r.weight_bytes_per_token / 1e6).toFixed(2),
          r.implied_gb_per_second.toFixed(2),
          (100 * r.fraction_of_copy_bandwidth).toFixed(1),
        ]),
      ]);
      if (variants.length < VARIANTS.length || !ternaryBlocks || !allTernaryBlocks) {
        // A subset (--variants): the table only; the targets need every variant.
        results[name] = { model: { kind: 'gpt', ...MODELS[name], context: CONTEXT, vocabSize: 256, parameters }, loadavg_at_start: modelLoad, rows: withRatios };
        for (const b of built) await b.session.release();
        continue;
      }
      const sizesOf = (blocks: Record<string, number>) => Object.fromEntries(Object.entries(blocks).map(([b, bytes]) => [b, { file_bytes: bytes, size_ratio_vs_fp32: base.file_bytes / bytes }]));
      const ternarySizes = sizesOf(ternaryBlocks);
      const allTernarySizes = sizesOf(allTernaryBlocks);
      const line = (sizes: typeof ternarySizes) => Object.entries(sizes).map(([b, s]) => `${b}: ${s.size_ratio_vs_fp32.toFixed(2)}x`).join(', ');
      console.log(`ternary (MatMulNBits bits 2; b158's table and head int8 rows) size vs fp32 by block: ${line(ternarySizes)}`);
      console.log(`ternary with the table and head ternary too (tokenLayers off) by block: ${line(allTernarySizes)}`);
      const get = (v: string) => withRatios.find((r) => r.variant === v)!;
      const best8 = [get('w8a8-qdq'), get('w8a8-nbits8')].sort((a, b) => b.decode_tokens_per_second - a.decode_tokens_per_second)[0];
      // 4-bit weights: the QDQ file, MatMulNBits at level 0 (a w4a16 run), and at level 4 (a w4a8 run's kernel).
      const fastest = (names: string[]) => names.map(get).sort((a, b) => b.decode_tokens_per_second - a.decode_tokens_per_second)[0];
      const best4 = fastest(['int4', 'matmulnbits', 'int4-a4', 'matmulnbits-g128', 'int4-a4-g128']);
      const best4g32 = fastest(['int4', 'matmulnbits', 'int4-a4']);
      const bestTernary = withRatios.filter((r) => r.variant.startsWith('ternary')).sort((a, b) => b.decode_tokens_per_second - a.decode_tokens_per_second)[0];
      const targets = {
        int4_decode_2_5x: { value: best4.decode_speedup_vs_fp32, variant: best4.variant, met: best4.decode_speedup_vs_fp32 >= 2.5 },
        int4_g32_decode_2_5x: { value: best4g32.decode_speedup_vs_fp32, variant: best4g32.variant, met: best4g32.decode_speedup_vs_fp32 >= 2.5 },
        w8a8_decode_1_5x: { value: best8.decode_speedup_vs_fp32, variant: best8.variant, met: best8.decode_speedup_vs_fp32 >= 1.5 },
        w8a8_prefill_1_5x: { value: Math.max(get('w8a8-qdq').prefill_speedup_vs_fp32, get('w8a8-nbits8').prefill_speedup_vs_fp32), met: Math.max(get('w8a8-qdq').prefill_speedup_vs_fp32, get('w8a8-nbits8').prefill_speedup_vs_fp32) >= 1.5 },
        int4_g32_size: { value: get('int4').size_ratio_vs_fp32, bound: name === '25m' ? 6 : 5, met: get('int4').size_ratio_vs_fp32 >= (name === '25m' ? 6 : 5) },
        ternary_g32_size_8x: { value: ternarySizes['32'].size_ratio_vs_fp32, met: ternarySizes['32'].size_ratio_vs_fp32 >= 8 },
        ternary_block128_size_10x: { value: ternarySizes['128'].size_ratio_vs_fp32, met: ternarySizes['128'].size_ratio_vs_fp32 >= 10 },
      };
      console.log(`targets: ${Object.entries(targets).map(([k, t]) => `${k} ${t.value.toFixed(2)}${t.met ? ' met' : ' NOT met'}`).join('; ')}`);
      console.log(`fastest 4-bit decode: ${best4.variant} (at g32: ${best4g32.variant}); fastest 8-bit decode: ${best8.variant}; fastest ternary decode: ${bestTernary.variant}`);
      results[name] = {
        model: { kind: 'gpt', ...MODELS[name], context: CONTEXT, vocabSize: 256, parameters, init: 'random (seed 0), QAT-prepared without training' },
        loadavg_at_start: modelLoad,
        rows: withRatios,
        ternary_sizes_by_block: ternarySizes,
        all_ternary_sizes_by_block: allTernarySizes,
        fastest_4bit_decode: best4.variant,
        fastest_4bit_g32_decode: best4g32.variant,
        fastest_8bit_decode: best8.variant,
        fastest_ternary_decode: bestTernary.variant,
        targets,
      };
      for (const b of built) await b.session.release();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const loadAfter = os.loadavg();
  console.log(`loadavg before ${loadStr(loadBefore)}, after ${loadStr(loadAfter)} (the machine is shared: absolute figures are contended; compare ratios within this run)`);
  writeJson(values.json!, {
    date: new Date().toISOString(),
    command: `node --import tsx bench/lm-export.ts ${process.argv.slice(2).join(' ')}`.trim(),
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    qdq_weight_type: QDQ_WEIGHTS,
    threads,
    rounds,
    prefill_reps: prefillReps,
    decode: { batch: 1, prompt_tokens: PROMPT_TOKENS, new_tokens: NEW_TOKENS, context: CONTEXT },
    prefill: PREFILL,
    copy_bandwidth_bytes_per_second: bandwidth,
    loadavg_before: loadBefore,
    loadavg_after: loadAfter,
    models: results,
  });
});
