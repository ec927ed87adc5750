/**
 * ONNX Runtime latency of an exported file, measured when the report is written (export reports hold sizes and
 * parity, not timings): an image model runs one image per call; a language-model decoder (model.json beside it)
 * prefills a short prompt and decodes one token per call with its KV cache. Median over the timed calls after a
 * warm-up, so one slow call on a shared machine does not decide the figure.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as ort from '../runtime/ort.js';
import { createFileGenerator } from '../generate/create-generator.js';
import { fileSessionOptions } from '../generate/generator.js';
import { readLanguageModelJson } from '../generate/model-json.js';
import type { ExportSummary } from './load-runs.js';

export interface LatencyOptions {
  threads?: number;
  /** Timed calls (default 30). */
  reps?: number;
  /** Untimed calls first (default 5). */
  warmup?: number;
}

export interface ExportLatency {
  /** Median milliseconds per call. */
  ms: number;
  /** What one call is: 'image, batch 1' or 'token, KV-cache decode'. */
  per: string;
  reps: number;
}

const medianOf = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * The model file of an export report: its `out` as written (relative to where qat export ran), else the same base
 * name beside the report. Undefined when neither exists (the file was moved or deleted).
 */
export function exportedFile(e: ExportSummary): string | undefined {
  const candidates = [e.out, e.out && path.join(path.dirname(e.file), path.basename(e.out))].filter((f): f is string => Boolean(f));
  return candidates.find((f) => fs.existsSync(f) && fs.statSync(f).isFile());
}

async function imageLatency(file: string, o: Required<LatencyOptions>): Promise<ExportLatency> {
  const session = await ort.InferenceSession.create(file, fileSessionOptions(o.threads));
  try {
    const meta = session.inputMetadata[0];
    const shape = meta && 'shape' in meta && meta.isTensor ? meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1)) : [1, 1, 28, 28];
    shape[0] = 1;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = new ort.Tensor('float32', Float32Array.from({ length: size }, (_, i) => (i % 251) / 251), shape);
    const feeds = { [session.inputNames[0]]: x };
    for (let i = 0; i < o.warmup; i++) await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < o.reps; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      times.push(performance.now() - t0);
    }
    return { ms: medianOf(times), per: 'image, batch 1', reps: o.reps };
  } finally {
    await session.release();
  }
}

async function decoderLatency(file: string, o: Required<LatencyOptions>): Promise<ExportLatency> {
  const json = readLanguageModelJson(file)!;
  const generator = await createFileGenerator(file, json.context, { threads: o.threads, json });
  try {
    const promptLength = Math.max(1, Math.min(8, json.context >> 1));
    const prompt = [Array.from({ length: promptLength }, (_, i) => (i * 7) % json.vocabSize)];
    // Each sequence decodes inside its window (a slide would time a re-prefill), then starts again.
    const perSequence = Math.max(1, json.context - promptLength - 1);
    const times: number[] = [];
    let calls = 0;
    while (calls < o.warmup + o.reps) {
      await generator.start(prompt);
      for (let i = 0; i < perSequence && calls < o.warmup + o.reps; i++, calls++) {
        const t0 = performance.now();
        await generator.next([(calls * 13) % json.vocabSize]);
        if (calls >= o.warmup) times.push(performance.now() - t0);
      }
    }
    return { ms: medianOf(times), per: 'token, KV-cache decode', reps: times.length };
  } finally {
    await generator.release();
  }
}

/** Latency of the export's file, or undefined when the file is gone; ONNX Runtime's refusal propagates. */
export async function measureExportLatency(e: ExportSummary, options: LatencyOptions = {}): Promise<ExportLatency | undefined> {
  const file = exportedFile(e);
  if (!file) return undefined;
  const o = { threads: options.threads ?? 2, reps: options.reps ?? 30, warmup: options.warmup ?? 5 };
  return readLanguageModelJson(file) ? decoderLatency(file, o) : imageLatency(file, o);
}
