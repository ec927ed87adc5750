import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { readIdxFile, readIdxImagesAndLabels } from '../../src/data/idx';
import { scratchDir } from '../helpers/scratch.js';

const dir = scratchDir('qatkit-idx-');
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

function idx(type: number, dims: number[], data: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = type;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}

function write(name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

const pixels = Array.from({ length: 12 }, (_, i) => i * 20);

test('IDX: parses dims and uint8 data, also gzipped', () => {
  const plain = write('ok-images', idx(0x08, [2, 2, 3], pixels));
  const gz = write('ok-images.gz', zlib.gzipSync(idx(0x08, [2, 2, 3], pixels)));
  for (const file of [plain, gz]) {
    const a = readIdxFile(file);
    assert.deepEqual(a.dims, [2, 2, 3]);
    assert.deepEqual(Array.from(a.data), pixels);
  }
  const labels = write('ok-labels', idx(0x08, [2], [5, 7]));
  const pair = readIdxImagesAndLabels(plain, labels);
  assert.deepEqual(Array.from(pair.labels.data), [5, 7]);
});

test('IDX: truncated data names the file and the offset', () => {
  const file = write('truncated', idx(0x08, [2, 2, 3], pixels.slice(0, 5)));
  assert.throws(() => readIdxFile(file), (e: Error) => e.message.includes(file) && /truncated data at offset 21/.test(e.message) && e.message.includes('need 12 bytes from offset 16'));
});

test('IDX: truncated header names the file and the offset', () => {
  const file = write('short-header', idx(0x08, [2, 2, 3], []).subarray(0, 10));
  assert.throws(() => readIdxFile(file), (e: Error) => e.message.includes(file) && e.message.includes('truncated header at offset 10'));
});

test('IDX: bad magic names the file and offset 0', () => {
  const bytes = idx(0x08, [2], [1, 2]);
  bytes[0] = 0x50; // e.g. a PNG or text file
  const file = write('bad-magic', bytes);
  assert.throws(() => readIdxFile(file), (e: Error) => e.message.includes(file) && e.message.includes('bad magic number 50 00 08 01 at offset 0'));
});

test('IDX: unsupported element type and trailing bytes are errors', () => {
  const f32 = write('float', idx(0x0d, [1], [0, 0, 0, 0]));
  assert.throws(() => readIdxFile(f32), (e: Error) => e.message.includes(f32) && e.message.includes('0xd (float32) at offset 2'));
  const trailing = write('trailing', idx(0x08, [2], [1, 2, 3]));
  assert.throws(() => readIdxFile(trailing), (e: Error) => e.message.includes(trailing) && e.message.includes('1 unexpected trailing bytes at offset 10'));
});

test('IDX: image/label count mismatch names both files and offset 4', () => {
  const images = write('mm-images', idx(0x08, [2, 2, 3], pixels));
  const labels = write('mm-labels', idx(0x08, [3], [1, 2, 3]));
  assert.throws(
    () => readIdxImagesAndLabels(images, labels),
    (e: Error) => e.message.includes(images) && e.message.includes(labels) && e.message.includes('offset 4') && e.message.includes('2 images') && e.message.includes('3 labels'),
  );
});
