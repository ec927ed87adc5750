// Types of web/qat-step.js for the TypeScript tests that run it in Node.
export interface OrtLike {
  InferenceSession: { create(model: Uint8Array, options?: object): Promise<any> };
  Tensor: new (type: any, data: any, dims?: readonly number[]) => any;
}
export interface QatBundleLike {
  manifest: import('../src/serve/qat-bundle.js').QatManifest;
  stepModel: Uint8Array;
  evalModel: Uint8Array;
  state: Uint8Array;
}
export interface StepOutcome { loss: number; correct: number }
export function cosineLearningRate(lr: number, step: number, total: number): number;
export function seededRandom(seed: number): () => number;
export class BatchSampler {
  constructor(pixels: Uint8Array, labels: Uint8Array, sampleSize: number, batch: number, seed?: number);
  next(images: Float32Array, labels: BigInt64Array): void;
}
export class QatStepRunner {
  static create(ort: OrtLike, bundle: QatBundleLike, sessionOptions?: object): Promise<QatStepRunner>;
  stepCount: number;
  images: { data: Float32Array };
  labels: { data: BigInt64Array };
  state: Map<string, { data: Float32Array }>;
  trainStep(lr: number, observe?: boolean): Promise<StepOutcome>;
  train(sampler: BatchSampler, steps: number, onStep?: (info: StepOutcome & { step: number; lr: number; ms: number }) => unknown, options?: { lr?: number }): Promise<void>;
  evaluate(pixels: Uint8Array, labels: Uint8Array, batch?: number): Promise<number>;
  logits(images: Float32Array, count: number): Promise<Float32Array>;
  release(): Promise<void>;
}
