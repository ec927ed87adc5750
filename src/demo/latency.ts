/**
 * ONNX Runtime latency of model files, measured the same way for every file: one session per file (default
 * optimisation level, as a user gets it), the same input batch for all, warm-up runs, then the files timed in
 * alternation round after round so that load from other processes falls on all of them alike; the median of the
 * rounds is each file's figure.
 */
import * as ort from '../runtime/ort.js';
import { fileSessionOptions } from '../generate/generator.js';

export interface LatencyOptions {
  threads: number;
  /** Timed rounds (each runs every file once). */
  rounds: number;
  warmup: number;
  /** ONNX Runtime session config entries per file (e.g. a language model's model.json sessionConfig). */
  sessionConfig?: (file: string) => Record<string, string> | undefined;
}

export interface FileLatency {
  file: string;
  /** Median milliseconds per run over the rounds. */
  median_ms: number;
  rounds: number;
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Times `files` on `feeds(session)` (the same values for each file), interleaved; returns one median per file. */
export async function timeFilesAlternating(
  files: string[],
  feeds: (session: ort.InferenceSession) => Record<string, ort.Tensor>,
  options: LatencyOptions,
): Promise<FileLatency[]> {
  const sessions: ort.InferenceSession[] = [];
  try {
    for (const f of files) sessions.push(await ort.InferenceSession.create(f, fileSessionOptions(options.threads, options.sessionConfig?.(f))));
    const inputs = sessions.map(feeds);
    for (let i = 0; i < options.warmup; i++) for (const [k, s] of sessions.entries()) await s.run(inputs[k]);
    const times = sessions.map(() => [] as number[]);
    for (let r = 0; r < options.rounds; r++) {
      for (const [k, s] of sessions.entries()) {
        const t0 = performance.now();
        await s.run(inputs[k]);
        times[k].push(performance.now() - t0);
      }
    }
    return files.map((file, k) => ({ file, median_ms: median(times[k]), rounds: options.rounds }));
  } finally {
    for (const s of sessions) await s.release();
  }
}

/** An image batch [n, ...shape] of test images, as the same feed for every classifier file. */
export function imageBatchFeeds(images: Float32Array, shape: number[], n: number): (session: ort.InferenceSession) => Record<string, ort.Tensor> {
  const per = shape.reduce((a, b) => a * b, 1);
  const x = new ort.Tensor('float32', images.subarray(0, n * per), [n, ...shape]);
  return (session) => ({ [session.inputNames[0]]: x });
}
