import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import '../../src/ops';
import { GraphBuilder } from '../../src/ir/builder';
import { DType } from '../../src/ir/dtype';
import { Graph } from '../../src/ir/graph';
import { Session } from '../../src/runtime/session';
import { emitOptimizer, OptimizerConfig } from '../../src/train/optimizer';
import { learningRate } from '../../src/train/schedule';

const P = [0.5, -1.0, 2.0];
const G = [0.1, -0.3, 0.05];

/** Runs `steps` optimizer steps in the graph with a constant gradient; returns the parameter after each. */
async function runSteps(config: OptimizerConfig, steps: number, lr: number, decay = true, grads: number[][] = [G]) {
  const g = new Graph();
  const b = new GraphBuilder(g);
  const params = grads.map((_, i) => b.input(`p${i}`, DType.FLOAT, [3]));
  const gradIn = grads.map((_, i) => b.input(`g${i}`, DType.FLOAT, [3]));
  const lrIn = b.input('lr', DType.FLOAT, []);
  const stepIn = b.input('step', DType.FLOAT, []);
  const opt = emitOptimizer(b, params.map((p, i) => ({ param: p, grad: gradIn[i], decay })), config, lrIn, stepIn);
  const outs = params.map((p) => b.output(b.identity(opt.updated.get(p)!)));
  for (const s of opt.state) b.output(s.output);
  b.output(opt.gradNorm);
  const session = await Session.create(g, { threads: 1 });
  let values: Float32Array[] = params.map(() => Float32Array.from(P));
  const state = new Map<string, Float32Array>(opt.state.map((s) => [s.input, Float32Array.from(s.initial.data as Float32Array)]));
  const history: number[][] = [];
  let gradNorm = 0;
  for (let t = 1; t <= steps; t++) {
    const feeds: Record<string, ort.Tensor> = { lr: new ort.Tensor('float32', [lr], []), step: new ort.Tensor('float32', [t], []) };
    params.forEach((p, i) => {
      feeds[p] = new ort.Tensor('float32', values[i], [3]);
      feeds[gradIn[i]] = new ort.Tensor('float32', Float32Array.from(grads[i]), [3]);
    });
    for (const s of opt.state) feeds[s.input] = new ort.Tensor('float32', state.get(s.input)!, [3]);
    const r = await session.run(feeds);
    values = outs.map((o) => r[o].data as Float32Array);
    for (const s of opt.state) state.set(s.input, r[s.output].data as Float32Array);
    gradNorm = (r[opt.gradNorm].data as Float32Array)[0];
    history.push(Array.from(values[0]));
  }
  return { history, gradNorm };
}

const close = (a: number[], b: number[], tol = 1e-5) => a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < tol, `${a} vs ${b}`));

test('AdamW matches torch.optim.AdamW formulas over three steps (decoupled weight decay, bias correction)', async () => {
  const [lr, b1, b2, eps, wd] = [0.01, 0.9, 0.999, 1e-8, 0.1];
  const { history } = await runSteps({ kind: 'adamw', beta1: b1, beta2: b2, eps, weightDecay: wd }, 3, lr);
  const p = [...P], m = [0, 0, 0], v = [0, 0, 0];
  for (let t = 1; t <= 3; t++) {
    for (let i = 0; i < 3; i++) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * G[i];
      v[i] = b2 * v[i] + (1 - b2) * G[i] ** 2;
      const mh = m[i] / (1 - b1 ** t), vh = v[i] / (1 - b2 ** t);
      p[i] -= (lr * mh) / (Math.sqrt(vh) + eps);
    }
    close(history[t - 1], p);
  }
});

test('Adam adds L2 weight decay to the gradient; no decay when the parameter is exempt', async () => {
  const [lr, wd] = [0.01, 0.1];
  const withDecay = await runSteps({ kind: 'adam', weightDecay: wd }, 1, lr);
  const exempt = await runSteps({ kind: 'adam', weightDecay: wd }, 1, lr, false);
  // First Adam step moves each coordinate by lr * sign(g') (bias-corrected m/sqrt(v) = g'/|g'|).
  close(withDecay.history[0], P.map((p, i) => p - lr * Math.sign(G[i] + wd * p)));
  close(exempt.history[0], P.map((p, i) => p - lr * Math.sign(G[i])));
});

test('SGD with momentum and Nesterov matches torch.optim.SGD', async () => {
  const [lr, mu, wd] = [0.1, 0.9, 0.01];
  for (const nesterov of [false, true]) {
    const { history } = await runSteps({ kind: 'sgd', momentum: mu, nesterov, weightDecay: wd }, 3, lr);
    const p = [...P], buf = [0, 0, 0];
    for (let t = 0; t < 3; t++) {
      for (let i = 0; i < 3; i++) {
        const g = G[i] + wd * p[i];
        buf[i] = t === 0 ? g : mu * buf[i] + g;
        p[i] -= lr * (nesterov ? g + mu * buf[i] : buf[i]);
      }
      close(history[t], p);
    }
  }
});

test('plain SGD without momentum keeps no state', async () => {
  const { history } = await runSteps({ kind: 'sgd', momentum: 0, weightDecay: 0 }, 1, 0.5);
  close(history[0], P.map((p, i) => p - 0.5 * G[i]));
});

test('gradient clipping by global norm scales every gradient by clip / norm', async () => {
  const grads = [[3, 0, 0], [0, 4, 0]];
  const { history, gradNorm } = await runSteps({ kind: 'sgd', momentum: 0, clipNorm: 1 }, 1, 1, false, grads);
  assert.ok(Math.abs(gradNorm - 5) < 1e-5);
  close(history[0], [P[0] - 3 / 5, P[1], P[2]], 1e-5);
});

test('learning-rate schedules: constant, step, cosine with warmup', () => {
  assert.equal(learningRate({ kind: 'constant', lr: 0.1 }, 50, 100), 0.1);
  assert.ok(Math.abs(learningRate({ kind: 'step', lr: 0.1, stepSize: 10, gamma: 0.5 }, 25, 100) - 0.025) < 1e-12);
  const cos = { kind: 'cosine' as const, lr: 1, warmupSteps: 10 };
  assert.ok(Math.abs(learningRate(cos, 0, 110) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(cos, 9, 110) - 1) < 1e-12);
  assert.ok(Math.abs(learningRate(cos, 10, 110) - 1) < 1e-12);
  assert.ok(Math.abs(learningRate(cos, 60, 110) - 0.5) < 1e-12);
  assert.ok(learningRate(cos, 110, 110) < 1e-12);
});
