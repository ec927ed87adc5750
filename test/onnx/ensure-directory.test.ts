import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ensureDirectory } from '../../src/onnx/ensure-directory.js';
import { writeFileAtomic } from '../../src/onnx/atomic-write.js';
import { InputError } from '../../src/validate/schema.js';
import { scratchDir } from '../helpers/scratch.js';

const scratch = () => scratchDir('qat-ensure-dir-');

test('ensureDirectory creates missing parents and returns the topmost one it made', () => {
  const root = scratch();
  const made = ensureDirectory(path.join(root, 'a', 'b', 'c'));
  assert.equal(made, path.join(root, 'a'));
  assert.ok(fs.statSync(path.join(root, 'a', 'b', 'c')).isDirectory());
  assert.equal(ensureDirectory(path.join(root, 'a', 'b')), undefined, 'an existing directory creates nothing');
  fs.rmSync(root, { recursive: true });
});

test('ensureDirectory refuses a file in the path with one line naming it', () => {
  const root = scratch();
  fs.writeFileSync(path.join(root, 'f'), 'x');
  assert.throws(() => ensureDirectory(path.join(root, 'f', 'sub')), (e: Error) => e instanceof InputError && /f is a file, not a directory/.test(e.message));
  fs.rmSync(root, { recursive: true });
});

test('ensureDirectory fails at once under procfs, where recursive mkdir spins forever', { skip: !fs.existsSync('/proc/self') }, () => {
  const started = Date.now();
  assert.throws(() => ensureDirectory('/proc/qat-no-such/dir'), (e: Error) => e instanceof InputError && /cannot create directory \/proc\/qat-no-such\/dir: no such file or directory/.test(e.message));
  assert.ok(Date.now() - started < 5000);
});

test('writeFileAtomic reports an unwritable target by its own name, leaving no temp file', { skip: !fs.existsSync('/proc/self') }, () => {
  assert.throws(() => writeFileAtomic('/proc/qat-model.onnx', 'x'), (e: Error) => e instanceof InputError && e.message === 'cannot write /proc/qat-model.onnx: no such file or directory');
});
