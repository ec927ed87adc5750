import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Temporary directories for tests, removed when the test file's process exits (node --test runs each file in
 * its own process), so a full `npm test` leaves nothing behind in the system temp folder. Set
 * QATKIT_KEEP_TEST_DIRS=1 to keep them for a post-mortem.
 */
const made: string[] = [];

process.on('exit', () => {
  if (process.env.QATKIT_KEEP_TEST_DIRS === '1') return;
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the system temp folder, named `<prefix>XXXXXX`, deleted at exit. */
export function scratchDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}
