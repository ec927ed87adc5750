/**
 * In-memory image classification datasets. Pixels are scaled to [0, 1] here and nothing more: mean/std
 * normalisation is part of the model graph, so an exported model takes the same [0, 1] input everywhere.
 */
export interface Dataset {
  name: string;
  /** N*C*H*W pixels in [0, 1], sample-major (NCHW). */
  images: Float32Array;
  /** One class index per sample, in [0, classes). */
  labels: Uint8Array;
  count: number;
  /** [C, H, W] of one sample. */
  shape: [number, number, number];
  classes: number;
  /** Human-readable class names, one per class index. */
  classNames?: readonly string[];
}

export interface DataSplit {
  train: Dataset;
  test: Dataset;
}

/** The same dataset with raw uint8 pixels: what files and the cache hold, 4x smaller than Dataset. */
export interface RawDataset {
  name: string;
  pixels: Uint8Array;
  labels: Uint8Array;
  count: number;
  shape: [number, number, number];
  classes: number;
  classNames?: readonly string[];
}

export function sampleSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Checks that sizes and labels agree, so every loader fails at load time rather than mid-training. */
export function checkRawDataset(raw: RawDataset): void {
  const { name, pixels, labels, count, shape, classes } = raw;
  if (labels.length !== count) throw new Error(`dataset ${name}: ${labels.length} labels for ${count} samples`);
  const expected = count * sampleSize(shape);
  if (pixels.length !== expected) {
    throw new Error(`dataset ${name}: ${pixels.length} pixels, expected ${count} samples * [${shape.join(',')}] = ${expected}`);
  }
  for (let i = 0; i < count; i++) {
    if (labels[i] >= classes) throw new Error(`dataset ${name}: sample ${i} has label ${labels[i]}, expected 0..${classes - 1}`);
  }
}

const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/** Scales uint8 pixels to [0, 1] float32 (by table lookup: exact v/255 rounded once to float32). */
export function toDataset(raw: RawDataset): Dataset {
  checkRawDataset(raw);
  const images = new Float32Array(raw.pixels.length);
  const src = raw.pixels;
  for (let i = 0; i < src.length; i++) images[i] = BYTE_TO_UNIT[src[i]];
  const { name, labels, count, shape, classes, classNames } = raw;
  return { name, images, labels, count, shape: [...shape], classes, ...(classNames ? { classNames } : {}) };
}
