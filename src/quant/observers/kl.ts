import { QuantSpec } from '../spec.js';
import { batchMinMax, checkBatch, noDataError } from './batch.js';
import { GrowingHistogram } from './histogram.js';
import { RangeObserver, TensorRange } from './types.js';

/** Smoothing of zero bins before the divergence (MXNet / ORT smooth_distribution). */
const SMOOTHING_EPS = 1e-4;

/**
 * Smoothed, normalised copy of counts[0..n): zero bins get eps and every non-zero bin gives up
 * eps * zeros / nonzeros, so no bin is 0 and the total is unchanged. Returns false where that would leave
 * a bin <= 0 (all bins zero, or a non-zero bin smaller than its share), which rules the candidate out.
 */
function smoothedDistribution(counts: Float64Array, n: number, out: Float64Array): boolean {
  let zeros = 0;
  let total = 0;
  let smallest = Infinity;
  for (let j = 0; j < n; j++) {
    const c = counts[j];
    if (c === 0) zeros++;
    else if (c < smallest) smallest = c;
    total += c;
  }
  const nonzeros = n - zeros;
  if (nonzeros === 0) return false;
  const give = (SMOOTHING_EPS * zeros) / nonzeros;
  if (give >= smallest) return false;
  for (let j = 0; j < n; j++) out[j] = (counts[j] === 0 ? SMOOTHING_EPS : counts[j] - give) / total;
  return true;
}

/**
 * TensorRT's entropy calibration (Migacz, "8-bit Inference with TensorRT", GTC 2017), on a histogram of
 * |x| (or max(x, 0)). For each candidate i from `levels` to the number of bins:
 * - P: the first i bins, with every count beyond them (the clipped outliers) added to bin i-1;
 * - Q: the same i bins without outliers, merged into `levels` groups, group g spanning bins
 *   [floor(g i / levels), floor((g+1) i / levels)) (one quantization step, i / levels bins wide), each group's
 *   count spread evenly over its bins that are non-zero in P. MXNet and ORT instead use groups of
 *   floor(i / levels) bins and give the last group the remainder, up to levels - 1 extra bins (129 bins at
 *   i = 255 for 128 levels): that flattens the tail and makes thresholds just below 2 * levels bins look
 *   bad, which pushed a Gaussian with two outliers to a 7.5 sigma threshold in our tests;
 * - both smoothed (zero bins get 1e-4) and normalised; divergence KL(P || Q).
 * Returns divergence[i - levels] for every candidate (Infinity where smoothing is impossible).
 */
export function klDivergences(counts: Float64Array, levels: number): Float64Array {
  const bins = counts.length;
  if (bins < levels) throw new Error(`klDivergences: ${bins} bins cannot hold ${levels} quantization levels`);
  const beyond = new Float64Array(bins + 1);
  for (let j = bins - 1; j >= 0; j--) beyond[j] = beyond[j + 1] + counts[j];
  const p = new Float64Array(bins);
  const q = new Float64Array(bins);
  const pSmooth = new Float64Array(bins);
  const qSmooth = new Float64Array(bins);
  const divergences = new Float64Array(bins - levels + 1).fill(Infinity);
  for (let i = levels; i <= bins; i++) {
    p.set(counts.subarray(0, i));
    p[i - 1] += beyond[i];
    for (let g = 0; g < levels; g++) {
      const start = Math.floor((g * i) / levels);
      const end = Math.floor(((g + 1) * i) / levels);
      let sum = 0;
      let nonzero = 0;
      for (let j = start; j < end; j++) {
        sum += counts[j];
        if (p[j] !== 0) nonzero++;
      }
      const share = nonzero === 0 ? 0 : sum / nonzero;
      for (let j = start; j < end; j++) q[j] = p[j] !== 0 ? share : 0;
    }
    if (!smoothedDistribution(p, i, pSmooth) || !smoothedDistribution(q, i, qSmooth)) continue;
    let divergence = 0;
    for (let j = 0; j < i; j++) divergence += pSmooth[j] * Math.log(pSmooth[j] / qSmooth[j]);
    divergences[i - levels] = divergence;
  }
  return divergences;
}

/** The number of bins to keep: the candidate with the smallest divergence (the first on ties; all bins if none is finite). */
export function klThresholdBins(counts: Float64Array, levels: number): number {
  const divergences = klDivergences(counts, levels);
  let best = counts.length;
  let bestDivergence = Infinity;
  divergences.forEach((d, k) => {
    if (d < bestDivergence) {
      bestDivergence = d;
      best = k + levels;
    }
  });
  return best;
}

/**
 * Histogram bins per quantization level in the search: TensorRT's 2048 bins for 128 levels. Below 8 bits the
 * histogram is merged down to this ratio (128 bins at 4 bits): with 256 fine bins per level, a spiky histogram
 * (activations of images with constant regions take a few values many times) made every wide threshold look
 * divergent, and the search kept the first few bins.
 */
const BINS_PER_LEVEL = 16;

/** counts summed in runs of `factor` consecutive bins. */
function mergeBins(counts: Float64Array, factor: number): Float64Array {
  if (factor === 1) return counts;
  const out = new Float64Array(Math.ceil(counts.length / factor));
  for (let i = 0; i < counts.length; i++) out[Math.floor(i / factor)] += counts[i];
  return out;
}

/** Levels of the KL search: 2^(bits-1), the non-negative codes of a signed grid (128 for 8 bits). */
export function klLevels(bits: number): number {
  return 2 ** (bits - 1);
}

/**
 * Entropy (KL) calibration. Signed specs histogram |x| of the non-zero values; unsigned specs (activations after
 * ReLU) histogram the positive values. Both search over 2^(bits-1) levels, as TensorRT (int8: ReLU outputs use the 128
 * non-negative codes) and ORT (num_quantized_bins = 128 for uint8 too); for a 2^bits-level unsigned grid this
 * errs toward a tighter threshold. Range: signed [-T, T] (asymmetric specs: clamped to the observed
 * [min, max]); unsigned [0, T] (asymmetric specs keep any negative values by their observed min).
 */
export class KlObserver implements RangeObserver {
  private readonly histogram: GrowingHistogram;
  private readonly levels: number;
  private min = Infinity;
  private max = -Infinity;

  constructor(
    private readonly spec: QuantSpec,
    bins: number,
  ) {
    this.histogram = new GrowingHistogram(bins, spec.signed ? 'abs' : 'positive');
    this.levels = klLevels(spec.bits);
  }

  observe(values: Float32Array, shape?: number[]): void {
    checkBatch(values, shape, 'kl observer');
    if (values.length === 0) return;
    const b = batchMinMax(values);
    this.min = Math.min(this.min, b.min);
    this.max = Math.max(this.max, b.max);
    this.histogram.add(this.searched(values));
  }

  /**
   * The values the threshold search sees: not those that every range represents exactly, 0 (and, on the
   * unsigned side, the values at or below 0, which sit at the grid's low end whatever the threshold). Left in,
   * they are one spike in bin 0, half of a post-ReLU tensor: merged with its neighbours into Q's first level it
   * dominated the divergence, and on LeNet's 4-bit activations the search kept 0.3 of a 9.6 range (PTQ at 26%).
   */
  private searched(values: Float32Array): Float32Array {
    return this.spec.signed ? values.filter((v) => v !== 0) : values.filter((v) => v > 0);
  }

  /** The threshold T chosen by the KL search, at most the largest observed magnitude. */
  threshold(): number {
    if (this.min > this.max) throw noDataError('kl');
    const h = this.histogram;
    const magnitude = this.spec.signed ? Math.max(-this.min, this.max) : Math.max(this.max, 0);
    if (h.limit === 0) return 0;
    const factor = Math.max(1, Math.floor(h.counts.length / (BINS_PER_LEVEL * this.levels)));
    return Math.min(klThresholdBins(mergeBins(h.counts, factor), this.levels) * h.width * factor, magnitude);
  }

  range(): TensorRange {
    const t = this.threshold();
    if (this.spec.signed) {
      return this.spec.symmetric ? { min: -t, max: t } : { min: Math.max(this.min, -t), max: Math.min(this.max, t) };
    }
    return { min: this.spec.symmetric ? 0 : Math.min(this.min, 0), max: t };
  }
}
