/**
 * Parser for the IDX format of the MNIST files (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"):
 * bytes 0-1 are zero, byte 2 is the element type (0x08 = uint8), byte 3 the number of dimensions, then
 * one big-endian uint32 per dimension, then the data. Only uint8 is supported: MNIST-style files use nothing else.
 * Gzipped files (magic 1f 8b) are gunzipped first, since IDX files are usually distributed as .gz.
 */
import fs from 'node:fs';
import zlib from 'node:zlib';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const UINT8_TYPE = 0x08;
const TYPE_NAMES: Record<number, string> = { 0x08: 'uint8', 0x09: 'int8', 0x0b: 'int16', 0x0c: 'int32', 0x0d: 'float32', 0x0e: 'float64' };

export function parseIdx(bytes: Uint8Array, file: string): IdxArray {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = zlib.gunzipSync(bytes);
  if (bytes.length < 4) throw new Error(`IDX ${file}: truncated header: file has ${bytes.length} bytes, the magic number needs 4 (offset 0)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`IDX ${file}: bad magic number ${magic} at offset 0: expected 00 00 <type> <ndims>`);
  }
  const type = bytes[2];
  if (type !== UINT8_TYPE) {
    throw new Error(`IDX ${file}: element type 0x${type.toString(16)} (${TYPE_NAMES[type] ?? 'unknown'}) at offset 2 is not supported; only 0x08 (uint8)`);
  }
  const ndims = bytes[3];
  if (ndims === 0) throw new Error(`IDX ${file}: zero dimensions at offset 3`);
  const headerSize = 4 + 4 * ndims;
  if (bytes.length < headerSize) {
    throw new Error(`IDX ${file}: truncated header at offset ${bytes.length}: ${ndims} dimensions need ${headerSize} header bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let d = 0; d < ndims; d++) dims.push(view.getUint32(4 + 4 * d, false));
  const size = dims.reduce((a, b) => a * b, 1);
  const have = bytes.length - headerSize;
  if (have < size) {
    throw new Error(`IDX ${file}: truncated data at offset ${bytes.length}: dims [${dims.join(',')}] need ${size} bytes from offset ${headerSize}, file has ${have}`);
  }
  if (have > size) {
    throw new Error(`IDX ${file}: ${have - size} unexpected trailing bytes at offset ${headerSize + size} after dims [${dims.join(',')}]`);
  }
  return { dims, data: bytes.subarray(headerSize, headerSize + size) };
}

export function readIdxFile(file: string): IdxArray {
  return parseIdx(fs.readFileSync(file), file);
}

/** Reads an images file [N, H, W] and its labels file [N]; the counts live at offset 4 of each. */
export function readIdxImagesAndLabels(imagesFile: string, labelsFile: string): { images: IdxArray; labels: IdxArray } {
  const images = readIdxFile(imagesFile);
  const labels = readIdxFile(labelsFile);
  if (images.dims.length !== 3) throw new Error(`IDX ${imagesFile}: expected 3 dimensions [N,H,W] (offset 3), got [${images.dims.join(',')}]`);
  if (labels.dims.length !== 1) throw new Error(`IDX ${labelsFile}: expected 1 dimension [N] (offset 3), got [${labels.dims.join(',')}]`);
  if (images.dims[0] !== labels.dims[0]) {
    throw new Error(`IDX count mismatch at offset 4: ${imagesFile} has ${images.dims[0]} images, ${labelsFile} has ${labels.dims[0]} labels`);
  }
  return { images, labels };
}
