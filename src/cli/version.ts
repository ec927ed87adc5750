import fs from 'node:fs';

/**
 * qatkit's version as package.json states it, read when asked (not copied at build time), so `qat --version`
 * cannot drift from the package a user installed.
 */
export function packageVersion(): string {
  const file = new URL('../../package.json', import.meta.url);
  const version = (JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: unknown }).version;
  if (typeof version !== 'string' || !version) throw new Error(`${file.pathname}: no "version" string`);
  return version;
}
