import fs from 'node:fs';
import path from 'node:path';

export interface ExternalDataRef {
  location: string;
  offset: number;
  length?: number;
}

/**
 * Reads external tensor data, refusing anything that would read outside the model's folder: absolute
 * locations, '..' segments, symlinks whose target leaves the folder, and ranges past the end of the file.
 */
export function readExternalData(modelDir: string, tensorName: string, ref: ExternalDataRef): Uint8Array {
  const refuse = (why: string): never => {
    throw new Error(`external data of tensor '${tensorName}' at '${ref.location}' refused: ${why}`);
  };
  const loc = ref.location;
  if (!loc) refuse('no location given');
  if (path.isAbsolute(loc) || /^[a-zA-Z]:[\\/]/.test(loc) || loc.startsWith('\\')) refuse('absolute paths are not allowed');
  if (loc.split(/[\\/]/).some((s) => s === '..')) refuse("'..' segments are not allowed");
  const root = fs.realpathSync(modelDir);
  const candidate = path.join(root, loc);
  if (!fs.existsSync(candidate)) refuse(`file does not exist in ${root}`);
  const real = fs.realpathSync(candidate);
  if (real !== root && !real.startsWith(root + path.sep)) refuse(`it resolves to ${real}, outside the model folder ${root}`);
  const stat = fs.statSync(real);
  if (!stat.isFile()) refuse('it is not a regular file');
  const size = stat.size;
  if (!Number.isSafeInteger(ref.offset) || ref.offset < 0) refuse(`offset ${ref.offset} is invalid`);
  const length = ref.length ?? size - ref.offset;
  if (!Number.isSafeInteger(length) || length < 0 || ref.offset + length > size) {
    refuse(`offset ${ref.offset} + length ${length} is past the end of the file (${size} bytes)`);
  }
  const fd = fs.openSync(real, 'r');
  try {
    const buf = Buffer.alloc(length);
    // readSync may return fewer bytes than asked: loop until the range is read.
    for (let done = 0; done < length; ) {
      const n = fs.readSync(fd, buf, done, length - done, ref.offset + done);
      if (n === 0) refuse(`the file ended after ${done} of ${length} bytes`);
      done += n;
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } finally {
    fs.closeSync(fd);
  }
}
