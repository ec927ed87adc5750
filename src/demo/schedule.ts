/**
 * What `qat demo` runs: the settings (PTQ calibration, QAT steps, export formats) and how much of each phase.
 * The default schedule is sized to finish in about 5 minutes on an idle 2-core machine (docs/demo.md lists the
 * measured phase times); `tiny` is the same path with a few steps and a test subset, for tests.
 */
import { CalibKind } from '../quant/ptq.js';
import { ExportFormat } from '../export/qdq.js';

export interface DemoSetting {
  /** A CNN preset (src/quant/presets.ts). */
  preset: string;
  /** PTQ's calibration of the activation ranges. */
  calib: CalibKind;
  /** QAT fine-tuning steps from the fp32 run. */
  qatSteps: number;
  /** Formats the QAT model is exported to. */
  exports: ExportFormat[];
}

export interface ImageDemoSchedule {
  name: string;
  model: 'lenet';
  data: 'mnist';
  /** fp32 training: epochs, or a step count when given. */
  fp32Epochs: number;
  fp32Steps?: number;
  batch: number;
  fp32Lr: number;
  qatLr: number;
  calibBatches: number;
  settings: DemoSetting[];
  /** Test images for the evaluations (exported files, parity); undefined: the whole test set. */
  testLimit?: number;
  latency: { batch: number; rounds: number; warmup: number };
}

export const IMAGE_DEMO_SCHEDULES: Record<string, ImageDemoSchedule> = {
  default: {
    name: 'default',
    model: 'lenet',
    data: 'mnist',
    fp32Epochs: 1,
    batch: 128,
    fp32Lr: 1e-3,
    qatLr: 2e-4,
    calibBatches: 8,
    settings: [
      { preset: 'w4a4', calib: 'percentile', qatSteps: 200, exports: ['qdq', 'int4'] },
      // 2-bit weights with 8-bit activations: where PTQ collapses on LeNet (58% in docs/benchmarks.md) and the
      // export still meets the parity contract (w2a2's 2-bit activations flip codes at rounding ties: 99.88% < 99.9%).
      { preset: 'w2a8', calib: 'minmax', qatSteps: 300, exports: ['packed'] },
      { preset: 'ternary', calib: 'minmax', qatSteps: 300, exports: ['packed'] },
    ],
    latency: { batch: 128, rounds: 30, warmup: 3 },
  },
  tiny: {
    name: 'tiny',
    model: 'lenet',
    data: 'mnist',
    fp32Epochs: 1,
    fp32Steps: 30,
    batch: 64,
    fp32Lr: 2e-3,
    qatLr: 2e-4,
    calibBatches: 1,
    settings: [
      { preset: 'w4a4', calib: 'percentile', qatSteps: 5, exports: ['qdq', 'int4'] },
      { preset: 'ternary', calib: 'minmax', qatSteps: 5, exports: ['packed'] },
    ],
    testLimit: 500,
    latency: { batch: 16, rounds: 3, warmup: 1 },
  },
};

export const IMAGE_DEMO_SCHEDULE_NAMES = Object.keys(IMAGE_DEMO_SCHEDULES);

/** One language-model setting: RTN (min/max scales, no training) and QAT fine-tuning, the QAT model exported. */
export interface LanguageModelDemoSetting {
  /** A language-model preset (src/quant/presets.ts, task 'language-model'). */
  preset: string;
  qatSteps: number;
  /** The format the QAT model's decoder is exported to (src/export/lm-decoder.ts). */
  export: 'int4' | 'matmulnbits';
}

export interface LanguageModelDemoSchedule {
  name: string;
  model: 'gpt';
  data: 'moby-dick';
  /** Zoo transformer size and window; undefined: the zoo defaults (4 layers, 4 heads, width 128, context 128). */
  layers?: number;
  heads?: number;
  dim?: number;
  context?: number;
  batch: number;
  /** fp32 pretraining: steps, peak lr, warmup (the defaults of `qat train --model gpt` are 1500, 3e-3, 100). */
  fp32Steps: number;
  fp32Lr: number;
  fp32Warmup: number;
  /** QAT fine-tuning: peak lr and warmup (`qat train --from LM_RUN` defaults: 300 steps, 3e-4, 30). */
  qatLr: number;
  qatWarmup: number;
  /** Validation every N steps during fp32 training (0: at the end only). */
  evalEvery: number;
  settings: LanguageModelDemoSetting[];
  /** Sample sizes of each export's parity check (src/export/lm-parity.ts); its bounds stay the export's own. */
  parity: { windows: number; prompts: number; newTokens: number };
  /** The samples: one prompt for every model, sampled with the same seed; tokens/s is the median over `rounds`. */
  sample: { prompt: string; tokens: number; temperature: number; topK: number; seed: number; rounds: number };
}

export const LANGUAGE_MODEL_DEMO_SCHEDULES: Record<string, LanguageModelDemoSchedule> = {
  default: {
    name: 'default',
    model: 'gpt',
    data: 'moby-dick',
    batch: 32,
    fp32Steps: 600,
    fp32Lr: 3e-3,
    fp32Warmup: 50,
    qatLr: 3e-4,
    qatWarmup: 15,
    evalEvery: 200,
    settings: [
      { preset: 'w4a8-g32', qatSteps: 150, export: 'int4' },
      { preset: 'b158', qatSteps: 200, export: 'matmulnbits' },
    ],
    parity: { windows: 128, prompts: 16, newTokens: 32 },
    sample: { prompt: 'Call me', tokens: 112, temperature: 0.8, topK: 40, seed: 0, rounds: 3 },
  },
  tiny: {
    name: 'tiny',
    model: 'gpt',
    data: 'moby-dick',
    layers: 1,
    heads: 2,
    dim: 32,
    context: 32,
    batch: 8,
    fp32Steps: 40,
    fp32Lr: 3e-3,
    fp32Warmup: 4,
    qatLr: 3e-4,
    qatWarmup: 2,
    evalEvery: 0,
    settings: [
      { preset: 'w4a8-g32', qatSteps: 6, export: 'int4' },
      { preset: 'b158', qatSteps: 6, export: 'matmulnbits' },
    ],
    parity: { windows: 16, prompts: 4, newTokens: 8 },
    sample: { prompt: 'Call me', tokens: 16, temperature: 0.8, topK: 40, seed: 0, rounds: 1 },
  },
};
