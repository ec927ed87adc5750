import path from 'node:path';
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The installed folder and version of an npm package (ESM has no require.resolve of its own). */
export function packageInfo(pkg: string): { dir: string; version: string } {
  let manifest: string;
  try {
    manifest = require.resolve(`${pkg}/package.json`);
  } catch (e) {
    throw new Error(`data package '${pkg}' is not installed (run npm install): ${(e as Error).message}`);
  }
  const version = String(JSON.parse(fs.readFileSync(manifest, 'utf8')).version);
  return { dir: path.dirname(manifest), version };
}

/** node_modules/.cache/qatkit next to the package: the conventional cache place that npm ci clears. */
export function defaultCacheDir(pkgDir: string): string {
  let dir = path.dirname(pkgDir);
  while (path.basename(dir) !== 'node_modules' && path.dirname(dir) !== dir) dir = path.dirname(dir); // scoped packages
  return path.join(dir, '.cache', 'qatkit');
}
