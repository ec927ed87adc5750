/**
 * A classifier for MNIST-shaped input small enough for fixtures (about 2 KB of ONNX): Conv 1->1 4x4 stride 4 with
 * a bias, BatchNormalization, ReLU, Flatten, Gemm 49->classes. The conv bias before BN is deliberate (issue 14's
 * export case); the malformed-input corpus and the fuzz suite mutate this model and its checkpoints.
 */
import { ModelBuilder } from '../../src/models/builder';
import { Model } from '../../src/models/model';

export function tinyModel(classes = 10, seed = 0): Model {
  const m = new ModelBuilder('tiny', { channels: 1, height: 28, width: 28, mean: [0.1307], std: [0.3081] }, seed);
  m.conv(1, 4, { stride: 4, bias: true });
  m.batchNorm();
  m.relu();
  m.flatten();
  m.linear(classes);
  return m.finish();
}
