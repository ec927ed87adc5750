import { differentiate } from '../autodiff/grad';
import { GraphBuilder } from '../ir/builder';
import { DType } from '../ir/dtype';
import { Graph } from '../ir/graph';
import { inferTypes, initializersToInputs } from '../ir/infer';
import { Tensor } from '../ir/tensor';
import { Model } from '../models/model';
import '../ops';
import { convsFromPatches } from '../ops/conv';
import { elideOutputCopies } from './elide-output-copies';
import { toTrainingBatchNorm } from './batchnorm-mode';
import { fuseConvBatchNorm } from './fuse-conv-batchnorm';
import { hoistMaxPools } from './hoist-max-pool';
import { OBSERVE_INPUT, toTrainingObservers, ObserverStatNames } from '../quant/observer-op';
import { correctCount, softmaxCrossEntropy } from './losses';
import { emitOptimizer, OptimizerConfig } from './optimizer';

export interface CarriedValue {
  /** Graph input holding the value before the step. */
  input: string;
  /** Graph output holding it after the step. */
  output: string;
  kind: 'param' | 'optimizer' | 'running-stat';
  /** Value at the start of training. */
  initial: Tensor;
}

/** Hook that adds terms to the loss (distillation, oscillation dampening); gets the logits. */
export type ExtraLoss = (b: GraphBuilder, logits: string, graph: Graph) => { loss: string; stopGradient?: string[]; crossEntropyWeight?: number };

export interface TrainStepOptions {
  batchSize: number;
  classes: number;
  optimizer: OptimizerConfig;
  labelSmoothing?: number;
  extraLoss?: ExtraLoss;
  /** Extensions that add loss terms, carried state, metrics and parameter-update rules (e.g. oscillation control). */
  plugins?: StepPlugin[];
  /**
   * Use BN running statistics instead of batch statistics (and stop updating them): the "freeze BN" phase of
   * QAT (Krishnamoorthi 2018), after which folded weights are exactly those of the integer model.
   */
  freezeBatchNorm?: boolean;
}

/**
 * A training-step extension. `build` runs after the loss is formed and before differentiation; it may add a
 * loss term and carried state (saved with the optimizer state). `afterUpdate` may replace parameter updates
 * (e.g. keep frozen weights fixed).
 */
export interface StepPlugin {
  name: string;
  build(b: GraphBuilder, graph: Graph, model: Model): {
    loss?: string;
    stopGradient?: string[];
    state?: { input: string; output: string; initial: Tensor }[];
    metrics?: Record<string, string>;
    afterUpdate?: (updated: Map<string, string>) => void;
  };
}

export interface TrainStepGraph {
  graph: Graph;
  input: string;
  labels: string;
  lr: string;
  step: string;
  /** Scalar input gating activation observers (1: update ranges, 0: frozen); undefined without observers. */
  observe?: string;
  loss: string;
  correct: string;
  gradNorm: string;
  carried: CarriedValue[];
  /** Extra scalar outputs by metric name (from plugins). */
  metrics: Record<string, string>;
}

/**
 * Builds ONE graph for a whole training step: forward with batch statistics, loss, reverse-mode gradients,
 * optimizer update. Inputs: batch, labels, lr, step and every carried value; outputs: loss, correct count,
 * gradient norm and every carried value's update.
 */
export function buildTrainStep(model: Model, options: TrainStepOptions): TrainStepGraph {
  const base = model.graph.clone();
  const inputInfo = base.inputs.find((v) => v.name === model.input);
  if (!inputInfo) throw new Error(`model '${model.name}' has no input '${model.input}'`);
  inputInfo.shape = [options.batchSize, ...inputInfo.shape.slice(1)];
  const observerStats = model.observerStats ?? [];
  const stateNames = [...model.params, ...model.runningStats, ...observerStats];
  const initial = new Map(stateNames.map((n) => [n, base.initializers.get(n)!]));
  initializersToInputs(base, stateNames);
  inferTypes(base);

  const bnMode = options.freezeBatchNorm ? { graph: base, runningStats: [] } : toTrainingBatchNorm(base);
  let graph = bnMode.graph;
  const runningStats = bnMode.runningStats;
  let observe: string | undefined;
  let observers: ObserverStatNames[] = [];
  if (observerStats.length) {
    observe = new GraphBuilder(graph).input(OBSERVE_INPUT, DType.FLOAT, []);
    ({ graph, stats: observers } = toTrainingObservers(graph, observe));
  }
  // Hoisting first puts each MaxPool right after its batch norm, where ConvBatchNormTrain can absorb it.
  hoistMaxPools(graph);
  fuseConvBatchNorm(graph, model.params);
  graph.outputs = [];
  graph.name = `${model.name}_train_step`;
  const b = new GraphBuilder(graph, 'step/');
  const labels = b.input('labels', DType.INT64, [options.batchSize]);
  const lr = b.input('lr', DType.FLOAT, []);
  const step = b.input('step', DType.FLOAT, []);

  let loss = softmaxCrossEntropy(b, model.output, labels, options.classes, options.labelSmoothing ?? 0);
  const stopGradient: string[] = [];
  if (options.extraLoss) {
    const extra = options.extraLoss(b, model.output, graph);
    if (extra.crossEntropyWeight !== undefined && extra.crossEntropyWeight !== 1) loss = b.mul(loss, b.scalarLike(extra.crossEntropyWeight, loss));
    loss = b.add(loss, extra.loss);
    stopGradient.push(...(extra.stopGradient ?? []));
  }
  const pluginParts = (options.plugins ?? []).map((p) => p.build(b, graph, model));
  for (const part of pluginParts) {
    if (part.loss) loss = b.add(loss, part.loss);
    stopGradient.push(...(part.stopGradient ?? []));
  }
  loss = b.op1('Identity', [loss], {}, { outputs: ['loss'] });
  const correct = b.op1('Identity', [correctCount(b, model.output, labels)], {}, { outputs: ['correct'] });

  const grads = differentiate(graph, { loss, wrt: model.params, stopGradient });
  convsFromPatches(graph);
  const noDecay = new Set(model.noDecay);
  const opt = emitOptimizer(
    b,
    model.params.map((p) => ({ param: p, grad: grads.get(p)!, decay: !noDecay.has(p) })),
    options.optimizer,
    lr,
    step,
  );
  const gradNorm = b.op1('Identity', [opt.gradNorm], {}, { outputs: ['grad_norm'] });
  for (const part of pluginParts) part.afterUpdate?.(opt.updated);

  const carried: CarriedValue[] = [];
  for (const p of model.params) {
    const out = b.op1('Identity', [opt.updated.get(p)!], {}, { outputs: [`${p}/next`] });
    carried.push({ input: p, output: out, kind: 'param', initial: initial.get(p)! });
  }
  for (const s of opt.state) carried.push({ input: s.input, output: s.output, kind: 'optimizer', initial: s.initial });
  for (const r of runningStats) {
    carried.push({ input: r.mean, output: r.newMean, kind: 'running-stat', initial: initial.get(r.mean)! });
    carried.push({ input: r.var, output: r.newVar, kind: 'running-stat', initial: initial.get(r.var)! });
  }
  for (const o of observers) {
    carried.push({ input: o.min, output: o.newMin, kind: 'running-stat', initial: initial.get(o.min)! });
    carried.push({ input: o.max, output: o.newMax, kind: 'running-stat', initial: initial.get(o.max)! });
  }
  // Frozen BN statistics still travel with the run (evaluation and checkpoints read them), unchanged.
  if (options.freezeBatchNorm) {
    for (const name of model.runningStats) {
      const out = b.op1('Identity', [name], {}, { outputs: [`${name}/next`] });
      carried.push({ input: name, output: out, kind: 'running-stat', initial: initial.get(name)! });
    }
  }
  const metrics: Record<string, string> = {};
  for (const part of pluginParts) {
    for (const st of part.state ?? []) carried.push({ ...st, kind: 'optimizer' });
    Object.assign(metrics, part.metrics ?? {});
  }
  for (const v of [loss, correct, gradNorm, ...carried.map((c) => c.output), ...Object.values(metrics)]) b.output(v);
  elideOutputCopies(graph);
  return { graph, input: model.input, labels, lr, step, observe, loss, correct, gradNorm, carried, metrics };
}

/** The inference graph (BN with running statistics), batch dim symbolic, for evaluation. */
export function buildEvalGraph(model: Model): Graph {
  const g = model.graph.clone();
  g.name = `${model.name}_eval`;
  return g;
}
