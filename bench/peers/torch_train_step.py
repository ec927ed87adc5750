"""PyTorch peer of bench/train-step.ts: the same LeNet training step (fp32, AdamW), timed on this machine.

Run by the bench (never concurrently with ours); by hand:
    /usr/bin/python3 bench/peers/torch_train_step.py --steps 500 --warmup 10 --threads 2 --batch 128

Model as src/models/zoo.ts lenet() (common.LeNet): input normalisation (x - 0.1307) / 0.3081 inside the model;
Conv 1->32 3x3 pad 1 no bias, BN, ReLU, MaxPool 2; Conv 32->64 3x3 pad 1 no bias, BN, ReLU, MaxPool 2; Flatten;
Linear 3136->128, ReLU; Linear 128->10. Loss: cross-entropy. AdamW lr 1e-3, weight decay 1e-2 on conv/linear
weights only (qatkit exempts biases and BN scale/shift, Model.noDecay). Batches are random tensors of the
same shape: the step's cost does not depend on the pixel values.

Prints ONE JSON line on stdout: {"peer": "torch", "version", "threads", "batch", "warmup", "steps",
"ms_median", "ms_p90", "rss_mb_first", "rss_mb_last"}.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py, also under python3 -P / -I
from common import LeNet, peer_arg_parser, print_result, time_train_steps  # noqa: E402


def main() -> None:
    args = peer_arg_parser(__doc__, default_steps=500).parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LeNet().train()
    print_result('torch', args, time_train_steps(model, args))


if __name__ == '__main__':
    main()
