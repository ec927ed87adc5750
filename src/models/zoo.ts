import { ModelBuilder, InputSpec } from './builder.js';
import { Model } from './model.js';

export const ZOO_MODELS = ['mlp', 'lenet', 'resnet8', 'mobilenet'] as const;
export type ZooModelName = (typeof ZOO_MODELS)[number];

export interface ZooOptions {
  input: InputSpec;
  classes?: number;
  seed?: number;
}

/** Two hidden layers of 256 and 128 units. */
export function mlp(opts: ZooOptions): Model {
  const m = new ModelBuilder('mlp', opts.input, opts.seed);
  m.flatten();
  m.linear(256);
  m.relu();
  m.linear(128);
  m.relu();
  m.linear(opts.classes ?? 10);
  return m.finish();
}

/**
 * LeNet as the issue defines it: Conv 1->32 3x3 pad 1, BN, ReLU, MaxPool 2; Conv 32->64 3x3 pad 1, BN, ReLU,
 * MaxPool 2; Flatten; Gemm 3136->128, ReLU; Gemm 128->10. Convs feeding BN have no bias (its true gradient is
 * zero, and Adam amplifies the noise).
 */
export function lenet(opts: ZooOptions): Model {
  const m = new ModelBuilder('lenet', opts.input, opts.seed);
  m.conv(32, 3, { pad: 1, bias: false });
  m.batchNorm();
  m.relu();
  m.maxPool(2);
  m.conv(64, 3, { pad: 1, bias: false });
  m.batchNorm();
  m.relu();
  m.maxPool(2);
  m.flatten();
  m.linear(128);
  m.relu();
  m.linear(opts.classes ?? 10);
  return m.finish();
}

/** CIFAR-style ResNet-8 (He et al. 2016, n = 1): a stem and three basic blocks of widths 16/32/64. */
export function resnet8(opts: ZooOptions): Model {
  const m = new ModelBuilder('resnet8', opts.input, opts.seed);
  m.conv(16, 3, { pad: 1, bias: false, name: 'stem' });
  m.batchNorm({ name: 'stem_bn' });
  m.relu();
  let width = 16;
  [16, 32, 64].forEach((out, stage) => {
    const stride = stage === 0 ? 1 : 2;
    const x = m.current;
    const p = `layer${stage + 1}`;
    m.conv(out, 3, { stride, pad: 1, bias: false, name: `${p}.conv1` });
    m.batchNorm({ name: `${p}.bn1` });
    m.relu();
    m.conv(out, 3, { pad: 1, bias: false, name: `${p}.conv2` });
    const main = m.batchNorm({ name: `${p}.bn2` });
    let shortcut = x;
    if (stride !== 1 || out !== width) {
      m.conv(out, 1, { stride, bias: false, x, name: `${p}.downsample` });
      shortcut = m.batchNorm({ name: `${p}.downsample_bn` });
    }
    m.add(main, shortcut);
    m.relu();
    width = out;
  });
  m.globalAvgPool();
  m.flatten();
  m.linear(opts.classes ?? 10);
  return m.finish();
}

/**
 * A small MobileNetV2 (Sandler et al. 2018): inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1
 * linear projection) with ReLU6, sized for 28x28 inputs.
 */
export function mobilenet(opts: ZooOptions): Model {
  const m = new ModelBuilder('mobilenet', opts.input, opts.seed);
  m.conv(16, 3, { pad: 1, bias: false, name: 'stem' });
  m.batchNorm({ name: 'stem_bn' });
  m.relu6();
  // [expansion t, output channels c, repeats n, first stride s]
  const settings: [number, number, number, number][] = [
    [1, 16, 1, 1],
    [4, 24, 2, 2],
    [4, 32, 2, 2],
    [4, 64, 1, 1],
  ];
  let inC = 16;
  let block = 0;
  for (const [t, c, n, s] of settings) {
    for (let i = 0; i < n; i++) {
      const stride = i === 0 ? s : 1;
      const x = m.current;
      const p = `block${block++}`;
      const hidden = inC * t;
      if (t !== 1) {
        m.conv(hidden, 1, { bias: false, name: `${p}.expand` });
        m.batchNorm({ name: `${p}.expand_bn` });
        m.relu6();
      }
      m.conv(hidden, 3, { stride, pad: 1, groups: hidden, bias: false, name: `${p}.depthwise` });
      m.batchNorm({ name: `${p}.depthwise_bn` });
      m.relu6();
      m.conv(c, 1, { bias: false, name: `${p}.project` });
      const out = m.batchNorm({ name: `${p}.project_bn` });
      if (stride === 1 && inC === c) m.add(out, x);
      inC = c;
    }
  }
  m.conv(128, 1, { bias: false, name: 'head' });
  m.batchNorm({ name: 'head_bn' });
  m.relu6();
  m.globalAvgPool();
  m.flatten();
  m.linear(opts.classes ?? 10);
  return m.finish();
}

export function zooModel(name: string, opts: ZooOptions): Model {
  switch (name) {
    case 'mlp': return mlp(opts);
    case 'lenet': return lenet(opts);
    case 'resnet8': return resnet8(opts);
    case 'mobilenet': return mobilenet(opts);
    default: throw new Error(`unknown model '${name}': choose one of ${ZOO_MODELS.join(', ')} or a path to an .onnx file`);
  }
}
