import { DataSplit } from '../data/dataset.js';
import { initializersToInputs } from '../ir/infer.js';
import { Model } from '../models/model.js';
import { withStoredPrecision } from '../models/stored-precision.js';
import { encodeModel } from '../onnx/model-io.js';
import { prepareQat } from '../quant/qat.js';
import { presetConfig } from '../quant/presets.js';
import { lowerCustomOps } from '../runtime/lower.js';
import { defaultOptimizer } from '../train/optimizer.js';
import { buildEvalGraph, buildTrainStep } from '../train/step-graph.js';

/** What the page needs to know to drive the step graph: every name it feeds and fetches, and where state lives. */
export interface QatManifest {
  model: string;
  quant: string;
  batch: number;
  classes: number;
  /** [C, H, W] of one sample. */
  sampleShape: number[];
  step: {
    images: string;
    labels: string;
    lr: string;
    step: string;
    /** Scalar gating activation observers (1 update, 0 frozen); absent when the model has none. */
    observe?: string;
    loss: string;
    correct: string;
  };
  /**
   * Carried values in the order of state.bin (float32, concatenated): fed as `input`, fetched as `output`, and
   * the output of step t is the input of step t+1 (src/train/trainer.ts's contract).
   */
  carried: { input: string; output: string; kind: 'param' | 'optimizer' | 'running-stat'; dims: number[]; offset: number; length: number }[];
  /** The QAT model's inference graph (fake quantization, BN with running statistics): carried non-optimizer values as feeds. */
  eval: { images: string; logits: string; feeds: string[] };
  /** The schedule `qat train` uses for QAT fine-tuning from fp32 (cosine from lr), with its observer freeze. */
  schedule: { lr: number; kind: 'cosine'; observerFreezeFraction: number };
}

export interface QatBundle {
  manifest: QatManifest;
  /** The training-step model: forward, loss, backward, AdamW, custom ops lowered to standard ONNX. */
  stepModel: Uint8Array;
  evalModel: Uint8Array;
  /** Initial carried values (float32 little-endian), laid out as manifest.carried. */
  state: Uint8Array;
}

export interface QatBundleOptions {
  quant?: string;
  batch?: number;
  /** Calibration batches (of `batch` training images) for the activation ranges, as `qat train --calib-batches`. */
  calibBatches?: number;
  lr?: number;
  threads?: number;
}

/**
 * Builds, from an fp32 classifier, the training step that the page runs on onnxruntime-web: the model prepared
 * for QAT as `qat train --from FP32 --quant PRESET` prepares it (BN folded, activation ranges calibrated on training
 * images, fake quantizers inserted), then the step graph with BN frozen to its running statistics (the second QAT
 * phase of Krishnamoorthi 2018; one graph for the whole in-page run). Custom ops are lowered to standard ONNX and
 * com.microsoft ops are not used, so the wasm build needs nothing beyond the ONNX standard operator set.
 */
export async function buildQatBundle(fp32: Model, data: DataSplit, options: QatBundleOptions = {}): Promise<QatBundle> {
  const quant = options.quant ?? 'w4a4';
  const batch = options.batch ?? 32;
  const train = data.train;
  const calibCount = Math.min(train.count, (options.calibBatches ?? 8) * batch);
  const qat = withStoredPrecision(await prepareQat(fp32, presetConfig(quant), { images: train.images, count: calibCount, sampleShape: train.shape }, quant, options.threads ?? 2));
  const step = buildTrainStep(qat, { batchSize: batch, classes: train.classes, optimizer: defaultOptimizer('adamw'), freezeBatchNorm: true });
  const stepModel = encodeModel(lowerCustomOps(step.graph));

  const carried: QatManifest['carried'] = [];
  let offset = 0;
  for (const c of step.carried) {
    carried.push({ input: c.input, output: c.output, kind: c.kind, dims: [...c.initial.dims], offset, length: c.initial.size });
    offset += c.initial.size;
  }
  const state = new Float32Array(offset);
  step.carried.forEach((c, i) => state.set(c.initial.data as Float32Array, carried[i].offset));

  const evalGraph = buildEvalGraph(qat);
  const evalFeeds = step.carried.filter((c) => c.kind !== 'optimizer').map((c) => c.input);
  initializersToInputs(evalGraph, evalFeeds.filter((n) => evalGraph.initializers.has(n)));
  const evalModel = encodeModel(lowerCustomOps(evalGraph));

  const manifest: QatManifest = {
    model: qat.name,
    quant,
    batch,
    classes: train.classes,
    sampleShape: [...train.shape],
    step: { images: step.input, labels: step.labels, lr: step.lr, step: step.step, observe: step.observe, loss: step.loss, correct: step.correct },
    carried,
    eval: { images: qat.input, logits: qat.output, feeds: evalFeeds.filter((n) => evalGraph.inputs.some((v) => v.name === n)) },
    schedule: { lr: options.lr ?? 2e-4, kind: 'cosine', observerFreezeFraction: 0.75 },
  };
  return { manifest, stepModel, evalModel, state: new Uint8Array(state.buffer) };
}
