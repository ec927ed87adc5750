/**
 * Byte-level surgery on format-2 checkpoints for tests and the malformed-input corpus: split a file into its
 * header and payload, edit either, and put it back together with a valid checksum (so a test reaches the checks
 * behind the checksum: header schema, spans, names, values).
 */
import { createHash } from 'node:crypto';

const MAGIC = 'QATKIT-CHECKPOINT\n';

export interface CheckpointParts {
  version: number;
  header: Record<string, any>;
  payload: Buffer;
}

export function splitCheckpoint(bytes: Uint8Array): CheckpointParts {
  const buf = Buffer.from(bytes);
  if (buf.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) throw new Error('not a format-2 checkpoint');
  const version = buf.readUInt32LE(MAGIC.length);
  const length = buf.readUInt32LE(MAGIC.length + 4);
  const start = MAGIC.length + 8;
  const header = JSON.parse(buf.subarray(start, start + length).toString('utf8'));
  return { version, header, payload: Buffer.from(buf.subarray(start + length, buf.length - 32)) };
}

/** Reassembles (header JSON as given, or raw header bytes), with a correct SHA-256 unless `checksum` is false. */
export function joinCheckpoint(parts: { version: number; header: Record<string, any> | Buffer; payload: Uint8Array }, { checksum = true } = {}): Buffer {
  const json = Buffer.isBuffer(parts.header) ? parts.header : Buffer.from(JSON.stringify(parts.header), 'utf8');
  const fixed = Buffer.alloc(8);
  fixed.writeUInt32LE(parts.version, 0);
  fixed.writeUInt32LE(json.length, 4);
  const body = Buffer.concat([Buffer.from(MAGIC), fixed, json, Buffer.from(parts.payload)]);
  const digest = checksum ? createHash('sha256').update(body).digest() : Buffer.alloc(32);
  return Buffer.concat([body, digest]);
}

/** Edits the header of a checkpoint and re-seals it. */
export function withHeader(bytes: Uint8Array, edit: (header: Record<string, any>) => void): Buffer {
  const parts = splitCheckpoint(bytes);
  edit(parts.header);
  return joinCheckpoint(parts);
}
