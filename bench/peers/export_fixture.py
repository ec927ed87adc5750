"""Exports the ONNX fixtures that qatkit's import tests read (test/fixtures/).

Run with Debian's PyTorch 1.13:  /usr/bin/python3 bench/peers/export_fixture.py

- torch_cnn.onnx (opset 17): a small BN CNN for 28x28 digits, with trained-looking BN running statistics,
  exported in inference form (BatchNormalization nodes kept, not folded into Conv).
- torch_cnn_expected.json: a fixed input (stored) and torch's eval-mode logits for it.
- torch_mlp_opset13.onnx + torch_mlp_opset13_expected.json: a tiny MLP at opset 13, to exercise opset
  normalisation (Split with a split input, ReduceMean with an axes attribute).
"""
import json
import os
import warnings

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', '..', 'test', 'fixtures')


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


class TinyMlp(nn.Module):
    """Linear -> split in two halves -> (relu(a) - mean(b)) -> Linear."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(4, 3)

    def forward(self, x):
        h = self.fc1(x)
        a, b = torch.split(h, [4, 4], dim=1)
        return self.fc2(torch.relu(a) - b.mean(dim=1, keepdim=True))


def export(model: nn.Module, example: torch.Tensor, name: str, opset: int) -> None:
    model.eval()
    path = os.path.join(FIXTURES, f'{name}.onnx')
    # TrainingMode.PRESERVE with an eval-mode model exports BatchNormalization in inference form
    # (training_mode=0); the default EVAL mode would fold BN into the preceding Conv
    # (torch.onnx.utils._model_to_graph runs _jit_pass_onnx_eval_peephole), leaving no BN to import.
    # torch warns about constant folding with PRESERVE even for eval-mode models, where it is harmless.
    warnings.filterwarnings('ignore', message='It is recommended that constant folding be turned off')
    torch.onnx.export(
        model,
        example,
        path,
        opset_version=opset,
        input_names=['input'],
        output_names=['logits'],
        dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}},
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.PRESERVE,
    )
    with torch.no_grad():
        logits = model(example)
    expected = {
        'opset': opset,
        'input_shape': list(example.shape),
        'input': example.flatten().tolist(),
        'logits_shape': list(logits.shape),
        'logits': logits.flatten().tolist(),
    }
    with open(os.path.join(FIXTURES, f'{name}_expected.json'), 'w') as f:
        json.dump(expected, f)
    print(f'{path}: {os.path.getsize(path)} bytes, logits[0] = {logits[0].tolist()}')


def main() -> None:
    os.makedirs(FIXTURES, exist_ok=True)
    torch.manual_seed(0)
    model = cnn()
    # A few train-mode batches so BN running mean/var move away from 0/1.
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.rand(16, 1, 28, 28))
    images = torch.rand(2, 1, 28, 28)
    export(model, images, 'torch_cnn', 17)

    torch.manual_seed(0)
    mlp = TinyMlp()
    export(mlp, torch.rand(2, 6), 'torch_mlp_opset13', 13)


if __name__ == '__main__':
    main()
