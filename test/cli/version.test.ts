import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageVersion } from '../../src/cli/version';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const stated = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;

test('qat --version and qat -V print package.json\'s version alone, exit 0, nothing on stderr', () => {
  for (const flag of ['--version', '-V']) {
    const r = spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), flag], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${stated}\n`);
    assert.equal(r.stderr, '');
  }
});

test('packageVersion reads the package.json of the checkout it runs from', () => {
  assert.match(stated, /^\d+\.\d+\.\d+/);
  assert.equal(packageVersion(), stated);
});
