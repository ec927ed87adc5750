import { GraphBuilder } from '../ir/builder.js';
import { Tensor } from '../ir/tensor.js';

export const OPTIMIZERS = ['adamw', 'adam', 'sgd'] as const;
export type OptimizerKind = (typeof OPTIMIZERS)[number];

export interface OptimizerConfig {
  kind: OptimizerKind;
  weightDecay?: number;
  /** Adam */
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** SGD */
  momentum?: number;
  nesterov?: boolean;
  /** Clip gradients by their global L2 norm (Pascanu et al. 2013); 0 or undefined disables. */
  clipNorm?: number;
}

export interface ParamGrad {
  param: string;
  grad: string;
  decay: boolean;
}

export interface StateSlot {
  /** Graph input holding the current value. */
  input: string;
  /** Graph output holding the updated value. */
  output: string;
  initial: Tensor;
}

export interface OptimizerGraph {
  /** Updated parameter value per parameter. */
  updated: Map<string, string>;
  state: StateSlot[];
  gradNorm: string;
}

export function defaultOptimizer(kind: OptimizerKind): OptimizerConfig {
  return kind === 'sgd'
    ? { kind, momentum: 0.9, nesterov: false, weightDecay: 5e-4 }
    : { kind, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: kind === 'adamw' ? 1e-2 : 0 };
}

/**
 * Emits one optimizer step into the graph. `lr` is a scalar input (the schedule lives in the trainer) and
 * `step` the 1-based step count as a float scalar, for Adam's bias correction. Formulas follow PyTorch's
 * torch.optim.SGD / Adam / AdamW so that runs compare one to one.
 */
export function emitOptimizer(b: GraphBuilder, params: ParamGrad[], config: OptimizerConfig, lr: string, step: string): OptimizerGraph {
  const state: StateSlot[] = [];
  const updated = new Map<string, string>();
  const wd = config.weightDecay ?? 0;
  const newState = (param: string, slot: string): { input: string; output: (v: string) => string } => {
    const t = b.type(param);
    const initial = Tensor.zeros(t.dtype, t.shape as number[]);
    const input = b.input(`${slot}/${param}`, t.dtype, t.shape);
    return {
      input,
      output: (v: string) => {
        const out = b.op1('Identity', [v], {}, { outputs: [`${slot}/${param}/next`] });
        state.push({ input, output: out, initial });
        return out;
      },
    };
  };

  // Global-norm clipping: g *= min(1, c / (||g|| + 1e-6)).
  const sq = params.map((p) => b.op1('ReduceSumSquare', [p.grad], { keepdims: 0 }));
  const gradNorm = b.sqrt(sq.length === 1 ? sq[0] : b.op1('Sum', sq));
  let grads = params.map((p) => p.grad);
  if (config.clipNorm && config.clipNorm > 0) {
    const factor = b.op1('Min', [b.div(b.constant(config.clipNorm), b.add(gradNorm, b.constant(1e-6))), b.constant(1)]);
    grads = grads.map((g) => b.mul(g, factor));
  }

  params.forEach((p, i) => {
    let g = grads[i];
    const decay = p.decay && wd > 0;
    if (config.kind === 'sgd') {
      if (decay) g = b.add(g, b.mul(p.param, b.constant(wd)));
      const mu = config.momentum ?? 0;
      let direction = g;
      if (mu > 0) {
        const buf = newState(p.param, 'momentum');
        const next = buf.output(b.add(b.mul(buf.input, b.constant(mu)), g));
        direction = config.nesterov ? b.add(g, b.mul(next, b.constant(mu))) : next;
      }
      updated.set(p.param, b.sub(p.param, b.mul(direction, lr)));
      return;
    }
    const b1 = config.beta1 ?? 0.9;
    const b2 = config.beta2 ?? 0.999;
    const eps = config.eps ?? 1e-8;
    if (decay && config.kind === 'adam') g = b.add(g, b.mul(p.param, b.constant(wd)));
    const m = newState(p.param, 'adam_m');
    const v = newState(p.param, 'adam_v');
    const mNext = m.output(b.add(b.mul(m.input, b.constant(b1)), b.mul(g, b.constant(1 - b1))));
    const vNext = v.output(b.add(b.mul(v.input, b.constant(b2)), b.mul(b.mul(g, g), b.constant(1 - b2))));
    // Bias corrections 1 - beta^t, computed once per step from the step input.
    const bc1 = b.sub(b.constant(1), b.op1('Pow', [b.constant(b1), step]));
    const bc2 = b.sub(b.constant(1), b.op1('Pow', [b.constant(b2), step]));
    const stepSize = b.div(lr, bc1);
    const denom = b.add(b.div(b.sqrt(vNext), b.sqrt(bc2)), b.constant(eps));
    let param = p.param;
    if (decay && config.kind === 'adamw') param = b.mul(param, b.sub(b.constant(1), b.mul(lr, b.constant(wd))));
    updated.set(p.param, b.sub(param, b.mul(b.div(mNext, denom), stepSize)));
  });
  return { updated, state, gradNorm };
}
