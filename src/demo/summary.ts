/**
 * The demo's result: rows of models (fp32, PTQ, QAT) with the files they were exported to, as summary.json holds
 * them (shape documented in docs/demo.md), and the results table the HTML report draws from them.
 */
import type { ResultsTable } from '../report/write-report.js';

/** One exported (or saved) ONNX file of a model, measured as a file in ONNX Runtime. */
export interface DemoFile {
  /** Path relative to the demo's output directory. */
  path: string;
  /** 'fp32' for the float model, else the export format (qdq, int4, packed; language models: int4, matmulnbits). */
  format: string;
  /** What the file stores, e.g. "weights 4-bit in int4 containers (2 tensors) ...". */
  storage: string;
  bytes: number;
  /** fp32 weight bytes / stored weight bytes (image exports); file bytes ratio against the fp32 decoder (language models). */
  size_ratio_vs_fp32?: number;
  /** Image models: median ms per batch of `latency_batch` test images; language models: see tokens_per_second. */
  latency_ms_per_batch?: number;
  latency_batch?: number;
  /** Test accuracy of the file itself (image models), run by ONNX Runtime from disk. */
  accuracy?: number;
  /** Validation perplexity of the file itself (language models). */
  val_perplexity?: number;
  /** Decode tokens per second of the file (language models). */
  tokens_per_second?: number;
  /** Fraction of test images where the file's prediction equals the fake-quant model's (image exports). */
  argmax_agreement?: number;
  /** Teacher-forced next-token argmax agreement with the run's model on the parity windows (language-model exports). */
  top1_agreement?: number;
  /** A generated sample (language models). */
  sample?: string;
}

export interface DemoRow {
  /** What the row is, as printed. */
  label: string;
  /** 'fp32' or the preset. */
  setting: string;
  /** What the setting quantizes and how (bits, granularity, scale method, layers kept wider). */
  description: string;
  method: 'fp32' | 'PTQ' | 'QAT';
  /** Weight bits of the setting: 32, 8, 4, 2, 1.58 (ternary). */
  weight_bits: number;
  /** Run directory relative to the output directory. */
  run: string;
  /** PTQ calibration (image models) or 'rtn' (language models). */
  calib?: string;
  /** Training steps of this row's run (QAT: fine-tuning steps from fp32). */
  steps?: number;
  /** The model's own metric as evaluated in qatkit's graph (fake quantization for PTQ / QAT). */
  accuracy?: number;
  val_perplexity?: number;
  files: DemoFile[];
  /** Language models: the prompt and its sampled continuation (from the exported file where there is one). */
  sample?: string;
}

export interface DemoPhase {
  name: string;
  seconds: number;
  /** os.loadavg() at the end of the phase (1, 5, 15 minutes). */
  load_average: number[];
}

export interface DemoSummary {
  demo: 'image' | 'language-model';
  /** Shape version of this file. */
  version: 1;
  model: string;
  data: string;
  /** The schedule's name ('default') and its settings. */
  schedule: Record<string, unknown>;
  /** Test images (or validation tokens) every metric is measured on. */
  test_samples: number;
  rows: DemoRow[];
  /** Language models: the prompt every sample continues. */
  sample_prompt?: string;
  phases: DemoPhase[];
  wall_seconds: number;
  machine: { cpus: number; cpu_model: string; threads: number; load_average_start: number[]; load_average_end: number[] };
  report: string;
  /** ISO date and time the demo finished. */
  finished: string;
}

/** The report's results table: each row's own metric and each file's, against weight bits. */
export function resultsTableOf(summary: DemoSummary): ResultsTable {
  const lm = summary.demo === 'language-model';
  const setting = `${summary.model} / ${summary.data}`;
  const rows: ResultsTable['rows'] = [];
  for (const r of summary.rows) {
    const metric = lm ? r.val_perplexity : r.accuracy;
    const method = r.method === 'PTQ' ? `PTQ-${r.calib}` : r.method;
    if (metric !== undefined && r.method !== 'fp32') rows.push({ setting, method, bits: r.weight_bits, metric });
    for (const f of r.files) {
      const m = lm ? f.val_perplexity : f.accuracy;
      if (m !== undefined) rows.push({ setting, method: r.method === 'fp32' ? 'fp32 (file)' : `${method}, ${f.format} file`, bits: r.weight_bits, metric: m });
    }
  }
  return { title: `${summary.model} on ${summary.data}: ${lm ? 'validation perplexity' : 'test accuracy'} of each model and exported file`, metric: lm ? 'validation perplexity' : 'test accuracy', rows };
}
