/**
 * Mini-batch iteration over an in-memory Dataset.
 *
 * - The epoch's sample order is Rng.derive(seed, epoch).permutation(count): it depends only on (seed, epoch),
 *   so resuming at (epoch, batch) needs no saved loader state, just `batches(batch)` with the same options.
 * - Batches are written into buffers allocated once per loader (one Float32Array of batchSize*C*H*W and one
 *   BigInt64Array of batchSize labels, int64 as ONNX losses expect): every full batch yields the same two
 *   objects. A short last batch (dropLast false) yields views of the same memory, also created once.
 * - Augmentation (optional): each sample is shifted by an integer (dy, dx) in [-maxShift, maxShift]^2 with zero
 *   fill, drawn from Rng.derive(seed, epoch, batch, AUGMENT_STREAM), so it is reproducible per batch too.
 */
import { Rng } from '../train/rng.js';
import { Dataset } from './dataset.js';

export interface AugmentOptions {
  /** Largest shift in pixels along each axis (0 disables shifting). */
  maxShift: number;
}

export interface BatchLoaderOptions {
  batchSize: number;
  /** Shuffle with a (seed, epoch) permutation; default false (dataset order). */
  shuffle?: boolean;
  seed?: number;
  epoch?: number;
  /** Drop the last short batch; default false. */
  dropLast?: boolean;
  augment?: AugmentOptions;
}

export interface Batch {
  /** Batch index within the epoch. */
  index: number;
  /** Samples in this batch: batchSize, or less for the last batch when dropLast is false. */
  size: number;
  /** size*C*H*W pixels; the loader's reused buffer (copy it to keep it past the next batch). */
  images: Float32Array;
  /** size labels; the loader's reused buffer. */
  labels: BigInt64Array;
}

/** Keeps augmentation draws independent of any other stream derived from (seed, epoch, batch). */
const AUGMENT_STREAM = 0x61756700;

function checkInt(what: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`BatchLoader: ${what} must be an integer in ${min}..${max}, got ${v}`);
}

export class BatchLoader {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly maxShift: number;
  readonly batchesPerEpoch: number;
  private epochValue: number;
  private readonly sampleSize: number;
  private readonly full: { images: Float32Array; labels: BigInt64Array };
  private readonly tail?: { images: Float32Array; labels: BigInt64Array };
  private readonly classLabels: bigint[];
  private orderCache?: { epoch: number; order: Uint32Array };

  constructor(dataset: Dataset, options: BatchLoaderOptions) {
    const { batchSize, shuffle = false, seed = 0, epoch = 0, dropLast = false, augment } = options;
    checkInt('batchSize', batchSize, 1);
    checkInt('seed', seed, 0, 0xffffffff);
    checkInt('epoch', epoch, 0);
    const [, h, w] = dataset.shape;
    const maxShift = augment?.maxShift ?? 0;
    checkInt('augment.maxShift', maxShift, 0, Math.min(h, w) - 1);
    this.dataset = dataset;
    this.batchSize = batchSize;
    this.shuffle = shuffle;
    this.seed = seed;
    this.dropLast = dropLast;
    this.maxShift = maxShift;
    this.epochValue = epoch;
    this.sampleSize = dataset.shape[0] * h * w;
    const n = dataset.count;
    this.batchesPerEpoch = dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
    const images = new Float32Array(batchSize * this.sampleSize);
    const labels = new BigInt64Array(batchSize);
    this.full = { images, labels };
    const rest = n % batchSize;
    if (!dropLast && rest > 0) this.tail = { images: images.subarray(0, rest * this.sampleSize), labels: labels.subarray(0, rest) };
    this.classLabels = Array.from({ length: dataset.classes }, (_, c) => BigInt(c));
  }

  get epoch(): number {
    return this.epochValue;
  }

  /** Moves to another epoch, reusing the buffers. */
  setEpoch(epoch: number): void {
    checkInt('epoch', epoch, 0);
    this.epochValue = epoch;
  }

  /** Sample indices of the current epoch in visiting order. */
  order(): Uint32Array {
    const epoch = this.epochValue;
    if (this.orderCache?.epoch !== epoch) {
      const n = this.dataset.count;
      const order = this.shuffle ? Rng.derive(this.seed, epoch).permutation(n) : Uint32Array.from({ length: n }, (_, i) => i);
      this.orderCache = { epoch, order };
    }
    return this.orderCache.order;
  }

  /** Batches of the current epoch from startBatch on (0..batchesPerEpoch; resuming mid-epoch). */
  *batches(startBatch = 0): Generator<Batch> {
    checkInt('startBatch', startBatch, 0, this.batchesPerEpoch);
    const order = this.order();
    for (let b = startBatch; b < this.batchesPerEpoch; b++) yield this.fill(b, order);
  }

  [Symbol.iterator](): Generator<Batch> {
    return this.batches(0);
  }

  private fill(index: number, order: Uint32Array): Batch {
    const start = index * this.batchSize;
    const size = Math.min(this.batchSize, this.dataset.count - start);
    const { images, labels } = size < this.batchSize && this.tail ? this.tail : this.full;
    const src = this.dataset.images;
    const ss = this.sampleSize;
    const rng = this.maxShift > 0 ? Rng.derive(this.seed, this.epochValue, index, AUGMENT_STREAM) : undefined;
    for (let j = 0; j < size; j++) {
      const s = order[start + j];
      labels[j] = this.classLabels[this.dataset.labels[s]];
      if (rng) {
        const k = this.maxShift;
        this.shiftInto(images, j * ss, src, s * ss, rng.int(2 * k + 1) - k, rng.int(2 * k + 1) - k);
      } else {
        for (let p = 0, o = j * ss, i = s * ss; p < ss; p++) images[o + p] = src[i + p];
      }
    }
    return { index, size, images, labels };
  }

  /** out[c][y][x] = in[c][y - dy][x - dx], zero outside the image. */
  private shiftInto(out: Float32Array, o: number, src: Float32Array, i: number, dy: number, dx: number): void {
    const [c, h, w] = this.dataset.shape;
    for (let ch = 0; ch < c; ch++) {
      const plane = ch * h * w;
      for (let y = 0; y < h; y++) {
        const sy = y - dy;
        const row = o + plane + y * w;
        if (sy < 0 || sy >= h) {
          out.fill(0, row, row + w);
          continue;
        }
        const srow = i + plane + sy * w;
        for (let x = 0; x < w; x++) {
          const sx = x - dx;
          out[row + x] = sx >= 0 && sx < w ? src[srow + sx] : 0;
        }
      }
    }
  }
}
