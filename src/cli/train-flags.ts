import { isTextData } from '../data/text.js';
import { UsageError } from '../validate/schema.js';

/** Flags (commander attribute names) and how they are spelled. */
const FLAG: Record<string, string> = {
  model: '--model', data: '--data', epochs: '--epochs', steps: '--steps', batch: '--batch', optimizer: '--optimizer', lr: '--lr',
  weightDecay: '--weight-decay', schedule: '--schedule', warmupSteps: '--warmup-steps', labelSmoothing: '--label-smoothing',
  clipNorm: '--clip-norm', augmentShift: '--augment-shift', seed: '--seed', threads: '--threads', inputScale: '--input-scale',
  inputMean: '--input-mean', inputStd: '--input-std', quant: '--quant', quantConfig: '--quant-config', from: '--from', distill: '--distill',
  distillWeight: '--distill-weight', distillTemperature: '--distill-temperature', bnFreezeStep: '--bn-freeze-step',
  observerFreezeStep: '--observer-freeze-step', calibBatches: '--calib-batches', oscillationDampen: '--oscillation-dampen',
  oscillationFreeze: '--oscillation-freeze', tokenizer: '--tokenizer', context: '--context', layers: '--layers', heads: '--heads',
  dim: '--dim', accumulate: '--accumulate', evalEvery: '--eval-every', healthEvery: '--health-every', checkpointEvery: '--checkpoint-every', out: '--out',
  distillData: '--distill-data', generatedSamples: '--generated-samples', kvBits: '--kv-bits', kvLayout: '--kv-layout',
  loraRank: '--lora-rank', loraAlpha: '--lora-alpha', loraMergeSteps: '--lora-merge-steps', method: '--method', blockApSteps: '--block-ap-steps',
  resume: '--resume', json: '--json', dryRun: '--dry-run',
};

const RESUMABLE = new Set(['epochs', 'steps', 'threads', 'from', 'checkpointEvery', 'out', 'resume', 'json', 'dryRun']);
const INPUT_TRANSFORM = ['inputScale', 'inputMean', 'inputStd'];
const QAT_ONLY = ['bnFreezeStep', 'observerFreezeStep', 'calibBatches', 'oscillationDampen', 'oscillationFreeze'];
const LM_QAT_METHODS = ['loraRank', 'loraAlpha', 'loraMergeSteps', 'method', 'blockApSteps'];
const LANGUAGE_MODEL_ONLY = ['tokenizer', 'context', 'layers', 'heads', 'dim', 'accumulate', 'distillData', 'generatedSamples', 'kvBits', 'kvLayout', ...LM_QAT_METHODS];
const IMAGE_ONLY = ['epochs', 'labelSmoothing', 'augmentShift', ...INPUT_TRANSFORM, ...QAT_ONLY];

/**
 * Refuses flags that would be ignored for the run asked for, naming the flag and why, rather than training
 * without them: an input transform on a zoo model, QAT settings without --quant, language-model settings on
 * images and the reverse, distillation settings without --distill, what --from decides itself, and with --resume
 * anything but the run's length, threads, checkpoint cadence and source location.
 */
export function checkApplicableFlags(o: Record<string, unknown>, given: (flag: string) => boolean, sourceData?: string): void {
  const refuse = (key: string, why: string): never => {
    throw new UsageError(`${FLAG[key] ?? key} does not apply ${why}`);
  };
  const passed = Object.keys(FLAG).filter((k) => given(k));
  if (o.resume) {
    for (const k of passed) if (!RESUMABLE.has(k)) refuse(k, "with --resume: a resumed run keeps its saved config (only --epochs, --steps, --threads, --from, --checkpoint-every may change)");
    return;
  }
  // --from a language-model run: its text decides, not --data's default.
  const data = sourceData ?? o.data;
  const dataLabel = sourceData ? `the --from run's data ${sourceData}` : `--data ${String(o.data)}`;
  const text = typeof data === 'string' && isTextData(data);
  const quantized = given('quant') || given('quantConfig');
  const model = String(o.model ?? '');
  const onnxFile = /\.onnx$/i.test(model);
  if (given('from')) {
    for (const k of ['model', 'data', ...INPUT_TRANSFORM, 'tokenizer', 'context', 'layers', 'heads', 'dim']) {
      if (given(k)) refuse(k, `with --from: the run takes the model, data, input transform, tokenizer and context of ${String(o.from)}`);
    }
  } else if (!onnxFile) {
    for (const k of INPUT_TRANSFORM) if (given(k)) refuse(k, `to --model ${model}: input scaling applies to imported .onnx models (zoo models normalise their input themselves)`);
  }
  if (text) {
    for (const k of IMAGE_ONLY) if (given(k)) refuse(k, `to language-model runs (${dataLabel} is text)`);
    if (onnxFile) for (const k of ['layers', 'heads', 'dim']) if (given(k)) refuse(k, `to --model ${model}: it sizes the zoo transformers gpt and llama`);
  } else {
    for (const k of LANGUAGE_MODEL_ONLY) if (given(k)) refuse(k, `to image data (--data ${String(o.data ?? 'mnist')}); it is for language models (text --data)`);
  }
  if (!quantized) for (const k of [...QAT_ONLY, 'healthEvery']) if (given(k)) refuse(k, 'without --quant or --quant-config (it sets quantization-aware training)');
  if (!given('distill')) for (const k of ['distillWeight', 'distillTemperature']) if (given(k)) refuse(k, 'without --distill');
  if (!quantized) for (const k of LM_QAT_METHODS) if (given(k)) refuse(k, 'without --quant or --quant-config (it is a language-model QAT method)');
  if (!given('loraRank')) for (const k of ['loraAlpha', 'loraMergeSteps']) if (given(k)) refuse(k, 'without --lora-rank');
  if (given('blockApSteps') && o.method !== 'efficientqat') refuse('blockApSteps', 'without --method efficientqat');
  if (given('loraRank') && o.method === 'efficientqat') refuse('loraRank', 'with --method efficientqat (choose one method)');
  if (given('distillData') && (!given('from') || !quantized)) refuse('distillData', 'without --from LM_RUN and --quant (it chooses the data of QAT distillation from that run)');
  if (given('generatedSamples') && o.distillData !== 'generated') refuse('generatedSamples', 'without --distill-data generated');
  if (given('kvLayout') && !given('kvBits')) refuse('kvLayout', 'without --kv-bits 8|4|2 (it chooses how the quantized KV cache is laid out)');
  // KV-cache QAT alone (float weights) fine-tunes an fp32 run; a run from scratch without --quant is that fp32 baseline.
  if (given('kvBits') && !quantized && !given('from')) refuse('kvBits', 'to an fp32 run from scratch: quantize the KV cache when fine-tuning one (--from FP32_RUN --kv-bits N, weights stay float) or with --quant PRESET');
}
