/**
 * What a report reads from run directories: metrics.json (summary, history, quant health), sensitivity.json
 * (`qat sensitivity --from RUN`) and export reports (`qat export --json`) found in the directory. A directory with
 * neither metrics.json nor checkpoint.qat is no run, and is refused naming it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isTextData } from '../data/text.js';
import { presetConfig, QatConfig } from '../quant/presets.js';
import { SENSITIVITY_FILE, SensitivityReport } from '../quant/sensitivity.js';
import { CHECKPOINT_FILE, METRICS_FILE } from '../train/run-lifecycle.js';
import type { HistoryPoint } from '../train/run-history.js';
import type { QuantHealthPoint } from '../train/quant-health.js';
import { InputError } from '../validate/schema.js';

export type RunMethod = 'fp32' | 'ptq' | 'qat';

/** One export report (`qat export --json`), as the export table reads it; fields other tools may add are optional. */
export interface ExportSummary {
  file: string;
  format: string;
  from?: string;
  out?: string;
  file_bytes?: number;
  weight_bytes_fp32?: number;
  weight_bytes_stored?: number;
  weight_ratio?: number;
  verified?: boolean;
  argmax_agreement?: number;
  exported_accuracy?: number;
  qat_accuracy?: number;
  max_abs_logit_difference?: number;
  /** Language-model exports: the decoder's file against the fp32 decoder's (file bytes). */
  size_ratio_vs_fp32?: number;
  /** Language-model exports: validation perplexity of the file (ORT) and of the model it was checked against. */
  exported_perplexity?: number;
  reference_perplexity?: number;
  /** 'fp32' or 'fake-quant': what the language-model file was checked against. */
  reference?: string;
  /** Language-model exports: next-token top-1 agreement with the reference. */
  top1_agreement?: number;
  /** Milliseconds per call, from the report (a benchmark's) or measured by the report. */
  latency_ms?: number;
  /** What one latency call is ('image, batch 1', 'token, KV-cache decode'). */
  latency_per?: string;
}

export interface ReportRun {
  dir: string;
  /** Label in charts and tables: the directory's base name. */
  name: string;
  task: 'classification' | 'language-model';
  method: RunMethod;
  /** 'fp32', 'PTQ-<calib>', 'QAT': the colour of the bits chart. */
  methodLabel: string;
  quant?: string;
  /** Weight bits: 32 for fp32, 1.58 for ternary, 1 for binary. */
  bits: number;
  model: string;
  data: string;
  steps: number;
  /** Accuracy (classification) or validation perplexity (language models). */
  metric?: number;
  fp32Metric?: number;
  metrics: Record<string, unknown>;
  history: HistoryPoint[];
  quantHealth: QuantHealthPoint[];
  sensitivity?: SensitivityReport;
  exports: ExportSummary[];
  hasCheckpoint: boolean;
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`${what} ${file}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${what} ${file}: not valid JSON (${(e as Error).message})`);
  }
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Weight bits of a quantization config: ternary counts as log2(3) ~ 1.58 bits, binary as 1. */
export function weightBits(config: QatConfig): number {
  const w = config.weight;
  if (w.method === 'ternary') return 1.58;
  if (w.method === 'binary') return 1;
  return w.bits;
}

function bitsOf(metrics: Record<string, unknown>, task: ReportRun['task']): number {
  const config = (metrics.config ?? {}) as Record<string, unknown>;
  if (config.quantConfig && typeof config.quantConfig === 'object') return weightBits(config.quantConfig as QatConfig);
  const preset = typeof metrics.quant === 'string' ? metrics.quant : undefined;
  if (!preset) return 32;
  try {
    return weightBits(presetConfig(preset, task));
  } catch {
    const m = /^w(\d+)/.exec(preset);
    return m ? Number(m[1]) : NaN;
  }
}

/** An export report: the fields the table shows, or undefined when the JSON is no export report. */
export function exportSummary(value: unknown, file: string): ExportSummary | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const r = value as Record<string, unknown>;
  if (typeof r.format !== 'string' || (r.file_bytes === undefined && r.parity === undefined)) return undefined;
  const parity = (r.parity ?? {}) as Record<string, unknown>;
  return {
    file,
    format: r.format,
    from: typeof r.from === 'string' ? r.from : undefined,
    out: typeof r.out === 'string' ? r.out : undefined,
    file_bytes: num(r.file_bytes),
    weight_bytes_fp32: num(r.weight_bytes_fp32),
    weight_bytes_stored: num(r.weight_bytes_stored),
    weight_ratio: num(r.weight_ratio),
    verified: typeof r.verified === 'boolean' ? r.verified : undefined,
    argmax_agreement: num(parity.argmax_agreement),
    exported_accuracy: num(parity.exported_accuracy),
    qat_accuracy: num(parity.qat_accuracy),
    max_abs_logit_difference: num(parity.max_abs_logit_difference),
    size_ratio_vs_fp32: num(r.size_ratio_vs_fp32),
    exported_perplexity: num(parity.exported_val_perplexity),
    reference_perplexity: num(parity.reference_val_perplexity),
    reference: typeof parity.reference === 'string' ? parity.reference : undefined,
    top1_agreement: num(parity.top1_agreement),
    latency_ms: num(r.latency_ms) ?? num(r.ms_per_sample),
    latency_per: num(r.latency_ms) !== undefined ? (typeof r.latency_per === 'string' ? r.latency_per : undefined) : num(r.ms_per_sample) !== undefined ? 'sample' : undefined,
  };
}

/** An export report given with --exports: refused naming the file when it is not one. */
export function loadExportFile(file: string): ExportSummary {
  const s = exportSummary(readJson(file, '--exports'), file);
  if (!s) throw new InputError(`--exports ${file}: not an export report (qat export --json FILE writes one: format, file_bytes, parity)`);
  return s;
}

function historyOf(metrics: Record<string, unknown>): HistoryPoint[] {
  const h = metrics.history;
  if (!Array.isArray(h)) return [];
  return h.filter((p) => p && typeof p === 'object' && Number.isFinite(p.step) && typeof p.train_loss === 'number');
}

function healthOf(metrics: Record<string, unknown>): QuantHealthPoint[] {
  const h = metrics.quant_health;
  if (!Array.isArray(h)) return [];
  return h.filter((p) => p && typeof p === 'object' && Number.isFinite(p.step) && typeof p.clipped === 'number');
}

/** Reads one run directory for the report. */
export function loadReportRun(dir: string): ReportRun {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new InputError(`RUN_DIR ${dir}: no such directory`);
  }
  if (!stat.isDirectory()) throw new InputError(`RUN_DIR ${dir}: not a directory (a run directory holds ${METRICS_FILE} and ${CHECKPOINT_FILE})`);
  const metricsFile = path.join(dir, METRICS_FILE);
  const hasCheckpoint = fs.existsSync(path.join(dir, CHECKPOINT_FILE));
  if (!fs.existsSync(metricsFile)) {
    throw new InputError(
      hasCheckpoint
        ? `RUN_DIR ${dir}: no ${METRICS_FILE} (the run has not finished; continue it with qat train --out ${dir} --resume)`
        : `RUN_DIR ${dir}: not a run directory (no ${METRICS_FILE} or ${CHECKPOINT_FILE}; make one with qat train --out DIR or qat quantize --from RUN --out DIR)`,
    );
  }
  const raw = readJson(metricsFile, 'RUN_DIR');
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new InputError(`RUN_DIR ${dir}: ${METRICS_FILE} is not a JSON object`);
  const metrics = raw as Record<string, unknown>;
  // PTQ (RTN) runs of a language model carry no task field; their validation perplexity and text data say it.
  const task = metrics.task === 'language-model' || num(metrics.val_perplexity) !== undefined || (typeof metrics.data === 'string' && isTextData(metrics.data)) ? 'language-model' : 'classification';
  const method: RunMethod = metrics.method === 'ptq' ? 'ptq' : metrics.method === 'qat' || metrics.quant ? 'qat' : 'fp32';
  const calib = typeof metrics.calib === 'string' ? metrics.calib : 'minmax';
  const lm = task === 'language-model';
  const sensitivityFile = path.join(dir, SENSITIVITY_FILE);
  const sensitivity = fs.existsSync(sensitivityFile) ? (readJson(sensitivityFile, 'RUN_DIR') as SensitivityReport) : undefined;
  const exports: ExportSummary[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json') && n !== METRICS_FILE && n !== SENSITIVITY_FILE && !n.startsWith('.')).sort()) {
    try {
      const s = exportSummary(JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')), path.join(dir, f));
      if (s) exports.push(s);
    } catch {
      // another tool's file: not an export report
    }
  }
  return {
    dir,
    name: path.basename(path.resolve(dir)),
    task,
    method,
    methodLabel: method === 'fp32' ? 'fp32' : method === 'ptq' ? `PTQ-${calib}` : 'QAT',
    quant: typeof metrics.quant === 'string' ? metrics.quant : undefined,
    bits: method === 'fp32' ? 32 : bitsOf(metrics, task),
    model: String(metrics.model ?? '?'),
    data: String(metrics.data ?? '?'),
    steps: num(metrics.steps) ?? 0,
    metric: lm ? num(metrics.val_perplexity) : num(metrics.test_accuracy),
    fp32Metric: lm ? num(metrics.fp32_perplexity) : num(metrics.fp32_accuracy),
    metrics,
    history: historyOf(metrics),
    quantHealth: healthOf(metrics),
    sensitivity: sensitivity && Array.isArray(sensitivity.layers) ? sensitivity : undefined,
    exports,
    hasCheckpoint,
  };
}
