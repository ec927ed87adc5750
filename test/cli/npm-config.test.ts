import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// npm 11 warns on every command about .npmrc keys it does not know, and lists dependencies whose install scripts
// package.json's allowScripts does not cover (docs/decisions.md, "npm install scripts").
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const npm = (...args: string[]) => spawnSync('npm', args, { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
const hasNpm = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0;

test('npm reads no unknown project config (no warning on every npm/npx command)', (t) => {
  if (!hasNpm) return t.skip('npm is not on PATH');
  const r = npm('config', 'get', 'registry');
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Unknown (project|user|env) config/);
});

test("allowScripts denies onnxruntime-node's postinstall (the CUDA download) and covers every install script", (t) => {
  const allow = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).allowScripts;
  assert.equal(allow?.['onnxruntime-node'], false);
  for (const name of ['esbuild', 'protobufjs']) assert.equal(allow?.[name], true, `${name}'s install script must stay allowed`);
  if (!hasNpm) return t.skip('npm is not on PATH');
  const r = npm('install-scripts', 'ls');
  if (r.status !== 0 && /Unknown command|unknown command/i.test(r.stderr + r.stdout)) return t.skip(`npm ${npm('--version').stdout.trim()} has no install-scripts command`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /No packages with unreviewed install scripts/);
});
