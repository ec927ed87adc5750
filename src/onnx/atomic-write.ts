import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../validate/schema.js';
import { ensureDirectory, systemReason } from './ensure-directory.js';

/**
 * Writes a file through a temporary sibling (`.<name>.<pid>.<time>.tmp`), flushed to disk, and a rename, so a
 * crash never leaves a half-written file under the final name: readers see the old file or the new one. A temp
 * file left by a killed process is removed by the next command that opens the run directory (run-dir.ts).
 */
let sequence = 0;

export function writeFileAtomic(file: string, data: Uint8Array | string): void {
  const dir = path.dirname(path.resolve(file));
  ensureDirectory(dir);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now() * 1000 + (sequence++ % 1000)}.tmp`);
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new InputError(`cannot write ${file}: ${systemReason(e)}`);
  }
  syncDirectory(dir);
}

/** Makes a rename durable (POSIX); directories cannot be opened for fsync on Windows, where this is a no-op. */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // not supported here
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
