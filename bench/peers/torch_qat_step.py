"""PyTorch peer of bench/qat-step.ts: LeNet's eager-mode QAT training step (w8a8, AdamW), timed on this machine.

Run by the bench (never concurrently with ours); by hand:
    /usr/bin/python3 bench/peers/torch_qat_step.py --steps 300 --warmup 10 --threads 2 --batch 128

Model as bench/peers/torch_train_step.py (src/models/zoo.ts lenet()), made quantization-aware the way the
torch.ao.quantization eager-mode QAT tutorial does it: Conv+BN+ReLU fused with fuse_modules_qat (so the
convs become torch.ao.nn.intrinsic.qat.ConvBnReLU2d, which folds BN with batch statistics like qatkit's
prepareQat), Linear+ReLU fused, QuantStub after the input normalisation, prepare_qat with the default QAT
qconfig of the engine. Debian's torch 1.13 has no fbgemm; 'onednn' is preferred because its default QAT
qconfig is the same scheme as qatkit's w8a8 (int8 symmetric per-channel weights, uint8 asymmetric per-tensor
activations, moving-average min/max observers); 'qnnpack' (per-tensor weights) is the fallback.
AdamW lr 1e-3, weight decay 1e-2 on conv/linear weights only. Batches are random tensors of the same shape.

Prints ONE JSON line on stdout: {"peer": "torch-qat", "version", "engine", "threads", "batch", "warmup",
"steps", "ms_median", "ms_p90", "rss_mb_first", "rss_mb_last"}.
"""
import argparse
import json
import resource
import time

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules_qat, get_default_qat_qconfig, prepare_qat

PREFERRED_ENGINES = ('fbgemm', 'onednn', 'qnnpack')


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class QatLeNet(nn.Module):
    """LeNet with named layers so that fuse_modules_qat can find Conv+BN+ReLU and Linear+ReLU."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.normalize = Normalize(0.1307, 0.3081)
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, classes)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(self.normalize(x))
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.dequant(self.fc2(x))


def qat_lenet(engine: str) -> nn.Module:
    model = QatLeNet().train()
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


def percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile, the same definition as bench/qat-step.ts uses."""
    i = min(len(sorted_values) - 1, max(0, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[i]


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--engine', default='auto', help='quantized engine: auto (fbgemm, else onednn, else qnnpack), or one of this build\'s engines')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    engine = pick_engine(args.engine)
    torch.backends.quantized.engine = engine

    model = qat_lenet(engine)
    decay = [p for n, p in model.named_parameters() if n.endswith('weight') and p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if not (n.endswith('weight') and p.dim() > 1)]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 1e-2}, {'params': no_decay, 'weight_decay': 0.0}], lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    rss_first = None
    for i in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
        if i == min(49, args.steps - 1):
            rss_first = rss_mb()
    s = sorted(times)
    print(json.dumps({
        'peer': 'torch-qat',
        'version': torch.__version__,
        'engine': engine,
        'threads': args.threads,
        'batch': args.batch,
        'warmup': args.warmup,
        'steps': args.steps,
        'ms_median': percentile(s, 0.5),
        'ms_p90': percentile(s, 0.9),
        'rss_mb_first': rss_first,
        'rss_mb_last': rss_mb(),
    }))


if __name__ == '__main__':
    main()
