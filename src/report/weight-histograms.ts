/**
 * Weight histograms of chosen layers against their quantization grid: the latent weights (the folded weight where
 * BN is folded) and the quantizer's scale and zero point come from the run's checkpoint, computed by ONNX Runtime as
 * evaluation computes them (src/train/quant-health.ts's probe). A per-tensor grid is drawn in weight units at
 * s (q - z); with a scale per channel or group each weight is divided by its own scale, so one axis in grid steps
 * holds the whole layer and the grid points are q - z.
 */
import path from 'node:path';
import { loadCheckpoint } from '../train/checkpoint.js';
import { CHECKPOINT_FILE } from '../train/run-lifecycle.js';
import { clippedFraction, QuantHealthProbe, WeightSample } from '../train/quant-health.js';
import { InputError } from '../validate/schema.js';
import type { WeightHistogram } from './charts.js';
import type { ReportRun } from './load-runs.js';

const BINS = 100;

/** `*` any run of characters, `?` one character; the whole layer name must match. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** The layers a histogram shows: those matching the glob, or the first, a middle and the last quantized layer. */
export function chooseLayers(layers: string[], glob?: string): string[] {
  if (glob === undefined) {
    if (layers.length <= 3) return layers;
    return [...new Set([layers[0], layers[Math.floor((layers.length - 1) / 2)], layers[layers.length - 1]])];
  }
  const re = globToRegExp(glob);
  return layers.filter((l) => re.test(l));
}

/** The histogram and grid of one sample. */
export function histogramOf(run: string, s: WeightSample, bits: number): WeightHistogram {
  const perTensor = s.scale.length === 1;
  const zeroSingle = s.zeroPoint.length === 1;
  const x = new Float64Array(s.weight.length);
  for (let i = 0; i < x.length; i++) {
    const j = s.index(i);
    x[i] = perTensor ? s.weight[i] : s.weight[i] / s.scale[j] + (zeroSingle ? 0 : s.zeroPoint[j]);
  }
  const z = zeroSingle ? Math.round(s.zeroPoint[0]) : 0;
  const grid: number[] = [];
  for (let q = s.qmin; q <= s.qmax; q++) grid.push(perTensor ? s.scale[0] * (q - z) : q - z);
  let lo = grid[0];
  let hi = grid[grid.length - 1];
  for (const v of x) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const width = (hi - lo) / BINS || 1;
  const counts = new Array(BINS).fill(0);
  for (const v of x) counts[Math.min(BINS - 1, Math.floor((v - lo) / width))]++;
  const bins = counts.map((count, b) => ({ start: lo + b * width, end: lo + (b + 1) * width, count })).filter((b) => b.count > 0);
  return { run, layer: s.layer, unit: perTensor ? 'weight' : zeroSingle ? 'w / s (grid steps of each channel)' : 'w / s + z (code units)', bits, bins, grid, clipped: clippedFraction(s) };
}

/**
 * Histograms of a run's chosen layers; `undefined` when the run has no checkpoint or no weight quantizer with a
 * scale (fp32, binary, ternary). A glob that matches no layer of any run is the caller's error to report.
 */
export async function runHistograms(run: ReportRun, glob: string | undefined, threads = 2): Promise<{ histograms: WeightHistogram[]; layers: string[] } | undefined> {
  if (run.method === 'fp32' || !run.hasCheckpoint) return undefined;
  const ckpt = loadCheckpoint(path.join(run.dir, CHECKPOINT_FILE));
  const probe = await QuantHealthProbe.create(ckpt.model, threads);
  if (!probe) return undefined;
  try {
    const samples = await probe.sample(() => undefined);
    const layers = samples.map((s) => s.layer);
    const chosen = new Set(chooseLayers(layers, glob));
    const bits = (s: WeightSample) => Math.round(Math.log2(s.qmax - s.qmin + 1));
    return { histograms: samples.filter((s) => chosen.has(s.layer)).map((s) => histogramOf(run.name, s, bits(s))), layers };
  } finally {
    await probe.release();
  }
}

/** Refuses a --layers glob that matches nothing, naming the layers there are. */
export function checkLayersMatched(glob: string | undefined, found: { histograms: WeightHistogram[]; layers: string[] }[]): void {
  if (glob === undefined || !found.length || found.some((f) => f.histograms.length)) return;
  const all = [...new Set(found.flatMap((f) => f.layers))];
  throw new InputError(`--layers '${glob}' matches no quantized layer of the runs; layers: ${all.slice(0, 20).join(', ')}${all.length > 20 ? ', ...' : ''}`);
}
