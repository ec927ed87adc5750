/**
 * The runs a report reads, made small (the ~2 KB tiny classifier of test/helpers, a 1-block gpt of width 32):
 * fp32 with test evaluations, QAT from it with quant health, PTQ, an export report with its file, and the per-layer
 * sensitivity; for language models fp32, QAT, RTN and an int4 decoder export. Each test file builds them once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { presetConfig } from '../../src/quant/presets';
import { quantizeRun } from '../../src/train/ptq-run';
import { DEFAULT_TRAIN_CONFIG, train } from '../../src/train/run';
import { runQatOk } from '../helpers/run-qat';
import { tinyModel } from '../helpers/tiny-model';
import { scratchDir } from '../helpers/scratch.js';

export interface ImageRuns {
  work: string;
  fp32: string;
  qat: string;
  ptq: string;
  /** The export report (qat export --json) inside the QAT run. */
  exportJson: string;
  exportFile: string;
}

const cli = runQatOk;

/**
 * fp32 (12 steps, test accuracy every 6), QAT with 4-bit weights on both layers (the presets keep the first and
 * last layers, here all of them, at 8 bits) and 8-bit activations, PTQ w8a8, the QDQ export and sensitivity.
 */
export async function makeImageRuns(prefix = 'qatkit-report-'): Promise<ImageRuns> {
  const work = scratchDir(prefix);
  const fp32 = path.join(work, 'fp32');
  const qat = path.join(work, 'qat-w4a8');
  const ptq = path.join(work, 'ptq-w8a8');
  const quiet = { hooks: { log: () => {} } };
  await train({ ...DEFAULT_TRAIN_CONFIG, model: tinyModel(), batch: 32, steps: 12, lr: 1e-2, threads: 1, evalEvery: 6, checkpointEvery: 0 }, fp32, quiet);
  await train(
    { ...DEFAULT_TRAIN_CONFIG, model: tinyModel(), from: fp32, quant: 'w4a8', quantConfig: { ...presetConfig('w4a8'), firstLastBits: null }, lr: 2e-3, batch: 32, steps: 6, threads: 1, evalEvery: 3, healthEvery: 2, calibBatches: 1, checkpointEvery: 0 },
    qat,
    quiet,
  );
  await quantizeRun({ from: fp32, quant: 'w8a8', calib: 'minmax', calibBatches: 1, threads: 1 }, ptq);
  const exportFile = path.join(qat, 'model.int8.onnx');
  const exportJson = path.join(qat, 'export.json');
  await cli(['export', '--from', qat, '--out', exportFile, '--json', exportJson, '--limit', '200', '--threads', '1']);
  await cli(['sensitivity', '--from', fp32, '--limit', '200', '--threads', '1']);
  return { work, fp32, qat, ptq, exportJson, exportFile };
}

export interface LanguageModelRuns {
  work: string;
  fp32: string;
  qat: string;
  rtn: string;
  exportJson: string;
}

/** gpt on Moby Dick: fp32 (8 steps, validation every 4), QAT w4a8-g32 (6 steps, health every 2), RTN, int4 export. */
export async function makeLanguageModelRuns(prefix = 'qatkit-report-lm-'): Promise<LanguageModelRuns> {
  const work = scratchDir(prefix);
  const fp32 = path.join(work, 'gpt-fp32');
  const qat = path.join(work, 'gpt-qat');
  const rtn = path.join(work, 'gpt-rtn');
  await train({ ...DEFAULT_TRAIN_CONFIG, model: 'gpt', data: 'moby-dick', layers: 1, heads: 2, dim: 32, context: 16, steps: 8, batch: 4, lr: 2e-3, threads: 1, evalEvery: 4, checkpointEvery: 0 }, fp32, {
    hooks: { log: () => {} },
  });
  await cli(['train', '--from', fp32, '--quant', 'w4a8-g32', '--steps', '6', '--batch', '4', '--eval-every', '3', '--health-every', '2', '--threads', '1', '--out', qat]);
  await cli(['quantize', '--from', fp32, '--quant', 'w4a8-g32', '--threads', '1', '--out', rtn]);
  const exportJson = path.join(qat, 'export.json');
  await cli(['export', '--from', qat, '--format', 'int4', '--out', path.join(qat, 'model.int4.onnx'), '--json', exportJson, '--parity-windows', '4', '--parity-prompts', '2', '--parity-tokens', '4', '--threads', '1']);
  return { work, fp32, qat, rtn, exportJson };
}

/** Names of the charts in a report (figure data-chart attributes) and each one's SVG. */
export function chartsOf(html: string): Map<string, string> {
  const charts = new Map<string, string>();
  for (const m of html.matchAll(/<figure class="chart" data-chart="([^"]+)">\n([\s\S]*?)\n<\/figure>/g)) charts.set(m[1], m[2]);
  return charts;
}

/**
 * Data marks of a Vega SVG: the shapes inside mark groups of role 'mark' (points, lines, bars, rules drawn from
 * data), not axes, grid lines or legends (roles axis-*, legend-*).
 */
export function dataMarks(svg: string): number {
  let count = 0;
  for (const m of svg.matchAll(/<g class="mark-(symbol|line|rect|rule|area) role-mark[^"]*"[^>]*>([\s\S]*?)<\/g>/g)) count += (m[2].match(/<(path|line|rect)\b/g) ?? []).length;
  return count;
}
