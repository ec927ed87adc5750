import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/ops';
import { checkGradient, CheckCase } from '../../src/autodiff/check';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Tensor } from '../../src/ir/tensor';
import { Rng } from '../../src/train/rng';

// Chains of the ops PyTorch exports for transformers, in the form torch.onnx.export writes them, checked
// end to end by finite differences (float64): every rule on the way and the accumulation where a value is
// used twice. The single-op cases live beside their op families.

const positive = { sample: (r: Rng) => r.range(0.5, 2) };
const small = { sample: (r: Rng) => r.range(-0.5, 0.5) };
const ids = (shape: number[], values: number[]) => ({ shape, values, dtype: 'int64' as const });

/** LlamaRMSNorm: x * rsqrt(mean(x^2, -1) + eps) * weight; rsqrt as Pow(-0.5) or as Reciprocal(Sqrt). */
function rmsNorm(b: GraphBuilder, x: string, weight: string, rsqrt: 'pow' | 'sqrt'): string {
  const variance = b.reduceMean(b.op1('Pow', [x, b.scalarLike(2, x)]), [-1], true);
  const shifted = b.add(variance, b.scalarLike(1e-6, x));
  const inv = rsqrt === 'pow' ? b.op1('Pow', [shifted, b.scalarLike(-0.5, x)]) : b.reciprocal(b.sqrt(shifted));
  return b.mul(weight, b.mul(x, inv));
}

/** nanoGPT's causal self-attention on x [B, T, C] with H heads: fused qkv Linear, split, heads, tril mask. */
function causalSelfAttention(b: GraphBuilder, [x, wqkv, bqkv, wo]: string[], heads: number): string {
  const [batch, time, width] = b.staticShape(x);
  const d = width / heads;
  const qkv = b.add(b.matmul(x, wqkv), bqkv);
  const toHeads = (v: string) => b.transpose(b.reshape(v, [batch, time, heads, d]), [0, 2, 1, 3]);
  const [q, k, v] = b.op('Split', [qkv, b.ints([width, width, width])], { axis: 2 }, { outputs: 3 }).map(toHeads);
  const scores = b.mul(b.matmul(q, b.transpose(k, [0, 1, 3, 2])), b.scalarLike(1 / Math.sqrt(d), x));
  // self.bias = torch.tril(torch.ones(T, T)).view(1, 1, T, T); att.masked_fill(bias == 0, -inf).
  const tril = b.op1('Trilu', [b.constant(Tensor.double([1, 1, time, time], new Array(time * time).fill(1)))], { upper: 0 });
  const masked = b.where(b.equal(tril, b.scalarLike(0, x)), b.scalarLike(-Infinity, x), scores);
  const att = b.op1('Softmax', [masked], { axis: -1 });
  const merged = b.reshape(b.transpose(b.matmul(att, v), [0, 2, 1, 3]), [batch, time, width]);
  return b.matmul(merged, wo);
}

/** Llama's rotary embedding on x [B, H, T, d]: x cos + rotate_half(x) sin, angles theta [T, d/2]. */
function rotary(b: GraphBuilder, x: string, theta: string): string {
  const angles = b.op1('Concat', [theta, theta], { axis: -1 });
  const [x1, x2] = b.op('Split', [x], { axis: -1 }, { outputs: 2 });
  const rotated = b.op1('Concat', [b.neg(x2), x1], { axis: -1 });
  return b.add(b.mul(x, b.op1('Cos', [angles])), b.mul(rotated, b.op1('Sin', [angles])));
}

/**
 * A tiny GPT's loss: token + position embeddings (positions from Range), LayerNorm, an LM head tied to the
 * token table (MatMul by its transpose), next-token cross-entropy as in src/train/losses.ts.
 */
function languageModelLoss(b: GraphBuilder, [tokens, targets, table, positions, gamma, beta]: string[]): string {
  const time = b.shape(tokens)[1] as number;
  const where = b.op1('Range', [b.constant(0, DType.INT64), b.constant(time, DType.INT64), b.constant(1, DType.INT64)]);
  const h = b.add(b.op1('Gather', [table, tokens]), b.op1('Gather', [positions, where]));
  const normed = b.op1('LayerNormalization', [h, gamma, beta], { axis: -1 });
  const logits = b.matmul(normed, b.transpose(table, [1, 0]));
  const logp = b.op1('LogSoftmax', [logits], { axis: -1 });
  const picked = b.op1('GatherElements', [logp, b.unsqueeze(targets, [2])], { axis: 2 });
  return b.neg(b.op1('ReduceMean', [picked], { keepdims: 0 }));
}

const cases: CheckCase[] = [
  { name: 'RMSNorm with Pow(-0.5) over the last axis of [2,3,4]', inputs: [{ shape: [2, 3, 4] }, { shape: [4] }], build: (b, [x, w]) => rmsNorm(b, x, w, 'pow') },
  { name: 'RMSNorm with Reciprocal(Sqrt) over the last axis of [2,3,4]', inputs: [{ shape: [2, 3, 4] }, { shape: [4] }], build: (b, [x, w]) => rmsNorm(b, x, w, 'sqrt') },
  {
    name: 'causal self-attention (fused qkv, split, 2 heads, tril mask, -inf, softmax) on [1,4,6]',
    inputs: [{ shape: [1, 4, 6] }, { shape: [6, 18], ...small }, { shape: [18], ...small }, { shape: [6, 6] }],
    build: (b, xs) => causalSelfAttention(b, xs, 2),
  },
  { name: 'rotary embedding with Sin/Cos of learnable angles on [1,2,3,4]', inputs: [{ shape: [1, 2, 3, 4] }, { shape: [3, 2] }], build: (b, [x, theta]) => rotary(b, x, theta) },
  {
    name: 'SwiGLU MLP silu(x W1) * (x W3) W2 on [2,2,4]',
    inputs: [{ shape: [2, 2, 4] }, { shape: [4, 6] }, { shape: [4, 6] }, { shape: [6, 4] }],
    // silu written as a / (1 + exp(-a)): ORT fuses a * Sigmoid(a) into a float32-only kernel (test/ops/activation.test.ts).
    build: (b, [x, w1, w3, w2]) => {
      const a = b.matmul(x, w1);
      const silu = b.div(a, b.add(b.scalarLike(1, a), b.exp(b.neg(a))));
      return b.matmul(b.mul(silu, b.matmul(x, w3)), w2);
    },
  },
  {
    name: 'language-model loss: tied embedding + positions (Range) + LayerNorm + head + cross-entropy',
    inputs: [ids([2, 3], [4, 1, 1, 0, 3, 4]), ids([2, 3], [1, 1, 0, 3, 4, 2]), { shape: [5, 4] }, { shape: [3, 4] }, { shape: [4], ...positive }, { shape: [4] }],
    build: languageModelLoss,
  },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences (float64)`, async () => {
    const r = await checkGradient(c);
    assert.ok(r.relativeError < 1e-6, `relative error ${r.relativeError}; worst ${JSON.stringify(r.worst)}`);
  });
}
