"""The imported decoder of bench/llm-table.ts: test/fixtures/torch_nanogpt.onnx's NanoGpt (same module, same
torch.onnx.export settings: opset 17, dynamic batch and sequence, default constant folding), sized for byte text.
The fixture itself has a vocabulary of 64, which the bytes tokenizer (256 ids) does not fit, so the table exports
the same architecture with vocabulary 256.

Usage: /usr/bin/python3 bench/peers/export_bench_nanogpt.py OUT.onnx [--dim 64] [--layers 2] [--heads 4] [--context 64] [--seed 0]
"""
import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_import_fixtures import NanoGpt  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument('out')
parser.add_argument('--dim', type=int, default=64)
parser.add_argument('--layers', type=int, default=2)
parser.add_argument('--heads', type=int, default=4)
parser.add_argument('--context', type=int, default=64)
parser.add_argument('--seed', type=int, default=0)
a = parser.parse_args()
torch.manual_seed(a.seed)
model = NanoGpt(vocab=256, dim=a.dim, layers=a.layers, heads=a.heads, context=a.context).eval()
warnings.filterwarnings('ignore')
axes = {0: 'batch', 1: 'sequence'}
torch.onnx.export(model, torch.randint(0, 256, (2, 7)), a.out, opset_version=17, input_names=['input_ids'], output_names=['logits'],
                  dynamic_axes={'input_ids': axes, 'logits': axes})
print(f'{a.out}: NanoGpt vocab 256, dim {a.dim}, {a.layers} layers, {a.heads} heads, context {a.context}')
