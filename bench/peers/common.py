"""Shared by the PyTorch peers of bench/train-step.ts and bench/qat-step.ts: the LeNet of src/models/zoo.ts,
their command line, AdamW as qatkit configures it, and the timed step loop with its JSON figures.

Imported as `common` from the scripts' own folder (each script puts that folder on sys.path).
"""
import argparse
import json
import resource
import time
from typing import Optional

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LeNet(nn.Module):
    """src/models/zoo.ts lenet(): input normalisation (x - 0.1307) / 0.3081 inside the model; Conv 1->32 3x3
    pad 1 no bias, BN, ReLU, MaxPool 2; Conv 32->64 3x3 pad 1 no bias, BN, ReLU, MaxPool 2; Flatten;
    Linear 3136->128, ReLU; Linear 128->10.

    Layers are named so that fuse_modules_qat can find Conv+BN+ReLU and Linear+ReLU. `quant` and `dequant`
    (QuantStub / DeQuantStub for eager-mode QAT) wrap everything after the normalisation; identities if not given.
    """

    def __init__(self, classes: int = 10, quant: Optional[nn.Module] = None, dequant: Optional[nn.Module] = None):
        super().__init__()
        self.normalize = Normalize(0.1307, 0.3081)
        self.quant = quant if quant is not None else nn.Identity()
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
        self.dequant = dequant if dequant is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(self.normalize(x))
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.dequant(self.fc2(x))


def peer_arg_parser(doc: str, default_steps: int) -> argparse.ArgumentParser:
    """The options bench/lib/torch-peer.ts passes: --steps, --warmup, --threads, --batch."""
    ap = argparse.ArgumentParser(description=doc.split('\n')[0])
    ap.add_argument('--steps', type=int, default=default_steps)
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=128)
    return ap


def percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile, the same definition as bench/lib/timing.ts uses."""
    i = min(len(sorted_values) - 1, max(0, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[i]


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def time_train_steps(model: nn.Module, args: argparse.Namespace) -> dict:
    """Times `args.steps` training steps of `model` after `args.warmup` untimed ones: cross-entropy, AdamW lr
    1e-3 with weight decay 1e-2 on conv/linear weights only (qatkit exempts biases and BN scale/shift,
    Model.noDecay), one random batch (the step's cost does not depend on the pixel values).
    Returns median and p90 ms/step, and RSS after timed step 50 (or the last) and at the end."""
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
    return time_steps(step, args.steps)


def time_steps(step, steps: int) -> dict:
    """Times `steps` calls of `step` (warmed up by the caller): median and p90 ms/step, RSS after timed step 50
    (or the last) and at the end."""
    times = []
    rss_first = None
    for i in range(steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
        if i == min(49, steps - 1):
            rss_first = rss_mb()
    s = sorted(times)
    return {'ms_median': percentile(s, 0.5), 'ms_p90': percentile(s, 0.9), 'rss_mb_first': rss_first, 'rss_mb_last': rss_mb()}


def print_result(peer: str, args: argparse.Namespace, timings: dict, **extra) -> None:
    """The ONE JSON line the bench reads: peer, version, `extra`, the run's settings, then `timings`."""
    print(json.dumps({
        'peer': peer,
        'version': torch.__version__,
        **extra,
        'threads': args.threads,
        'batch': args.batch,
        'warmup': args.warmup,
        'steps': args.steps,
        **timings,
    }))


def serve_steps(step, ready: dict) -> None:
    """Stepping mode of a peer (bench/lib/torch-peer.ts startSteppingPeer): after warmup, print `ready` as one
    JSON line; then, for each line "N" on stdin, run N steps of `step` and print {"ms": [...]}; on "quit", print
    {"rss_mb": ...} and return. The bench asks for steps only while its own are idle."""
    import sys
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == 'quit':
            break
        times = []
        for _ in range(int(cmd)):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({'ms': times}), flush=True)
    print(json.dumps({'rss_mb': rss_mb()}), flush=True)
