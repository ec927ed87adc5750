"""PyTorch peer of bench/train-step.ts: the same LeNet training step (fp32, AdamW), timed on this machine.

Run by the bench (never concurrently with ours); by hand:
    /usr/bin/python3 bench/peers/torch_train_step.py --steps 500 --warmup 10 --threads 2 --batch 128

Model as src/models/zoo.ts lenet(): input normalisation (x - 0.1307) / 0.3081 inside the model; Conv 1->32
3x3 pad 1 no bias, BN, ReLU, MaxPool 2; Conv 32->64 3x3 pad 1 no bias, BN, ReLU, MaxPool 2; Flatten;
Linear 3136->128, ReLU; Linear 128->10. Loss: cross-entropy. AdamW lr 1e-3, weight decay 1e-2 on conv/linear
weights only (qatkit exempts biases and BN scale/shift, Model.noDecay). Batches are random tensors of the
same shape: the step's cost does not depend on the pixel values.

Prints ONE JSON line on stdout: {"peer": "torch", "version", "threads", "batch", "warmup", "steps",
"ms_median", "ms_p90", "rss_mb_first", "rss_mb_last"}.
"""
import argparse
import json
import resource
import time

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def lenet(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        Normalize(0.1307, 0.3081),
        nn.Conv2d(1, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, classes),
    )


def percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile, the same definition as bench/train-step.ts uses."""
    i = min(len(sorted_values) - 1, max(0, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[i]


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=500)
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = lenet().train()
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
        'peer': 'torch',
        'version': torch.__version__,
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
