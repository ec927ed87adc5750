import { GraphBuilder } from '../ir/builder.js';
import { DType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Rng } from '../train/rng.js';
import { Model } from './model.js';

/** Token-sequence input: int64 ids [B, T] (both symbolic) for a language model. */
export interface TokenInputSpec {
  vocabSize: number;
  /** Longest sequence (position table size, KV-cache window). */
  context: number;
}

export interface InputSpec {
  channels: number;
  height: number;
  width: number;
  /** Per-channel normalisation applied inside the graph: (x - mean) / std. */
  mean?: number[];
  std?: number[];
}

/**
 * Builds models layer by layer with PyTorch's default initialisation (kaiming_uniform with a = sqrt(5), i.e.
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases of Conv and Linear; BN scale 1, shift 0).
 */
export class ModelBuilder {
  readonly graph = new Graph();
  readonly b: GraphBuilder;
  readonly rng: Rng;
  protected params: string[] = [];
  protected runningStats: string[] = [];
  protected noDecay: string[] = [];
  private names = new Map<string, number>();
  readonly input: string;

  /** Set for token-sequence models. */
  readonly tokens?: TokenInputSpec;

  constructor(public name: string, spec: InputSpec | TokenInputSpec, seed = 0) {
    this.graph.name = name;
    this.b = new GraphBuilder(this.graph);
    this.rng = new Rng(seed);
    if ('vocabSize' in spec) {
      this.tokens = spec;
      this.input = this.b.input('input_ids', DType.INT64, ['B', 'T']);
      this.current = this.input;
      return;
    }
    this.input = this.b.input('input', DType.FLOAT, ['N', spec.channels, spec.height, spec.width]);
    this.current = this.input;
    if (spec.mean && spec.std) {
      const c = spec.channels;
      const mean = this.b.initializer('input_mean', Tensor.float([1, c, 1, 1], broadcastTo(spec.mean, c)));
      const invStd = this.b.initializer('input_inv_std', Tensor.float([1, c, 1, 1], broadcastTo(spec.std, c).map((s) => 1 / s)));
      this.current = this.b.op1('Mul', [this.b.op1('Sub', [this.input, mean], {}, { name: 'normalize_sub' }), invStd], {}, { name: 'normalize_mul' });
    }
  }

  /** The value the next layer reads by default. */
  current: string;

  protected unique(kind: string): string {
    const n = this.names.get(kind) ?? 0;
    this.names.set(kind, n + 1);
    return `${kind}${n}`;
  }

  protected uniform(name: string, dims: number[], bound: number, decay: boolean): string {
    const n = dims.reduce((a, b) => a * b, 1);
    const t = Tensor.float(dims, Array.from({ length: n }, () => this.rng.range(-bound, bound)));
    this.params.push(this.b.initializer(name, t));
    if (!decay) this.noDecay.push(name);
    return name;
  }

  /** A parameter drawn from N(0, std^2) (transformer initialisation, GPT-2 / nanoGPT). */
  protected normal(name: string, dims: number[], std: number, decay: boolean): string {
    const n = dims.reduce((a, b) => a * b, 1);
    const t = Tensor.float(dims, Array.from({ length: n }, () => this.rng.normal() * std));
    this.params.push(this.b.initializer(name, t));
    if (!decay) this.noDecay.push(name);
    return name;
  }

  protected fill(name: string, dims: number[], value: number, role: 'param' | 'stat'): string {
    const t = Tensor.float(dims, new Array(dims.reduce((a, b) => a * b, 1)).fill(value));
    this.b.initializer(name, t);
    if (role === 'param') {
      this.params.push(name);
      this.noDecay.push(name);
    } else this.runningStats.push(name);
    return name;
  }

  conv(outChannels: number, kernel: number, opts: { stride?: number; pad?: number; groups?: number; bias?: boolean; x?: string; name?: string } = {}): string {
    const x = opts.x ?? this.current;
    const inChannels = this.b.shape(x)[1] as number;
    const groups = opts.groups ?? 1;
    const name = opts.name ?? this.unique('conv');
    const fanIn = (inChannels / groups) * kernel * kernel;
    const bound = 1 / Math.sqrt(fanIn);
    const w = this.uniform(`${name}.weight`, [outChannels, inChannels / groups, kernel, kernel], bound, true);
    const inputs = [x, w];
    if (opts.bias ?? true) inputs.push(this.uniform(`${name}.bias`, [outChannels], bound, false));
    const pad = opts.pad ?? 0;
    const stride = opts.stride ?? 1;
    this.current = this.b.op1('Conv', inputs, { kernel_shape: [kernel, kernel], pads: [pad, pad, pad, pad], strides: [stride, stride], group: groups }, { name });
    return this.current;
  }

  batchNorm(opts: { x?: string; name?: string; epsilon?: number; momentum?: number } = {}): string {
    const x = opts.x ?? this.current;
    const c = this.b.shape(x)[1] as number;
    const name = opts.name ?? this.unique('bn');
    const scale = this.fill(`${name}.weight`, [c], 1, 'param');
    const bias = this.fill(`${name}.bias`, [c], 0, 'param');
    const mean = this.fill(`${name}.running_mean`, [c], 0, 'stat');
    const variance = this.fill(`${name}.running_var`, [c], 1, 'stat');
    // PyTorch's momentum 0.1 is ONNX's 0.9 (ONNX weights the running value).
    this.current = this.b.op1('BatchNormalization', [x, scale, bias, mean, variance], { epsilon: opts.epsilon ?? 1e-5, momentum: opts.momentum ?? 0.9 }, { name });
    return this.current;
  }

  relu(x = this.current): string {
    this.current = this.b.op1('Relu', [x], {}, { name: this.unique('relu') });
    return this.current;
  }

  relu6(x = this.current): string {
    this.current = this.b.op1('Clip', [x, this.b.constant(0), this.b.constant(6)], {}, { name: this.unique('relu6_') });
    return this.current;
  }

  maxPool(kernel: number, stride = kernel, x = this.current): string {
    this.current = this.b.op1('MaxPool', [x], { kernel_shape: [kernel, kernel], strides: [stride, stride] }, { name: this.unique('maxpool') });
    return this.current;
  }

  globalAvgPool(x = this.current): string {
    this.current = this.b.op1('GlobalAveragePool', [x], {}, { name: this.unique('gap') });
    return this.current;
  }

  flatten(x = this.current): string {
    this.current = this.b.op1('Flatten', [x], { axis: 1 }, { name: this.unique('flatten') });
    return this.current;
  }

  add(a: string, b: string): string {
    this.current = this.b.op1('Add', [a, b], {}, { name: this.unique('add') });
    return this.current;
  }

  /** Fully connected layer as Gemm with weight [out, in] (transB = 1), as torch.nn.Linear exports. */
  linear(outFeatures: number, opts: { x?: string; name?: string; bias?: boolean } = {}): string {
    const x = opts.x ?? this.current;
    const inFeatures = this.b.shape(x)[1] as number;
    const name = opts.name ?? this.unique('fc');
    const bound = 1 / Math.sqrt(inFeatures);
    const w = this.uniform(`${name}.weight`, [outFeatures, inFeatures], bound, true);
    const inputs = [x, w];
    if (opts.bias ?? true) inputs.push(this.uniform(`${name}.bias`, [outFeatures], bound, false));
    this.current = this.b.op1('Gemm', inputs, { transB: 1 }, { name });
    return this.current;
  }

  finish(output = this.current): Model {
    const logits = this.b.op1('Identity', [output], {}, { name: 'logits', outputs: ['logits'] });
    this.b.output(logits);
    return {
      name: this.name,
      graph: this.graph,
      input: this.input,
      output: logits,
      params: [...this.params],
      runningStats: [...this.runningStats],
      noDecay: [...this.noDecay],
    };
  }
}

function broadcastTo(values: number[], n: number): number[] {
  return values.length === n ? values : Array.from({ length: n }, (_, i) => values[i % values.length]);
}
