import { Model, TransformerArch } from './model.js';
import { DecoderAttention, TransformerBuilder } from './transformer-builder.js';

export interface TransformerOptions {
  vocabSize: number;
  layers?: number;
  heads?: number;
  dim?: number;
  context?: number;
  seed?: number;
  /** Build the KV-cache decoder form (generation) instead of the training form. */
  decoder?: boolean;
  /** The decoder form's attention (default 'ops'; transformer-builder.ts DECODER_ATTENTIONS). */
  decoderAttention?: DecoderAttention;
}

export const TRANSFORMER_DEFAULTS = { layers: 4, heads: 4, dim: 128, context: 128 };

/** SwiGLU hidden width of Llama: 8/3 x width, rounded up to a multiple of 32. */
export function swigluHidden(dim: number): number {
  return Math.ceil((8 * dim) / 3 / 32) * 32;
}

function archOf(kind: TransformerArch['kind'], o: TransformerOptions): TransformerArch {
  const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const { layers, heads, dim, context } = { ...TRANSFORMER_DEFAULTS, ...given };
  if (!Number.isInteger(dim / heads)) throw new Error(`--dim ${dim} must be divisible by --heads ${heads}`);
  return { kind, layers, heads, dim, context, vocabSize: o.vocabSize, hidden: kind === 'gpt' ? 4 * dim : swigluHidden(dim) };
}

function builderFor(name: string, arch: TransformerArch, o: TransformerOptions): TransformerBuilder {
  const decoder = o.decoder ? { layers: arch.layers, heads: arch.heads, headSize: arch.dim / arch.heads, attention: o.decoderAttention } : undefined;
  return new TransformerBuilder(name, { vocabSize: arch.vocabSize, context: arch.context }, o.seed ?? 0, { decoder });
}

/**
 * GPT-2 style decoder (Radford et al. 2019; nanoGPT's layout): token + learned position embeddings, pre-LayerNorm
 * blocks of causal multi-head attention (fused qkv) and a GELU MLP of 4x width, final LayerNorm, LM head tied to
 * the token embedding; Linear biases; weights N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 layers)).
 */
export function gpt(o: TransformerOptions): Model {
  const arch = archOf('gpt', o);
  const m = builderFor('gpt', arch, o);
  const residualStd = 0.02 / Math.sqrt(2 * arch.layers);
  m.embedding(arch.dim, { name: 'wte' });
  m.positionEmbedding({ name: 'wpe' });
  for (let i = 0; i < arch.layers; i++) {
    const p = `blocks.${i}`;
    const x = m.current;
    m.layerNorm({ name: `${p}.ln_1` });
    const attn = m.attention({ heads: arch.heads, name: `${p}.attn`, outputStd: residualStd, layer: i });
    const mid = m.add(x, attn);
    m.layerNorm({ name: `${p}.ln_2` });
    m.dense(arch.hidden, { name: `${p}.mlp.fc` });
    m.gelu();
    const mlp = m.dense(arch.dim, { name: `${p}.mlp.proj`, std: residualStd });
    m.add(mid, mlp);
  }
  m.layerNorm({ name: 'ln_f' });
  m.lmHead({ tied: true });
  return m.finishLanguageModel(arch);
}

/**
 * Llama style decoder (Touvron et al. 2023): RMSNorm, rotary position embeddings on q and k, SwiGLU MLP
 * (hidden 8/3 x width rounded up to a multiple of 32), no biases, an LM head of its own (untied).
 */
export function llama(o: TransformerOptions): Model {
  const arch = archOf('llama', o);
  const m = builderFor('llama', arch, o);
  const residualStd = 0.02 / Math.sqrt(2 * arch.layers);
  m.embedding(arch.dim, { name: 'embed_tokens' });
  for (let i = 0; i < arch.layers; i++) {
    const p = `layers.${i}`;
    const x = m.current;
    m.rmsNorm({ name: `${p}.input_layernorm` });
    const attn = m.attention({ heads: arch.heads, name: `${p}.self_attn`, bias: false, rope: true, outputStd: residualStd, layer: i });
    const mid = m.add(x, attn);
    const normed = m.rmsNorm({ name: `${p}.post_attention_layernorm` });
    const gate = m.dense(arch.hidden, { x: normed, name: `${p}.mlp.gate_proj`, bias: false });
    const activated = m.silu(gate);
    const up = m.dense(arch.hidden, { x: normed, name: `${p}.mlp.up_proj`, bias: false });
    const product = m.b.mul(activated, up);
    const mlp = m.dense(arch.dim, { x: product, name: `${p}.mlp.down_proj`, bias: false, std: residualStd });
    m.add(mid, mlp);
  }
  m.rmsNorm({ name: 'norm' });
  m.lmHead({ tied: false, name: 'lm_head' });
  return m.finishLanguageModel(arch);
}

/** The decoder (KV-cache) form of a zoo transformer, carrying the trained model's parameters. */
export function transformerDecoder(model: Model, attention: DecoderAttention = 'ops'): Model {
  const arch = model.lm?.arch;
  if (!arch) throw new Error(`model '${model.name}' is not a zoo transformer; it generates by full recompute`);
  const build = arch.kind === 'gpt' ? gpt : llama;
  const decoder = build({ ...arch, decoder: true, decoderAttention: attention });
  for (const p of decoder.params) {
    const t = model.graph.initializers.get(p);
    if (!t) throw new Error(`model '${model.name}' lacks parameter '${p}' of its ${arch.kind} decoder`);
    decoder.graph.initializers.set(p, t);
  }
  return decoder;
}
