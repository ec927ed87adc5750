/**
 * The fuzz suite (test/fuzz/fuzz.test.ts) for longer than CI gives it: mutated ONNX models, checkpoints, quant
 * configs and command lines against the real loaders and `qat train`, for --seconds in all (default 600).
 *
 *   node --import tsx bench/fuzz.ts [--seconds 600] [--seed N]
 *
 * A failure prints fast-check's seed and path (and the input, described); add it to REGRESSIONS in the test.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const seconds = Number(arg('--seconds') ?? 600);
if (!Number.isFinite(seconds) || seconds <= 0) throw new Error(`--seconds must be a number > 0, got '${arg('--seconds')}'`);
const seed = arg('--seed') ?? String(Date.now() % 2 ** 31);
console.log(`fuzzing for ${seconds} s with seed ${seed}`);
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', 'test/fuzz/fuzz.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, QATKIT_FUZZ_SECONDS: String(seconds), QATKIT_FUZZ_SEED: seed },
});
process.exit(r.status ?? 1);
