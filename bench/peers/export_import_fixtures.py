"""Exports the PyTorch fixtures of test/onnx/pytorch-import.test.ts (issue 10: import any model
torch.onnx.export writes), the way a user's first export would write them: shapes computed at run time
(Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Slice ends from Shape), dynamic batch and sequence axes,
default constant folding (which unties a tied LM head into a transposed copy).

Run with Debian's PyTorch 1.13:  /usr/bin/python3 bench/peers/export_import_fixtures.py [NAME ...]
(names given: only those fixtures are written; the seeds are per fixture, so each is reproducible alone)

Each NAME.onnx in test/fixtures/ has NAME_expected.json beside it: the input PyTorch was given (float images
or int64 token ids), the logits it computed in eval mode, and the export settings.

- torch_cnn_view: Conv/ReLU/MaxPool CNN flattened by x.view(x.size(0), -1) (BN folded by the EVAL export).
- torch_cnn_train_bn15 / torch_cnn_train_bn13: a CNN with BatchNorm2d and Dropout exported in training mode
  (TrainingMode.PRESERVE on a train-mode model): opset 15 BN with training_mode=1 and running-stat outputs,
  opset 13 BN with mean/var outputs, Dropout with training_mode = true. Logits: eval mode (running stats).
- torch_mha_causal: nn.MultiheadAttention (batch_first) on float [B, T, 32] with a causal mask built from
  x.size(1) (triu of -inf), then a Linear head.
- torch_nanogpt: nanoGPT-style decoder (token + position embedding, fused qkv Linear + split, view/transpose,
  tril buffer + masked_fill(-inf), GELU, LayerNorm, head tied to the token embedding), vocab 64, dim 32,
  2 layers, 4 heads, context 16; int64 ids [B, T] with dynamic batch and sequence axes.
- torch_encoder_lm: token embedding + learned positions (a Parameter sliced to T) + nn.TransformerEncoder
  with a causal mask + untied Linear head; int64 ids [B, T], dynamic axes.
- torch_llama_style: RMSNorm (pow/mean/rsqrt), rotary embeddings computed from an inv_freq buffer and arange(T)
  (torch.outer and torch.einsum export as Einsum), chunk, causal mask from ones().tril(), SwiGLU MLP, no biases.
- torch_vit_style: patch Conv, flatten(2).transpose, a class token expanded to the batch (Expand of a shape
  computed with Where(Equal(shape, -1))), cat, sliced position Parameter, nn.TransformerEncoderLayer.
- torch_cnn_norms: GroupNorm (Reshape + InstanceNormalization + affine), InstanceNorm2d, SiLU, ELU, PReLU,
  squeeze-excitation gating, avg_pool2d with ceil_mode=True (count_include_pad=True); 28x28 input.
- torch_cnn_upsample: pixel_shuffle (DepthToSpace CRD), bilinear F.interpolate to a size and nearest by a scale
  (Resize), SELU, Mish (decomposed at opset 17), max_pool2d with ceil_mode=True, F.normalize (ReduceL2); 28x28.
- torch_rnn: an image read row by row by a 2-layer bidirectional nn.LSTM (batch_first) and an nn.GRU
  (linear_before_reset=1), then a Linear on the GRU's last hidden state; 28x28.
- torch_hf_gpt2: Hugging Face GPT-2's module structure at vocabulary 256 (byte text): Conv1D layers
  (torch.addmm on x.view(-1, C): Gemm with a [in, out] weight), c_attn split, a bool tril buffer sliced by
  key/query lengths and torch.where(mask, w, finfo.min), gelu_new (tanh form), position_ids from arange, the LM
  head tied to wte through F.linear; dim 32, 2 layers, 4 heads, context 32. It trains on text, QATs and exports.
- torch_hf_llama: Hugging Face Llama's module structure (transformers 4.3x) at vocabulary 256: grouped-query
  attention (4 query heads, 2 key/value heads, repeat_kv by expand + reshape), rotary cos/sin caches sliced to T
  and `.squeeze(1).squeeze(0)` (torch.onnx.export writes each squeeze as an If on the dim's size), rotate_half by
  slicing and cat, position_ids indexing the caches, an additive finfo.min causal mask from masked_fill_ with an
  arange comparison, softmax in float32, RMSNorm through float32 casts, SwiGLU; dim 32, 2 layers, context 32.
- torch_gptj: GPT-J's block at vocabulary 256: one [context, rotary] embed_positions buffer of [sin | cos] gathered
  by position_ids, repeat_interleave, rotate_every_two (strided slices, stack, flatten), partial rotary, parallel
  attention and MLP on one LayerNorm, torch.where causal mask; dim 32, 2 layers, context 32.
- torch_t5_lm: a T5-style decoder at vocabulary 256: relative position buckets (log-spaced, from the difference of
  two aranges) indexing an Embedding(buckets, heads) bias, RMSNorm without mean, ReLU FFN, no absolute positions,
  head tied to the embedding through F.linear with T5's d_model^-0.5 rescale.
- torch_llama_mask: a Llama block in the transformers 4.38+ form: inputs input_ids and attention_mask, position_ids
  from the mask's cumsum, rotary angles computed at run time from inv_freq @ position_ids, a padding mask added to
  the causal one.
"""
import json
import math
import os
import sys
import warnings

import torch
from torch import nn
from torch.nn import functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', '..', 'test', 'fixtures')


class CnnView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.view(x.size(0), -1))


class CnnTrainBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.drop(torch.flatten(x, 1)))


class MhaCausal(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, out: int = 8):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Linear(dim, out)

    def forward(self, x):
        t = x.size(1)
        mask = torch.triu(torch.full((t, t), float('-inf')), diagonal=1)
        y, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False)
        return self.head(x + y)


class CausalSelfAttention(nn.Module):
    """nanoGPT's (Karpathy) attention without flash: fused c_attn, split, view/transpose, tril buffer."""

    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.heads = heads
        self.dim = dim
        self.register_buffer('bias', torch.tril(torch.ones(context, context)).view(1, 1, context, context))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.dim, dim=2)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, context)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.c_fc = nn.Linear(dim, 4 * dim)
        self.mlp.gelu = nn.GELU()
        self.mlp.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGpt(nn.Module):
    def __init__(self, vocab: int = 64, dim: int = 32, layers: int = 2, heads: int = 4, context: int = 16):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.h = nn.ModuleList([Block(dim, heads, context) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, 0.0, 0.2)

    def forward(self, idx):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class EncoderLm(nn.Module):
    def __init__(self, vocab: int = 64, dim: int = 32, layers: int = 2, heads: int = 4, context: int = 16):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, context, dim) * 0.2)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx):
        t = idx.size(1)
        mask = torch.triu(torch.full((t, t), float('-inf')), diagonal=1)
        x = self.tok(idx) + self.pos[:, :t]
        return self.head(self.encoder(x, mask=mask))


class RmsNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class LlamaStyle(nn.Module):
    def __init__(self, vocab: int = 48, dim: int = 32, heads: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = RmsNorm(dim)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.mlp_norm = RmsNorm(dim)
        self.gate_proj = nn.Linear(dim, 64, bias=False)
        self.up_proj = nn.Linear(dim, 64, bias=False)
        self.down_proj = nn.Linear(64, dim, bias=False)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.heads = heads
        head = dim // heads
        self.register_buffer('inv_freq', 1.0 / (10000 ** (torch.arange(0, head, 2).float() / head)))

    def rotate(self, x, t):
        freqs = torch.outer(torch.arange(t, dtype=torch.float32), self.inv_freq)
        emb = torch.cat([freqs, freqs], -1)
        x1, x2 = x.chunk(2, dim=-1)
        return x * emb.cos() + torch.cat([-x2, x1], -1) * emb.sin()

    def forward(self, idx):
        B, T = idx.shape
        h = self.embed(idx)
        x = self.norm(h)
        hd = x.size(-1) // self.heads
        q = self.rotate(self.q_proj(x).view(B, T, self.heads, hd).transpose(1, 2), T)
        k = self.rotate(self.k_proj(x).view(B, T, self.heads, hd).transpose(1, 2), T)
        v = self.v_proj(x).reshape(B, T, self.heads, -1).permute(0, 2, 1, 3)
        att = torch.einsum('bhqd,bhkd->bhqk', q, k) / math.sqrt(hd)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~causal, float('-inf')).softmax(-1)
        h = h + self.o_proj((att @ v).transpose(1, 2).reshape(B, T, -1))
        x = self.mlp_norm(h)
        h = h + self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.lm_head(h)


class VitStyle(nn.Module):
    def __init__(self, dim: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.1)
        self.block = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.size(0), -1, -1)
        x = torch.cat([cls, x], 1) + self.pos[:, : x.size(1) + 1]
        return self.head(self.block(x)[:, 0])


class CnnNorms(nn.Module):
    """GroupNorm, InstanceNorm2d, SiLU, ELU, PReLU, squeeze-excitation gating, avg_pool2d with ceil_mode=True."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.prelu = nn.PReLU(8)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        x = F.silu(self.gn(self.conv1(x)))
        x = F.elu(self.inorm(self.conv2(x)), 0.5)
        x = x * torch.sigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(x, 1)))))
        x = self.prelu(F.avg_pool2d(x, 3, 2, ceil_mode=True))
        return self.fc(x.flatten(1))


class CnnUpsample(nn.Module):
    """pixel_shuffle (DepthToSpace), bilinear and nearest F.interpolate (Resize), SELU, Mish, F.normalize (ReduceL2)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 5 * 5, 10)

    def forward(self, x):
        x = F.pixel_shuffle(F.relu(self.conv1(x)), 2)
        x = F.interpolate(F.selu(self.conv2(x)), size=(10, 10), mode='bilinear', align_corners=False)
        x = F.interpolate(F.mish(self.conv3(x)), scale_factor=2, mode='nearest')
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = F.normalize(x.flatten(1), dim=1)
        return self.fc(x * 8)


ONLY: list = []


class RowRnn(nn.Module):
    """Reads an image row by row: a 2-layer bidirectional nn.LSTM (batch_first), an nn.GRU, a Linear on the last step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(32, 24, batch_first=True)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y, _ = self.lstm(x.squeeze(1))
        _, h = self.gru(y)
        return self.fc(h[0])


class HfConv1D(nn.Module):
    """transformers' Conv1D: a Linear with its weight stored [in, out], computed by addmm on the flattened rows."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.weight.size(-1),)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class HfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.register_buffer('bias', torch.tril(torch.ones((context, context), dtype=torch.bool)).view(1, 1, context, context))
        self.c_attn = HfConv1D(3 * dim, dim)
        self.c_proj = HfConv1D(dim, dim)
        self.heads = heads
        self.dim = dim

    def split_heads(self, x):
        return x.view(x.size()[:-1] + (self.heads, self.dim // self.heads)).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self.c_attn(x).split(self.dim, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        w = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], v.size(-1) ** 0.5, dtype=q.dtype)
        query_length, key_length = q.size(-2), k.size(-2)
        causal = self.bias[:, :, key_length - query_length: key_length, :key_length]
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        w = nn.functional.softmax(w, dim=-1)
        y = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        return self.c_proj(y.view(y.size()[:-2] + (self.dim,)))


class HfBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = HfAttention(dim, heads, context)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-5)
        self.c_fc = HfConv1D(4 * dim, dim)
        self.c_proj = HfConv1D(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(gelu_new(self.c_fc(self.ln_2(x))))


class HfGpt2(nn.Module):
    def __init__(self, vocab: int = 256, dim: int = 32, layers: int = 2, heads: int = 4, context: int = 32):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        nn.init.normal_(self.wte.weight, 0.0, 0.02)
        nn.init.normal_(self.wpe.weight, 0.0, 0.01)
        self.h = nn.ModuleList([HfBlock(dim, heads, context) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, input_ids):
        position_ids = torch.arange(0, input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(position_ids)
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # GPT2LMHeadModel's tied lm_head



class HfRmsNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, hidden):
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden * torch.rsqrt(variance + self.eps)).to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class HfLlamaAttention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, context: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.q_proj = nn.Linear(dim, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        freqs = torch.einsum('i,j->ij', torch.arange(context).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer('cos_cached', emb.cos()[None, None, :, :], persistent=False)
        self.register_buffer('sin_cached', emb.sin()[None, None, :, :], persistent=False)

    def repeat_kv(self, x, n_rep: int):
        b, kv, t, d = x.shape
        return x[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)

    def forward(self, x, position_ids, mask):
        b, t, _ = x.size()
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        cos = self.cos_cached[:, :, :t, ...].squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
        sin = self.sin_cached[:, :, :t, ...].squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = self.repeat_kv(k, self.heads // self.kv_heads)
        v = self.repeat_kv(v, self.heads // self.kv_heads)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.o_proj(torch.matmul(w, v).transpose(1, 2).contiguous().reshape(b, t, -1))


class HfLlamaLayer(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, context: int):
        super().__init__()
        self.input_layernorm = HfRmsNorm(dim)
        self.self_attn = HfLlamaAttention(dim, heads, kv_heads, context)
        self.post_attention_layernorm = HfRmsNorm(dim)
        self.gate_proj = nn.Linear(dim, 96, bias=False)
        self.up_proj = nn.Linear(dim, 96, bias=False)
        self.down_proj = nn.Linear(96, dim, bias=False)

    def forward(self, h, position_ids, mask):
        h = h + self.self_attn(self.input_layernorm(h), position_ids, mask)
        x = self.post_attention_layernorm(h)
        return h + self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class HfLlama(nn.Module):
    def __init__(self, vocab: int = 256, dim: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2, context: int = 32):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList([HfLlamaLayer(dim, heads, kv_heads, context) for _ in range(layers)])
        self.norm = HfRmsNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, input_ids):
        b, t = input_ids.shape
        position_ids = torch.arange(0, t, dtype=torch.long).unsqueeze(0).view(-1, t)
        mask = torch.full((t, t), torch.finfo(torch.float32).min)
        cond = torch.arange(mask.size(-1))
        mask.masked_fill_(cond < (cond + 1).view(mask.size(-1), 1), 0)
        mask = mask[None, None, :, :].expand(b, 1, t, t)
        h = self.embed_tokens(input_ids)
        for layer in self.layers:
            h = layer(h, position_ids, mask)
        return self.lm_head(self.norm(h))



def rotate_every_two(x):
    x1 = x[:, :, :, ::2]
    x2 = x[:, :, :, 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


class GptjBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.rotary = self.head_dim // 2
        self.ln_1 = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.fc_in = nn.Linear(dim, 4 * dim)
        self.fc_out = nn.Linear(4 * dim, dim)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.rotary, 2).float() / self.rotary))
        sinusoid = torch.einsum('i,j->ij', torch.arange(context).float(), inv_freq)
        self.register_buffer('embed_positions', torch.cat((torch.sin(sinusoid), torch.cos(sinusoid)), dim=1), persistent=False)

    def forward(self, x, position_ids):
        b, t, c = x.shape
        h = self.ln_1(x)
        q = self.q_proj(h).view(b, t, self.heads, self.head_dim)
        k = self.k_proj(h).view(b, t, self.heads, self.head_dim)
        v = self.v_proj(h).view(b, t, self.heads, self.head_dim).permute(0, 2, 1, 3)
        sincos = self.embed_positions[position_ids]
        sin, cos = torch.split(sincos, sincos.shape[-1] // 2, dim=-1)
        sin = torch.repeat_interleave(sin[:, :, None, :], 2, 3)
        cos = torch.repeat_interleave(cos[:, :, None, :], 2, 3)

        def rope(y):
            rot, rest = y[:, :, :, : self.rotary], y[:, :, :, self.rotary :]
            return torch.cat([rot * cos + rotate_every_two(rot) * sin, rest], dim=-1).permute(0, 2, 1, 3)

        w = torch.matmul(rope(q), rope(k).transpose(-1, -2)) / math.sqrt(self.head_dim)
        w = torch.where(torch.tril(torch.ones(t, t, dtype=torch.bool)), w, torch.tensor(-1e9))
        o = torch.matmul(w.softmax(-1), v).permute(0, 2, 1, 3).contiguous().view(b, t, c)
        return x + self.out_proj(o) + self.fc_out(F.gelu(self.fc_in(h), approximate='tanh'))


class Gptj(nn.Module):
    def __init__(self, vocab: int = 256, dim: int = 32, layers: int = 2, heads: int = 4, context: int = 32):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.h = nn.ModuleList([GptjBlock(dim, heads, context) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab)

    def forward(self, input_ids):
        position_ids = torch.arange(input_ids.shape[1], dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids)
        for block in self.h:
            x = block(x, position_ids)
        return self.lm_head(self.ln_f(x))


class T5Attention(nn.Module):
    def __init__(self, dim: int, heads: int, buckets: int = 16, max_distance: int = 32):
        super().__init__()
        self.heads, self.head_dim, self.buckets, self.max_distance = heads, dim // heads, buckets, max_distance
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        self.relative_attention_bias = nn.Embedding(buckets, heads)

    def bucket(self, relative):
        # The decoder's (unidirectional) buckets: exact below buckets / 2, log-spaced up to max_distance.
        relative = -torch.min(relative, torch.zeros_like(relative))
        exact = self.buckets // 2
        large = exact + (torch.log(relative.float() / exact) / math.log(self.max_distance / exact) * (self.buckets - exact)).to(torch.long)
        large = torch.min(large, torch.full_like(large, self.buckets - 1))
        return torch.where(relative < exact, relative, large)

    def forward(self, x):
        b, t, c = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        context = torch.arange(t, dtype=torch.long)[:, None]
        memory = torch.arange(t, dtype=torch.long)[None, :]
        bias = self.relative_attention_bias(self.bucket(memory - context)).permute([2, 0, 1]).unsqueeze(0)
        w = torch.matmul(q, k.transpose(3, 2)) + bias + torch.triu(torch.full((t, t), float('-inf')), 1)
        return self.o(torch.matmul(F.softmax(w.float(), dim=-1).type_as(w), v).transpose(1, 2).reshape(b, t, c))


class T5Norm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class T5Lm(nn.Module):
    def __init__(self, vocab: int = 256, dim: int = 32, layers: int = 2, heads: int = 4):
        super().__init__()
        self.dim = dim
        self.shared = nn.Embedding(vocab, dim)
        self.attention = nn.ModuleList([T5Attention(dim, heads) for _ in range(layers)])
        self.attention_norm = nn.ModuleList([T5Norm(dim) for _ in range(layers)])
        self.ff = nn.ModuleList([nn.Sequential(nn.Linear(dim, 64, bias=False), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, dim, bias=False)) for _ in range(layers)])
        self.ff_norm = nn.ModuleList([T5Norm(dim) for _ in range(layers)])
        self.final_norm = T5Norm(dim)

    def forward(self, input_ids):
        x = self.shared(input_ids)
        for attention, attention_norm, ff, ff_norm in zip(self.attention, self.attention_norm, self.ff, self.ff_norm):
            x = x + attention(attention_norm(x))
            x = x + ff(ff_norm(x))
        return F.linear(self.final_norm(x) * (self.dim ** -0.5), self.shared.weight)


class LlamaMask(nn.Module):
    def __init__(self, vocab: int = 256, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.embed_tokens = nn.Embedding(vocab, dim)
        self.norm = HfRmsNorm(dim)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.up_proj = nn.Linear(dim, 64, bias=False)
        self.down_proj = nn.Linear(64, dim, bias=False)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.register_buffer('inv_freq', 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim)), persistent=False)

    def forward(self, input_ids, attention_mask):
        b, t = input_ids.shape
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[:, None], emb.sin()[:, None]
        h = self.embed_tokens(input_ids)
        x = self.norm(h)
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        causal = torch.triu(torch.full((t, t), torch.finfo(torch.float32).min), diagonal=1)[None, None]
        padding = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + causal + padding
        h = h + self.o_proj(torch.matmul(w.softmax(-1), v).transpose(1, 2).reshape(b, t, -1))
        return self.lm_head(h + self.down_proj(F.silu(self.up_proj(h))))


def export(model: nn.Module, example: torch.Tensor, name: str, opset: int, axes: dict, training: bool = False, **info) -> None:
    if ONLY and name not in ONLY:
        return
    path = os.path.join(FIXTURES, f'{name}.onnx')
    input_name = 'input_ids' if example.dtype == torch.long else 'input'
    # A train-mode model exported with PRESERVE keeps BatchNormalization/Dropout in training form, as a user
    # gets who forgets model.eval(); PyTorch warns that constant folding may then change the model.
    warnings.filterwarnings('ignore', message='It is recommended that constant folding be turned off')
    model.train(training)
    # attention_mask=True: the model also takes an HF attention_mask, all ones in the stored example.
    args = (example, torch.ones_like(example)) if info.get('attention_mask') else (example,)
    names = [input_name, 'attention_mask'][: len(args)]
    torch.onnx.export(
        model,
        args,
        path,
        opset_version=opset,
        input_names=names,
        output_names=['logits'],
        dynamic_axes={**{n: axes for n in names}, 'logits': axes},
        training=torch.onnx.TrainingMode.PRESERVE if training else torch.onnx.TrainingMode.EVAL,
    )
    model.eval()
    with torch.no_grad():
        logits = model(*args)
    expected = {
        'opset': opset,
        'input_name': input_name,
        'input_dtype': 'int64' if example.dtype == torch.long else 'float32',
        'input_shape': list(example.shape),
        'input': example.flatten().tolist(),
        'logits_shape': list(logits.shape),
        'logits': logits.flatten().tolist(),
        'torch': torch.__version__,
        **info,
    }
    with open(os.path.join(FIXTURES, f'{name}_expected.json'), 'w') as f:
        json.dump(expected, f)
    print(f'{path}: {os.path.getsize(path)} bytes')


def main(only: list) -> None:
    ONLY.extend(only)
    torch.set_num_threads(2)
    os.makedirs(FIXTURES, exist_ok=True)
    batch = {0: 'batch'}
    batch_seq = {0: 'batch', 1: 'sequence'}

    torch.manual_seed(0)
    export(CnnView(), torch.rand(2, 1, 16, 16), 'torch_cnn_view', 17, batch)

    for opset in (15, 13):
        torch.manual_seed(1)
        model = CnnTrainBn()
        model.train()
        with torch.no_grad():  # move the running statistics away from 0 / 1
            for _ in range(4):
                model(torch.rand(8, 1, 16, 16))
        export(model, torch.rand(2, 1, 16, 16), f'torch_cnn_train_bn{opset}', opset, batch, training=True)

    torch.manual_seed(2)
    export(MhaCausal(), torch.randn(2, 5, 32), 'torch_mha_causal', 17, batch_seq)

    torch.manual_seed(3)
    export(NanoGpt(), torch.randint(0, 64, (2, 7)), 'torch_nanogpt', 17, batch_seq, vocab_size=64, context=16, tied=True)

    torch.manual_seed(4)
    export(EncoderLm(), torch.randint(0, 64, (2, 6)), 'torch_encoder_lm', 17, batch_seq, vocab_size=64, context=16)

    torch.manual_seed(5)
    export(LlamaStyle(), torch.randint(0, 48, (2, 6)), 'torch_llama_style', 17, batch_seq, vocab_size=48)

    torch.manual_seed(6)
    export(VitStyle(), torch.rand(2, 1, 16, 16), 'torch_vit_style', 17, batch)

    torch.manual_seed(7)
    export(CnnNorms(), torch.rand(2, 1, 28, 28), 'torch_cnn_norms', 17, batch)

    torch.manual_seed(8)
    export(CnnUpsample(), torch.rand(2, 1, 28, 28), 'torch_cnn_upsample', 17, batch)


    torch.manual_seed(9)
    export(RowRnn(), torch.rand(2, 1, 28, 28), 'torch_rnn', 17, batch)

    torch.manual_seed(10)
    export(HfGpt2(), torch.randint(0, 256, (2, 9)), 'torch_hf_gpt2', 17, batch_seq, vocab_size=256, context=32, tied=True)

    torch.manual_seed(11)
    export(HfLlama(), torch.randint(0, 256, (2, 9)), 'torch_hf_llama', 17, batch_seq, vocab_size=256, context=32)

    torch.manual_seed(12)
    export(Gptj(), torch.randint(0, 256, (2, 9)), 'torch_gptj', 17, batch_seq, vocab_size=256, context=32)

    torch.manual_seed(13)
    export(T5Lm(), torch.randint(0, 256, (2, 9)), 'torch_t5_lm', 17, batch_seq, vocab_size=256)

    torch.manual_seed(14)
    export(LlamaMask(), torch.randint(0, 256, (2, 9)), 'torch_llama_mask', 17, batch_seq, vocab_size=256, attention_mask=True)


if __name__ == '__main__':
    main(sys.argv[1:])
