import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { scratchDir } from '../helpers/scratch.js';

const root = path.resolve(import.meta.dirname, '../..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** A consumer project that depends on qatkit (a link to this checkout) and compiles examples/ against it. */
function consumer(moduleResolution: 'nodenext' | 'bundler'): string {
  const dir = scratchDir(`qatkit-consumer-${moduleResolution}-`);
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'qatkit'), 'dir');
  for (const dep of ['@types', 'onnxruntime-node', 'onnxruntime-common', 'onnx-proto', 'protobufjs', 'long', 'commander', 'cli-progress', 'gpt-tokenizer', 'zod']) {
    const from = path.join(root, 'node_modules', dep);
    if (fs.existsSync(from)) fs.symlinkSync(from, path.join(dir, 'node_modules', dep), 'dir');
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }));
  fs.mkdirSync(path.join(dir, 'src'));
  for (const f of fs.readdirSync(path.join(root, 'examples'))) fs.copyFileSync(path.join(root, 'examples', f), path.join(dir, 'src', f));
  const compilerOptions = {
    target: 'ES2022', module: moduleResolution === 'nodenext' ? 'nodenext' : 'esnext', moduleResolution, strict: true, noEmit: true,
    skipLibCheck: true, esModuleInterop: true, types: ['node'], lib: ['ES2022'],
  };
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['src'] }));
  return dir;
}

for (const resolution of ['nodenext', 'bundler'] as const) {
  test(`the examples compile against the public entry point alone (moduleResolution ${resolution})`, () => {
    const dir = consumer(resolution);
    try {
      execFileSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      const out = (e as { stdout?: string }).stdout ?? String(e);
      assert.fail(`tsc (${resolution}) failed:\n${out.split('\n').slice(0, 15).join('\n')}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('every example imports qatkit by its package name only', () => {
  for (const f of fs.readdirSync(path.join(root, 'examples'))) {
    const src = fs.readFileSync(path.join(root, 'examples', f), 'utf8');
    const specifiers = [...src.matchAll(/from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]);
    assert.ok(specifiers.length > 0, f);
    for (const s of specifiers) assert.ok(s === 'qatkit' || s.startsWith('node:'), `${f} imports '${s}'`);
  }
});
