import { DType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { emitFusableGelu, emitGelu } from '../ops/activation.js';
import { ModelBuilder, TokenInputSpec } from './builder.js';
import { Model, TransformerArch } from './model.js';

/** Where a KV-cache decoder keeps its cache for one layer: past inputs and present outputs, [B, H, P, D]. */
export interface LayerCache {
  pastKey: string;
  pastValue: string;
  presentKey: string;
  presentValue: string;
}

/** Graph names of the KV-cache decoder's inputs and outputs (the Hugging Face / ORT GenAI convention). */
export const decoderNames = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  attentionMask: 'attention_mask',
  pastKey: (layer: number) => `past_key_values.${layer}.key`,
  pastValue: (layer: number) => `past_key_values.${layer}.value`,
  presentKey: (layer: number) => `present.${layer}.key`,
  presentValue: (layer: number) => `present.${layer}.value`,
  /** Fused-attention decoders: the keys and values a step appends, [B, T, heads x head_size]. */
  newKey: (layer: number) => `new_key_values.${layer}.key`,
  newValue: (layer: number) => `new_key_values.${layer}.value`,
};

/**
 * How a decoder computes attention: 'ops' as standard ONNX ops (Concat of the cache, MatMul, Softmax: the training
 * graph's own ops, which a quantized cache and qdq's per-head integer products rewrite), or 'fused' as one
 * com.microsoft GroupQueryAttention per layer (ORT contrib op) over q, k, v split from the qkv projection.
 */
export const DECODER_ATTENTIONS = ['ops', 'fused'] as const;
export type DecoderAttention = (typeof DECODER_ATTENTIONS)[number];

export interface TransformerBuilderOptions {
  /** Build the generation form: position_ids, attention_mask [B, P+T] and past/present key-value tensors. */
  decoder?: { layers: number; heads: number; headSize: number; attention?: DecoderAttention };
}

export interface AttentionOptions {
  heads: number;
  name?: string;
  /** Biases on the qkv and output projections (GPT-2: yes; Llama: no). */
  bias?: boolean;
  /** Rotary position embedding on q and k (RoFormer, Su et al. 2021). */
  rope?: boolean;
  /** Std of the output projection's initialisation (GPT-2 scales residual projections by 1/sqrt(2 layers)). */
  outputStd?: number;
  /** Layer index: selects the KV-cache tensors in decoder form. */
  layer?: number;
}

const INIT_STD = 0.02;
const ROPE_BASE = 10000;

/**
 * Layers of decoder-only transformers on top of ModelBuilder: token and position embeddings, LayerNorm, RMSNorm,
 * linear layers on [B, T, C] (MatMul with a [in, out] weight, as torch.onnx.export writes nn.Linear), causal
 * multi-head attention with an optional rotary embedding and KV cache, GELU, SiLU and a (tied) LM head.
 *
 * Shapes stay symbolic in B and T: positions are Range(0, T) from Shape(input_ids) and the causal mask is
 * built from positions (key position > query position), so the same graph runs at any batch and length,
 * and the decoder form differs only in where positions and keys come from.
 */
export class TransformerBuilder extends ModelBuilder {
  private tokenTable?: string;
  private positions?: string;
  private maskCache?: string;
  private ropeTables?: { cos: string; sin: string };
  private cacheLengths?: { seqlensK: string; total: string };
  private readonly decoder?: TransformerBuilderOptions['decoder'];
  readonly caches: LayerCache[] = [];
  readonly positionIds?: string;
  readonly attentionMask?: string;

  constructor(name: string, readonly spec: TokenInputSpec, seed = 0, options: TransformerBuilderOptions = {}) {
    super(name, spec, seed);
    this.decoder = options.decoder;
    if (this.decoder) {
      const { layers, heads, headSize } = this.decoder;
      this.positionIds = this.b.input(decoderNames.positionIds, DType.INT64, ['B', 'T']);
      this.attentionMask = this.b.input(decoderNames.attentionMask, DType.INT64, ['B', 'P+T']);
      for (let i = 0; i < layers; i++) {
        this.caches.push({
          pastKey: this.b.input(decoderNames.pastKey(i), DType.FLOAT, ['B', heads, 'P', headSize]),
          pastValue: this.b.input(decoderNames.pastValue(i), DType.FLOAT, ['B', heads, 'P', headSize]),
          presentKey: decoderNames.presentKey(i),
          presentValue: decoderNames.presentValue(i),
        });
      }
    }
  }

  /** Query positions: Range(0, T) [T] in training form, position_ids [B, T] in decoder form. */
  private queryPositions(): string {
    if (this.positionIds) return this.positionIds;
    if (!this.positions) {
      const b = this.b;
      const length = b.op1('Gather', [b.shapeOf(this.input), b.ints([1])], { axis: 0 });
      const t = b.squeeze(length, [0]);
      this.positions = b.op1('Range', [b.constant(0, DType.INT64), t, b.constant(1, DType.INT64)], {}, { name: 'positions', types: [{ dtype: DType.INT64, shape: ['T'] }] });
    }
    return this.positions;
  }

  /** Token embedding: Gather(table [V, C], ids). Its table is the one a tied LM head reuses. */
  embedding(dim: number, opts: { name?: string } = {}): string {
    const name = opts.name ?? 'wte';
    const table = this.normal(`${name}.weight`, [this.spec.vocabSize, dim], INIT_STD, false);
    this.tokenTable = table;
    this.current = this.b.op1('Gather', [table, this.input], { axis: 0 }, { name });
    return this.current;
  }

  /** Learned absolute positions (GPT-2): current + Gather(table [context, C], positions). */
  positionEmbedding(opts: { name?: string } = {}): string {
    const name = opts.name ?? 'wpe';
    const dim = this.b.shape(this.current).at(-1) as number;
    const table = this.normal(`${name}.weight`, [this.spec.context, dim], INIT_STD, false);
    const pos = this.b.op1('Gather', [table, this.queryPositions()], { axis: 0 }, { name });
    this.current = this.b.op1('Add', [this.current, pos], {}, { name: `${name}/add` });
    return this.current;
  }

  /** LayerNormalization over the last axis with a learned scale and shift (Ba et al. 2016). */
  layerNorm(opts: { x?: string; name?: string; epsilon?: number } = {}): string {
    const x = opts.x ?? this.current;
    const name = opts.name ?? this.unique('ln');
    const c = this.b.shape(x).at(-1) as number;
    const scale = this.fill(`${name}.weight`, [c], 1, 'param');
    const bias = this.fill(`${name}.bias`, [c], 0, 'param');
    this.current = this.b.op1('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: opts.epsilon ?? 1e-5 }, { name });
    return this.current;
  }

  /** RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * g, as Llama computes it. */
  rmsNorm(opts: { x?: string; name?: string; epsilon?: number } = {}): string {
    const x = opts.x ?? this.current;
    const name = opts.name ?? this.unique('rms');
    const b = this.b;
    const c = b.shape(x).at(-1) as number;
    const scale = this.fill(`${name}.weight`, [c], 1, 'param');
    const meanSquare = b.op1('ReduceMean', [b.mul(x, x)], { axes: [-1], keepdims: 1 }, { name: `${name}/mean_square` });
    const inv = b.reciprocal(b.sqrt(b.add(meanSquare, b.constant(opts.epsilon ?? 1e-5))));
    this.current = b.op1('Mul', [b.mul(x, inv), scale], {}, { name });
    return this.current;
  }

  /** nn.Linear on the last axis: MatMul(x, W [in, out]) (+ bias), W ~ N(0, std^2). */
  dense(outFeatures: number, opts: { x?: string; name?: string; bias?: boolean; std?: number } = {}): string {
    const x = opts.x ?? this.current;
    const name = opts.name ?? this.unique('dense');
    const inFeatures = this.b.shape(x).at(-1) as number;
    const w = this.normal(`${name}.weight`, [inFeatures, outFeatures], opts.std ?? INIT_STD, true);
    let y = this.b.op1('MatMul', [x, w], {}, { name: `${name}/MatMul` });
    if (opts.bias ?? true) {
      const bias = this.fill(`${name}.bias`, [outFeatures], 0, 'param');
      y = this.b.op1('Add', [y, bias], {}, { name: `${name}/Add` });
    }
    this.current = y;
    return y;
  }

  /** Exact (erf) GELU; the decoder form (inference only) in the form ORT fuses into one Gelu kernel. */
  gelu(x = this.current): string {
    this.current = this.decoder ? emitFusableGelu(this.b, x) : emitGelu(this.b, x, 'none');
    return this.current;
  }

  /** SiLU / swish: x * sigmoid(x). */
  silu(x = this.current): string {
    this.current = this.b.op1('Mul', [x, this.b.sigmoid(x)], {}, { name: this.unique('silu') });
    return this.current;
  }

  /** Cos/sin tables [context, D/2] of the rotary embedding, frequencies base^(-2i/D). */
  private rotaryTables(headSize: number): { cos: string; sin: string } {
    if (!this.ropeTables) {
      const half = headSize / 2;
      const cos = new Float32Array(this.spec.context * half);
      const sin = new Float32Array(this.spec.context * half);
      for (let p = 0; p < this.spec.context; p++) {
        for (let i = 0; i < half; i++) {
          const angle = p * Math.pow(ROPE_BASE, (-2 * i) / headSize);
          cos[p * half + i] = Math.cos(angle);
          sin[p * half + i] = Math.sin(angle);
        }
      }
      this.ropeTables = {
        cos: this.b.initializer('rope.cos', new Tensor(DType.FLOAT, [this.spec.context, half], cos)),
        sin: this.b.initializer('rope.sin', new Tensor(DType.FLOAT, [this.spec.context, half], sin)),
      };
    }
    return this.ropeTables;
  }

  /**
   * Rotary embedding of x [B, H, T, D] (or [B, T, H, D] with `tokensFirst`) in the rotate-half layout (GPT-NeoX,
   * Hugging Face Llama): with x = [x1, x2] along D, out = [x1 cos - x2 sin, x2 cos + x1 sin] at each token's position.
   */
  rope(x: string, name: string, tokensFirst = false): string {
    const b = this.b;
    const d = b.shape(x).at(-1) as number;
    if (d % 2 !== 0) throw new Error(`rope: head size ${d} must be even`);
    const tables = this.rotaryTables(d);
    if (tokensFirst && !this.positionIds) throw new Error('rope: the tokens-first layout is the decoder form\'s');
    const pos = this.queryPositions();
    // [T, D/2] (training form) or [B, 1, T, D/2] / [B, T, 1, D/2] (decoder form), broadcasting over heads.
    const pick = (table: string) => {
      const g = b.op1('Gather', [table, pos], { axis: 0 });
      return this.positionIds ? b.unsqueeze(g, [tokensFirst ? 2 : 1]) : g;
    };
    const [cos, sin] = [pick(tables.cos), pick(tables.sin)];
    const [x1, x2] = b.op('Split', [x, b.ints([d / 2, d / 2])], { axis: -1 }, { outputs: 2 });
    const first = b.sub(b.mul(x1, cos), b.mul(x2, sin));
    const second = b.add(b.mul(x2, cos), b.mul(x1, sin));
    return b.op1('Concat', [first, second], { axis: -1 }, { name });
  }

  /**
   * Additive mask broadcastable to the scores [B, H, T, K]: -inf where key position > query position (the
   * future) and, in decoder form, where attention_mask is 0 (padding); 0 elsewhere. Built once at [T, K] (or
   * [B, 1, T, K]) and shared by every layer: adding it costs one pass over the scores and its gradient is the
   * identity, where a Where(mask, -inf, scores) costs a broadcast select forward and another backward.
   */
  private additiveMask(): string {
    if (this.maskCache) return this.maskCache;
    const b = this.b;
    let hidden: string;
    if (!this.attentionMask) {
      const pos = this.queryPositions();
      hidden = b.greater(b.unsqueeze(pos, [0]), b.unsqueeze(pos, [1]));
    } else {
      const keyLength = b.squeeze(b.op1('Gather', [b.shapeOf(this.attentionMask), b.ints([1])], { axis: 0 }), [0]);
      const keyPositions = b.op1('Range', [b.constant(0, DType.INT64), keyLength, b.constant(1, DType.INT64)], {}, { types: [{ dtype: DType.INT64, shape: ['P+T'] }] });
      const queries = b.unsqueeze(this.queryPositions(), [1, 3]); // [B, 1, T, 1]
      const future = b.greater(keyPositions, queries); // [B, 1, T, P+T]
      const padding = b.equal(b.unsqueeze(this.attentionMask, [1, 2]), b.constant(0, DType.INT64)); // [B, 1, 1, P+T]
      hidden = b.op1('Or', [future, padding]);
    }
    this.maskCache = b.op1('Where', [hidden, b.constant(-Infinity), b.constant(0)], {}, { name: 'causal_mask' });
    return this.maskCache;
  }

  /**
   * Causal multi-head self-attention (Vaswani et al. 2017) with a fused qkv projection: split, heads as
   * [B, H, T, D], scores q k^T / sqrt(D) with the future set to -inf, softmax, weighted values, output
   * projection. In decoder form k and v are appended to the layer's past cache and returned as present.
   */
  attention(opts: AttentionOptions): string {
    const b = this.b;
    const x = this.current;
    const name = opts.name ?? this.unique('attn');
    const c = b.shape(x).at(-1) as number;
    const h = opts.heads;
    if (c % h !== 0) throw new Error(`attention '${name}': width ${c} is not divisible by ${h} heads`);
    const d = c / h;
    const qkv = this.dense(3 * c, { x, name: `${name}.qkv`, bias: opts.bias ?? true });
    if (this.decoder?.attention === 'fused') {
      const cache = this.caches[opts.layer ?? 0];
      if (!cache) throw new Error(`attention '${name}': decoder form needs a layer index below ${this.caches.length}`);
      return this.dense(c, { x: this.fusedAttention(qkv, cache, h, d, opts.rope ?? false, name, opts.layer ?? 0), name: `${name}.proj`, bias: opts.bias ?? true, std: opts.outputStd });
    }
    const parts = b.op('Split', [qkv, b.ints([c, c, c])], { axis: -1 }, { outputs: 3 });
    const heads = (v: string) => b.transpose(b.reshape(v, [0, 0, h, d]), [0, 2, 1, 3]);
    let [q, k, v] = parts.map(heads);
    if (opts.rope) {
      q = this.rope(q, `${name}/rope_q`);
      k = this.rope(k, `${name}/rope_k`);
    }
    if (this.decoder) {
      const cache = this.caches[opts.layer ?? 0];
      if (!cache) throw new Error(`attention '${name}': decoder form needs a layer index below ${this.caches.length}`);
      k = b.op1('Concat', [cache.pastKey, k], { axis: 2 }, { outputs: [cache.presentKey] });
      v = b.op1('Concat', [cache.pastValue, v], { axis: 2 }, { outputs: [cache.presentValue] });
      b.output(k);
      b.output(v);
    }
    // 1/sqrt(D) scales q ([B, H, T, D]) rather than the scores ([B, H, T, K], K >= D here).
    const scaledQ = b.mul(q, b.constant(1 / Math.sqrt(d)));
    const scores = b.add(b.matmul(scaledQ, b.transpose(k, [0, 1, 3, 2])), this.additiveMask());
    const probs = b.op1('Softmax', [scores], { axis: -1 }, { name: `${name}/softmax` });
    const merged = b.reshape(b.transpose(b.matmul(probs, v), [0, 2, 1, 3]), [0, 0, c]);
    return this.dense(c, { x: merged, name: `${name}.proj`, bias: opts.bias ?? true, std: opts.outputStd });
  }

  /**
   * GroupQueryAttention's cache lengths from attention_mask [B, P+T], once for all layers: seqlens_k = the number
   * of attended positions minus one per row (int32 [B]) and total_sequence_length = P+T (int32 scalar), as ORT
   * GenAI's decoders feed them. The op attends causally within the first seqlens_k + 1 positions of each row, so
   * a batch's padding must be on the right (the generators feed unpadded rows).
   */
  private gqaLengths(): { seqlensK: string; total: string } {
    if (this.cacheLengths) return this.cacheLengths;
    const b = this.b;
    const mask = this.attentionMask!;
    const attended = b.op1('ReduceSum', [mask, b.ints([1])], { keepdims: 0 });
    const seqlensK = b.op1('Cast', [b.sub(attended, b.constant(1, DType.INT64))], { to: DType.INT32 }, { name: 'attention/seqlens_k' });
    const total = b.op1('Cast', [b.squeeze(b.op1('Gather', [b.shapeOf(mask), b.ints([1])], { axis: 0 }), [0])], { to: DType.INT32 }, { name: 'attention/total_sequence_length' });
    this.cacheLengths = { seqlensK, total };
    return this.cacheLengths;
  }

  /**
   * One layer's decoder attention as com.microsoft GroupQueryAttention (ContribOperators.md) on q, k, v [B, T, C]
   * split from the fused projection, num_heads = kv_num_heads (multi-head attention), scale 1/sqrt(D); llama's
   * rotary embedding is applied to q and k before the op by the training graph's own ops (in [B, T, H, D]), so
   * the keys the step appends are graph values. Past and present are [B, H, P, D] and [B, H, P+T, D], the inputs
   * and outputs of the 'ops' form; the op also accepts a past buffer longer than P (a cache preallocated to the
   * context, right-padded: it reads the first P rows of each head, P = seqlens_k + 1 - T). The keys and values
   * this step appends are outputs too (new_key_values.{i}.key/value, [B, T, C]), so a generator can keep such a
   * buffer and fetch only them, instead of the whole present cache (kv-cache-generator.ts).
   */
  private fusedAttention(qkv: string, cache: LayerCache, heads: number, headSize: number, rope: boolean, name: string, layer: number): string {
    const b = this.b;
    const c = heads * headSize;
    const { seqlensK, total } = this.gqaLengths();
    let [q, k, v] = b.op('Split', [qkv, b.ints([c, c, c])], { axis: -1 }, { outputs: 3 });
    if (rope) {
      const rotate = (x: string, tag: string) => b.reshape(this.rope(b.reshape(x, [0, 0, heads, headSize]), `${name}/rope_${tag}`, true), [0, 0, c]);
      q = rotate(q, 'q');
      k = rotate(k, 'k');
    }
    k = b.op1('Identity', [k], {}, { outputs: [decoderNames.newKey(layer)] });
    v = b.op1('Identity', [v], {}, { outputs: [decoderNames.newValue(layer)] });
    b.output(k);
    b.output(v);
    const shape = b.shape(qkv);
    const cacheType = { dtype: DType.FLOAT, shape: [shape[0], heads, 'P+T', headSize] };
    const [out, presentKey, presentValue] = b.op(
      'GroupQueryAttention',
      [q, k, v, cache.pastKey, cache.pastValue, seqlensK, total],
      { num_heads: heads, kv_num_heads: heads, scale: 1 / Math.sqrt(headSize) },
      { domain: 'com.microsoft', name: `${name}/group_query_attention`, outputs: [`${name}/attention_out`, cache.presentKey, cache.presentValue], types: [{ dtype: DType.FLOAT, shape: [shape[0], shape[1], c] }, cacheType, cacheType] },
    );
    b.output(presentKey);
    b.output(presentValue);
    return out;
  }

  /** Logits [B, T, V]: MatMul with the token table transposed (tied, one parameter) or with a head of its own. */
  lmHead(opts: { tied?: boolean; name?: string } = {}): string {
    const b = this.b;
    if (opts.tied ?? true) {
      if (!this.tokenTable) throw new Error('lmHead: a tied head needs embedding() first');
      this.current = b.op1('MatMul', [this.current, b.transpose(this.tokenTable, [1, 0])], {}, { name: 'lm_head/MatMul' });
      return this.current;
    }
    return this.dense(this.spec.vocabSize, { name: opts.name ?? 'lm_head', bias: false });
  }

  /** The model: task 'language-model', logits [B, T, V] named 'logits'. */
  finishLanguageModel(arch?: TransformerArch): Model {
    const model = this.finish();
    return { ...model, task: 'language-model', lm: { vocabSize: this.spec.vocabSize, context: this.spec.context, ...(arch ? { arch } : {}) } };
  }
}
