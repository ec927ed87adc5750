"""PyTorch peer of bench/gpt-step.ts: the training step of qatkit's zoo language models (gpt, llama), timed here.

Run by the bench (never concurrently with ours); by hand:
    /usr/bin/python3 bench/peers/gpt_step.py --model gpt --steps 30 --warmup 5 --threads 2 --batch 32 --context 128

Models as src/models/transformers.ts writes them (nanoGPT's layout; the initialisation differs, the shapes and
ops do not), default size 4 layers, 4 heads, width 128, context 128, bytes vocabulary 256:
- gpt: token + learned position embeddings; pre-LayerNorm blocks of causal self-attention (fused qkv Linear,
  heads as [B, H, T, D], q scaled by 1/sqrt(D), scores plus an additive -inf mask above the diagonal, softmax,
  weighted values, output Linear) and an MLP Linear(C, 4C) -> exact GELU (erf) -> Linear(4C, C); final
  LayerNorm; LM head tied to the token embedding; Linear biases.
- llama: RMSNorm, rotary embeddings on q and k (rotate-half layout), SwiGLU MLP of hidden 8/3 C rounded up to
  a multiple of 32, no biases, an untied head.
Attention is written out (matmul, mask, softmax, matmul) as qatkit's graph computes it; torch 1.13 has no
F.scaled_dot_product_attention anyway. Loss: token cross-entropy over all B*T positions. Optimizer as
`qat train --model gpt --data moby-dick` runs it: AdamW betas (0.9, 0.95), weight decay 0.1 on matrices only
(no decay on norms, biases and embeddings), gradient clipping at global norm 1. Batches are random token ids:
the step's cost does not depend on them.

With --serve it steps on request instead (common.serve_steps; bench/gpt-step.ts alternates its steps with ours).
Otherwise it prints ONE JSON line on stdout: {"peer": "torch-lm", "version", "model", "parameters", "context", "threads",
"batch", "warmup", "steps", "ms_median", "ms_p90", "rss_mb_first", "rss_mb_last"}.
"""
import math
import os
import sys

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py, also under python3 -P / -I
from common import peer_arg_parser, print_result, serve_steps, time_steps  # noqa: E402


def causal_mask(context: int) -> torch.Tensor:
    """[T, T] additive mask: -inf where the key lies after the query, 0 elsewhere."""
    return torch.full((context, context), float('-inf')).triu(1)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q, k, v [B, H, T, D] -> [B, T, H*D]: softmax(q k^T / sqrt(D) + mask) v, heads merged."""
    b, h, t, d = q.shape
    scores = (q * (1.0 / math.sqrt(d))) @ k.transpose(-2, -1) + mask[:t, :t]
    y = F.softmax(scores, dim=-1) @ v
    return y.transpose(1, 2).reshape(b, t, h * d)


class GptBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.mlp_proj = nn.Linear(4 * dim, dim)
        self.register_buffer('mask', causal_mask(context), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        heads = lambda z: z.view(b, t, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        x = x + self.proj(attend(heads(q), heads(k), heads(v), self.mask))
        return x + self.mlp_proj(F.gelu(self.fc(self.ln_2(x))))


class Gpt(nn.Module):
    def __init__(self, vocab: int, layers: int, heads: int, dim: int, context: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(GptBlock(dim, heads, context) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()  # tied head


class RmsNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_tables(context: int, head_size: int, base: float = 10000.0):
    inv = base ** (-torch.arange(0, head_size, 2).float() / head_size)
    angles = torch.arange(context).float()[:, None] * inv[None, :]
    return angles.cos(), angles.sin()


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def swiglu_hidden(dim: int) -> int:
    return math.ceil(8 * dim / 3 / 32) * 32


class LlamaBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.heads = heads
        self.input_layernorm = RmsNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.post_attention_layernorm = RmsNorm(dim)
        hidden = swiglu_hidden(dim)
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        self.register_buffer('mask', causal_mask(context), persistent=False)
        cos, sin = rotary_tables(context, dim // heads)
        self.register_buffer('cos', cos, persistent=False)
        self.register_buffer('sin', sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.input_layernorm(x)).split(c, dim=2)
        heads = lambda z: z.view(b, t, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        cos, sin = self.cos[:t], self.sin[:t]
        q, k = rope(heads(q), cos, sin), rope(heads(k), cos, sin)
        x = x + self.o_proj(attend(q, k, heads(v), self.mask))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, vocab: int, layers: int, heads: int, dim: int, context: int):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(LlamaBlock(dim, heads, context) for _ in range(layers))
        self.norm = RmsNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def main() -> None:
    ap = peer_arg_parser(__doc__, default_steps=30)
    ap.add_argument('--model', choices=('gpt', 'llama'), default='gpt')
    ap.add_argument('--context', type=int, default=128)
    ap.add_argument('--vocab', type=int, default=256)
    ap.add_argument('--layers', type=int, default=4)
    ap.add_argument('--heads', type=int, default=4)
    ap.add_argument('--dim', type=int, default=128)
    ap.add_argument('--serve', action='store_true', help='stepping mode: N on stdin runs N timed steps (common.serve_steps)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    build = Gpt if args.model == 'gpt' else Llama
    model = build(args.vocab, args.layers, args.heads, args.dim, args.context).train()
    # Decay on matrices only (Linear weights), as qatkit's Model.noDecay: not norms, biases or embeddings.
    decay = [p for m in model.modules() if isinstance(m, nn.Linear) for p in [m.weight]]
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': rest, 'weight_decay': 0.0}], lr=2e-3, betas=(0.9, 0.95))
    ids = torch.randint(0, args.vocab, (args.batch, args.context))
    targets = torch.randint(0, args.vocab, (args.batch, args.context))

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    parameters = sum(p.numel() for p in model.parameters())
    if args.serve:
        serve_steps(step, {'peer': 'torch-lm', 'version': torch.__version__, 'model': args.model, 'parameters': parameters, 'threads': args.threads, 'batch': args.batch, 'context': args.context})
        return
    timings = time_steps(step, args.steps)
    print_result('torch-lm', args, timings, model=args.model, parameters=parameters, context=args.context)


if __name__ == '__main__':
    main()
