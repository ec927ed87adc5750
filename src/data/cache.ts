/**
 * A binary cache of a parsed train/test split of uint8 datasets, so slow sources (150 MB of JSON) are parsed once.
 *
 * Layout: "QATKITDS" (8 bytes), uint32 LE header length, a UTF-8 JSON header, then per part (train, test) its
 * pixels followed by its labels. The header holds the caller's key (package name, version, source sizes, split
 * rule), every part's count/shape, the payload size and its SHA-256: a cache written by another package version,
 * cut short by a full disk, or edited by hand is reported as a miss with the reason, and the caller re-parses.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { RawDataset, checkRawDataset } from './dataset.js';

const MAGIC = 'QATKITDS';
const FORMAT = 1;

export interface RawSplit {
  train: RawDataset;
  test: RawDataset;
}

interface PartHeader {
  name: string;
  count: number;
  shape: [number, number, number];
  classes: number;
  classNames?: readonly string[];
}

interface CacheHeader {
  format: number;
  key: unknown;
  parts: PartHeader[];
  payloadBytes: number;
  sha256: string;
}

function partHeader(p: RawDataset): PartHeader {
  return { name: p.name, count: p.count, shape: p.shape, classes: p.classes, ...(p.classNames ? { classNames: p.classNames } : {}) };
}

function digest(chunks: Uint8Array[]): string {
  const h = crypto.createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

export function writeSplitCache(file: string, key: unknown, split: RawSplit): void {
  const parts = [split.train, split.test];
  const chunks = parts.flatMap((p) => [p.pixels, p.labels]);
  const payloadBytes = chunks.reduce((a, c) => a + c.length, 0);
  const header: CacheHeader = { format: FORMAT, key, parts: parts.map(partHeader), payloadBytes, sha256: digest(chunks) };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.allocUnsafe(MAGIC.length + 4 + headerBytes.length + payloadBytes);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(headerBytes.length, MAGIC.length);
  let at = MAGIC.length + 4;
  out.set(headerBytes, at);
  at += headerBytes.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  writeFileAtomic(file, out);
}

export type CacheRead = { split: RawSplit } | { miss: string };

/** Reads a cache written by writeSplitCache with the same key; anything else is a miss with its reason. */
export function readSplitCache(file: string, key: unknown): CacheRead {
  if (!fs.existsSync(file)) return { miss: `no cache file ${file}` };
  const bytes = fs.readFileSync(file);
  const headerStart = MAGIC.length + 4;
  if (bytes.length < headerStart || bytes.toString('latin1', 0, MAGIC.length) !== MAGIC) return { miss: `${file}: bad magic at offset 0` };
  const headerLength = bytes.readUInt32LE(MAGIC.length);
  if (bytes.length < headerStart + headerLength) return { miss: `${file}: truncated header at offset ${bytes.length}` };
  let header: CacheHeader;
  try {
    header = JSON.parse(bytes.toString('utf8', headerStart, headerStart + headerLength));
  } catch (e) {
    return { miss: `${file}: unreadable header at offset ${headerStart}: ${(e as Error).message}` };
  }
  if (header.format !== FORMAT) return { miss: `${file}: cache format ${header.format}, expected ${FORMAT}` };
  if (JSON.stringify(header.key) !== JSON.stringify(key)) {
    return { miss: `${file}: written for ${JSON.stringify(header.key)}, expected ${JSON.stringify(key)}` };
  }
  const payloadStart = headerStart + headerLength;
  if (!Array.isArray(header.parts) || header.parts.length !== 2) return { miss: `${file}: header lists ${header.parts?.length} parts, expected 2` };
  const sizes = header.parts.flatMap((p) => [p.count * p.shape.reduce((a, b) => a * b, 1), p.count]);
  const payloadBytes = sizes.reduce((a, b) => a + b, 0);
  if (payloadBytes !== header.payloadBytes || bytes.length !== payloadStart + payloadBytes) {
    return { miss: `${file}: ${bytes.length - payloadStart} payload bytes at offset ${payloadStart}, header sizes need ${payloadBytes}` };
  }
  const chunks: Uint8Array[] = [];
  let at = payloadStart;
  for (const size of sizes) {
    chunks.push(new Uint8Array(bytes.buffer, bytes.byteOffset + at, size));
    at += size;
  }
  if (digest(chunks) !== header.sha256) return { miss: `${file}: payload checksum mismatch` };
  const [train, test] = header.parts.map((p, i): RawDataset => ({ ...p, pixels: chunks[2 * i], labels: chunks[2 * i + 1] }));
  try {
    checkRawDataset(train);
    checkRawDataset(test);
  } catch (e) {
    return { miss: `${file}: ${(e as Error).message}` };
  }
  return { split: { train, test } };
}
