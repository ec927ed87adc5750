import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const qat = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/qat.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
const tiny = ['--layers', '1', '--heads', '2', '--dim', '16', '--context', '16', '--steps', '1', '--dry-run'];

/** The command fails with one line on stderr matching `pattern`, and no stack trace. */
function refused(r: ReturnType<typeof qat>, pattern: RegExp): void {
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('qat train --kv-bits: accepted with a language-model preset (dry run), refused where it cannot apply, each naming why', () => {
  const ok = qat('train', '--model', 'gpt', '--data', 'moby-dick', '--quant', 'w4a16-g32', '--kv-bits', '4', '--kv-layout', 'kivi', ...tiny);
  assert.equal(ok.status, 0, ok.stderr);
  refused(qat('train', '--model', 'mlp', '--data', 'mnist', '--kv-bits', '4', '--dry-run'), /--kv-bits does not apply to image data \(--data mnist\)/);
  refused(qat('train', '--model', 'gpt', '--data', 'moby-dick', '--kv-bits', '4', ...tiny), /--kv-bits does not apply to an fp32 run from scratch/);
  refused(qat('train', '--model', 'gpt', '--data', 'moby-dick', '--quant', 'w8a8', '--kv-layout', 'kivi', ...tiny), /--kv-layout does not apply without --kv-bits/);
  refused(qat('train', '--model', 'gpt', '--data', 'moby-dick', '--quant', 'w8a8', '--kv-bits', '3', ...tiny), /--kv-bits must be one of 8, 4, 2, got '3'/);
  refused(qat('train', '--model', 'gpt', '--data', 'moby-dick', '--quant', 'w8a8', '--kv-bits', '4', '--kv-layout', 'blocks', ...tiny), /--kv-layout must be one of per-token, kivi, got 'blocks'/);
  refused(qat('train', '--out', path.join(root, 'no-such-run'), '--resume', '--kv-bits', '4'), /--kv-bits does not apply with --resume/);
});
