/**
 * A fixed-size histogram whose range grows with the data, for the percentile and KL observers.
 *
 * 'abs' bins |x| and 'positive' bins max(x, 0) over [0, limit]; 'signed' bins x over [-limit, limit] with
 * `bins` bins on each side of 0. Bin edges are always integer multiples of width = limit / bins, and when a
 * batch exceeds the limit, the limit grows by an integer factor k, so each new bin is exactly k old bins
 * merged: re-binning is exact (torch's HistogramObserver interpolates instead; ORT's HistogramCollector
 * appends bins of the old width, which keeps resolution but lets the bin count, and the quadratic KL search,
 * grow without bound). The cost is resolution: a batch slightly past the limit halves it.
 */
export type HistogramSide = 'abs' | 'positive' | 'signed';

export class GrowingHistogram {
  /** Bin counts: `bins` of them, or 2 * bins for 'signed' where index `bins` is [0, width). */
  counts: Float64Array;
  /** Largest magnitude the bins cover; 0 until a non-zero value arrives. */
  limit = 0;
  total = 0;
  /** Values seen while every value so far was 0 (no width yet); placed in 0's bin once the range is known. */
  private pendingZeros = 0;

  constructor(
    readonly bins: number,
    readonly side: HistogramSide,
  ) {
    this.counts = new Float64Array(side === 'signed' ? 2 * bins : bins);
  }

  get width(): number {
    return this.limit / this.bins;
  }

  /** Left edge of bin i. */
  lowEdge(i: number): number {
    return (this.side === 'signed' ? i - this.bins : i) * this.width;
  }

  private binned(v: number): number {
    if (this.side === 'abs') return Math.abs(v);
    if (this.side === 'positive') return v > 0 ? v : 0;
    return v;
  }

  add(values: Float32Array): void {
    if (values.length === 0) return;
    let magnitude = 0;
    for (let i = 0; i < values.length; i++) {
      const m = Math.abs(this.binned(values[i]));
      if (m > magnitude) magnitude = m;
    }
    if (magnitude > this.limit) this.grow(magnitude);
    this.total += values.length;
    if (this.limit === 0) {
      this.pendingZeros += values.length;
      return;
    }
    const zeroBin = this.side === 'signed' ? this.bins : 0;
    this.counts[zeroBin] += this.pendingZeros;
    this.pendingZeros = 0;
    const w = this.width;
    const offset = this.side === 'signed' ? this.bins : 0;
    const last = this.counts.length - 1;
    for (let i = 0; i < values.length; i++) {
      const idx = Math.floor(this.binned(values[i]) / w) + offset;
      this.counts[idx < 0 ? 0 : idx > last ? last : idx]++;
    }
  }

  private grow(magnitude: number): void {
    if (this.limit === 0) {
      this.limit = magnitude;
      return;
    }
    let k = Math.ceil(magnitude / this.limit);
    while (this.limit * k < magnitude) k++;
    const old = this.counts;
    this.counts = new Float64Array(old.length);
    const offset = this.side === 'signed' ? this.bins : 0;
    // Old bin n (edges n*w, (n+1)*w) lies inside new bin floor(n / k) of width k*w.
    for (let i = 0; i < old.length; i++) {
      if (old[i] !== 0) this.counts[Math.floor((i - offset) / k) + offset] += old[i];
    }
    this.limit *= k;
  }

  /**
   * The value below which a fraction q of the values lie, interpolating linearly inside the bin where the
   * cumulative count crosses q * total (values assumed uniform within a bin).
   */
  quantile(q: number): number {
    if (this.limit === 0) return 0;
    const target = q * this.total;
    let cumulative = 0;
    for (let i = 0; i < this.counts.length; i++) {
      const c = this.counts[i];
      if (c > 0 && cumulative + c >= target) return this.lowEdge(i) + (this.width * Math.max(0, target - cumulative)) / c;
      cumulative += c;
    }
    return this.lowEdge(this.counts.length);
  }
}
