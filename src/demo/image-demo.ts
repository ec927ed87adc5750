/**
 * `qat demo`: LeNet on MNIST in fp32, then per setting (w4a4, and the 2-bit settings where PTQ collapses) PTQ on
 * the fp32 model and QAT fine-tuning from it; each QAT model exported to the formats that store its codes, and
 * every file (the fp32 model too) measured as a file in ONNX Runtime: size, latency, test accuracy.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../data/index.js';
import { evaluateOnnxFile } from '../export/evaluate-file.js';
import { exportRun, ExportReport } from '../export/export-run.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { weightBits } from '../report/load-runs.js';
import { presetConfig } from '../quant/presets.js';
import { quantizeRun } from '../train/ptq-run.js';
import { DEFAULT_TRAIN_CONFIG, TrainConfig } from '../train/run.js';
import { formatLabel, presetLabel, storageLabel } from './labels.js';
import { imageBatchFeeds, timeFilesAlternating } from './latency.js';
import { DemoPhaseClock } from './phases.js';
import { ImageDemoSchedule } from './schedule.js';
import { finishDemo } from './finish.js';
import { DemoFile, DemoRow, DemoSummary } from './summary.js';
import { trainWithProgress } from './train-phase.js';

export interface DemoOptions {
  out: string;
  threads: number;
  maxThreads?: number;
  /** Progress lines (stderr). */
  log: (line: string) => void;
}

/** The fp32 model file a run saves (its inference graph). */
const FP32_FILE = path.join('fp32', 'model.onnx');

export function exportFileName(schedule: ImageDemoSchedule, preset: string, format: string): string {
  return `${schedule.model}-${preset}-${format}.onnx`;
}

export async function runImageDemo(schedule: ImageDemoSchedule, options: DemoOptions): Promise<DemoSummary> {
  const { out, threads } = options;
  const clock = new DemoPhaseClock(options.log);
  const at = (p: string) => path.join(out, p);
  const test = loadDataset(schedule.data).test;
  const testSamples = Math.min(test.count, schedule.testLimit ?? test.count);
  const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, model: schedule.model, data: schedule.data, batch: schedule.batch, threads, seed: 0 };
  const totalPhases = 1 + schedule.settings.length * 2 + 2; // fp32, PTQ + QAT per setting, files, report
  const title = (what: string) => `[${clock.count + 1}/${totalPhases}] ${what}`;

  // fp32.
  const fp32 = await clock.phase(title(`fp32 ${schedule.model} on ${schedule.data}`), () =>
    trainWithProgress({ ...base, epochs: schedule.fp32Epochs, steps: schedule.fp32Steps, lr: schedule.fp32Lr }, at('fp32'), 'fp32', options.maxThreads),
  );
  const fp32Steps = schedule.fp32Steps === undefined ? `${schedule.fp32Epochs} epoch${schedule.fp32Epochs === 1 ? '' : 's'}, ${fp32.steps} steps` : `${fp32.steps} steps`;
  const rows: DemoRow[] = [{ label: `fp32, ${fp32Steps}`, setting: 'fp32', description: 'float32 weights and activations', method: 'fp32', weight_bits: 32, run: 'fp32', steps: fp32.steps, accuracy: fp32.test_accuracy, files: [] }];
  const exportsOf = new Map<DemoRow, { format: string; report: ExportReport; file: string }[]>();

  for (const s of schedule.settings) {
    const config = presetConfig(s.preset);
    const bits = weightBits(config);
    const ptqDir = `ptq-${s.preset}`;
    const ptq = await clock.phase(title(`PTQ ${s.preset} (${s.calib} calibration)`), () =>
      quantizeRun({ from: at('fp32'), quant: s.preset, calib: s.calib, calibBatches: schedule.calibBatches, threads }, at(ptqDir), options.log),
    );
    rows.push({ label: `${s.preset} PTQ, ${s.calib} calibration, no training`, setting: s.preset, description: presetLabel(config), method: 'PTQ', weight_bits: bits, run: ptqDir, calib: s.calib, steps: 0, accuracy: ptq.test_accuracy, files: [] });

    const qatDir = `qat-${s.preset}`;
    const { qat, exported } = await clock.phase(title(`QAT ${s.preset} (${s.qatSteps} steps) and export (${s.exports.join(', ')})`), async () => {
      const qat = await trainWithProgress(
        { ...base, epochs: 1, steps: s.qatSteps, lr: schedule.qatLr, quant: s.preset, from: at('fp32'), calibBatches: schedule.calibBatches },
        at(qatDir),
        `qat ${s.preset}`,
        options.maxThreads,
      );
      const exported = [];
      for (const format of s.exports) {
        const file = exportFileName(schedule, s.preset, format);
        options.log(`exporting ${qatDir} as ${format}: ${file} (checked against the fake-quant model on ${testSamples} test images)`);
        const report = await exportRun({ from: at(qatDir), out: at(file), format, threads, limit: schedule.testLimit });
        exported.push({ format, report, file });
      }
      return { qat, exported };
    });
    const row: DemoRow = { label: `${s.preset} QAT, ${qat.steps} steps from fp32`, setting: s.preset, description: presetLabel(config), method: 'QAT', weight_bits: bits, run: qatDir, steps: qat.steps, accuracy: qat.test_accuracy, files: [] };
    exportsOf.set(row, exported);
    rows.push(row);
  }

  // Every file measured the same way: accuracy from the file on disk, then latency in one interleaved timing.
  const files = await clock.phase(title(`evaluating and timing every file on ${testSamples} test images`), async () => {
    const list: { row: DemoRow; file: string; format: string; report?: ExportReport }[] = [{ row: rows[0], file: FP32_FILE, format: 'fp32' }];
    for (const [row, exported] of exportsOf) for (const e of exported) list.push({ row, file: e.file, format: e.format, report: e.report });
    const accuracy = new Map<string, number>();
    for (const f of list) accuracy.set(f.file, (await evaluateOnnxFile(at(f.file), test, { threads, limit: schedule.testLimit })).test_accuracy);
    const { batch, rounds, warmup } = schedule.latency;
    const latency = await timeFilesAlternating(list.map((f) => at(f.file)), imageBatchFeeds(test.images, test.shape, Math.min(batch, test.count)), { threads, rounds, warmup });
    return list.map((f, i) => ({ ...f, accuracy: accuracy.get(f.file)!, latency: latency[i].median_ms }));
  });
  const exportReports: string[] = [];
  for (const f of files) {
    const demoFile: DemoFile = {
      path: f.file,
      format: f.format,
      storage: f.report ? `${formatLabel(f.report.format)}: ${storageLabel(f.report.layers)}` : 'float32 weights and activations',
      bytes: fs.statSync(at(f.file)).size,
      size_ratio_vs_fp32: f.report?.weight_ratio,
      latency_ms_per_batch: f.latency,
      latency_batch: Math.min(schedule.latency.batch, test.count),
      accuracy: f.accuracy,
      argmax_agreement: f.report?.parity.argmax_agreement,
    };
    f.row.files.push(demoFile);
    // The export report beside its file (qat export --json's shape) with what the demo measured of the file.
    const json = at(f.file.replace(/\.onnx$/, '.json'));
    const latency = { latency_ms: f.latency, latency_per: `batch of ${demoFile.latency_batch} images`, latency_batch: demoFile.latency_batch, file_accuracy: f.accuracy };
    const report = f.report
      ? { ...f.report, out: f.file, from: f.row.run, ...latency }
      : { format: 'fp32', from: 'fp32', out: FP32_FILE, file_bytes: demoFile.bytes, parity: { exported_accuracy: f.accuracy }, ...latency };
    if (f.report) {
      writeFileAtomic(json, JSON.stringify(report, null, 2) + '\n');
      exportReports.push(json);
    } else {
      const fp32Json = at(`${schedule.model}-fp32.json`);
      writeFileAtomic(fp32Json, JSON.stringify(report, null, 2) + '\n');
      exportReports.push(fp32Json);
    }
  }

  const summary = await finishDemo(
    { demo: 'image', version: 1, model: schedule.model, data: schedule.data, schedule: { ...schedule }, test_samples: testSamples, rows },
    out,
    rows.map((r) => at(r.run)),
    exportReports,
    clock,
    `qat demo: ${schedule.model} on ${schedule.data}, fp32 / PTQ / QAT and their exported files`,
    threads,
  );
  return summary;
}
