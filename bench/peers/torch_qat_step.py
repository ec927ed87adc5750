"""PyTorch peer of bench/qat-step.ts: LeNet's eager-mode QAT training step (w8a8, AdamW), timed on this machine.

Run by the bench (never concurrently with ours); by hand:
    /usr/bin/python3 bench/peers/torch_qat_step.py --steps 300 --warmup 10 --threads 2 --batch 128

Model as bench/peers/torch_train_step.py (common.LeNet: src/models/zoo.ts lenet()), made quantization-aware the
way the torch.ao.quantization eager-mode QAT tutorial does it: Conv+BN+ReLU fused with fuse_modules_qat (so the
convs become torch.ao.nn.intrinsic.qat.ConvBnReLU2d, which folds BN with batch statistics like qatkit's
prepareQat), Linear+ReLU fused, QuantStub after the input normalisation, prepare_qat with the default QAT
qconfig of the engine. Debian's torch 1.13 has no fbgemm; 'onednn' is preferred because its default QAT
qconfig is the same scheme as qatkit's w8a8 (int8 symmetric per-channel weights, uint8 asymmetric per-tensor
activations, moving-average min/max observers); 'qnnpack' (per-tensor weights) is the fallback.
AdamW lr 1e-3, weight decay 1e-2 on conv/linear weights only. Batches are random tensors of the same shape.

Prints ONE JSON line on stdout: {"peer": "torch-qat", "version", "engine", "threads", "batch", "warmup",
"steps", "ms_median", "ms_p90", "rss_mb_first", "rss_mb_last"}.
"""
import os
import sys

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules_qat, get_default_qat_qconfig, prepare_qat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py, also under python3 -P / -I
from common import LeNet, peer_arg_parser, print_result, time_train_steps  # noqa: E402

PREFERRED_ENGINES = ('fbgemm', 'onednn', 'qnnpack')


def qat_lenet(engine: str) -> nn.Module:
    model = LeNet(quant=QuantStub(), dequant=DeQuantStub()).train()
    model = fuse_modules_qat(model, [['conv1', 'bn1', 'relu1'], ['conv2', 'bn2', 'relu2'], ['fc1', 'relu3']])
    model.qconfig = get_default_qat_qconfig(engine)
    return prepare_qat(model)


def pick_engine(requested: str) -> str:
    supported = torch.backends.quantized.supported_engines
    if requested != 'auto':
        if requested not in supported:
            raise SystemExit(f'--engine: {requested!r} is not supported by this torch build; valid: {", ".join(e for e in supported if e != "none")}')
        return requested
    for e in PREFERRED_ENGINES:
        if e in supported:
            return e
    raise SystemExit(f'no quantized engine among {PREFERRED_ENGINES} in this torch build (has {supported})')


def main() -> None:
    ap = peer_arg_parser(__doc__, default_steps=300)
    ap.add_argument('--engine', default='auto', help='quantized engine: auto (fbgemm, else onednn, else qnnpack), or one of this build\'s engines')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    engine = pick_engine(args.engine)
    torch.backends.quantized.engine = engine
    model = qat_lenet(engine)
    print_result('torch-qat', args, time_train_steps(model, args), engine=engine)


if __name__ == '__main__':
    main()
