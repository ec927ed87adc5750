/**
 * The fuzz suite (issue 14): property-based mutations of ONNX models, checkpoints, quant configs and command lines
 * drive the real loaders and `qat train` for a bounded time (QATKIT_FUZZ_SECONDS in all, default 40; bench/fuzz.ts
 * runs longer). A failure prints fast-check's seed and path; a crash found becomes a fixed-seed case in REGRESSIONS.
 * QATKIT_FUZZ_SEED fixes the seed of a whole run.
 */
import { test } from 'node:test';
import fc from 'fast-check';
import {
  BASE_CHECKPOINT,
  checkpointTarget,
  cliTarget,
  mutatedBytes,
  mutatedCheckpointHeader,
  mutatedOnnx,
  mutatedQuantConfig,
  onnxTarget,
  quantConfigTarget,
  trainArgv,
} from '../helpers/fuzz-targets';

const total = Number(process.env.QATKIT_FUZZ_SECONDS ?? 40) * 1000;
const seed = process.env.QATKIT_FUZZ_SEED ? Number(process.env.QATKIT_FUZZ_SEED) : undefined;
/** Share of the time budget per property. */
const budget = (share: number) => ({ numRuns: 1_000_000, interruptAfterTimeLimit: Math.round(total * share), ...(seed !== undefined ? { seed } : {}) });

/** Inputs that once broke a loader, replayed first on every run (found by this suite while it was written). */
const REGRESSIONS = {
  quantConfig: [
    { weight: JSON.parse('['.repeat(3000) + ']'.repeat(3000)) }, // was: a stack overflow printing the value
    { activation: { granularity: 'per-token' } }, // was: accepted for min/max and silently per-tensor
  ],
  argv: [['--input-mean', '0.5'], ['--threads', '999'], ['--resume', '--lr', '1']],
};

test('mutated ONNX models: the train and eval loaders accept them or refuse them cleanly, naming the file', () => {
  fc.assert(fc.property(mutatedOnnx, (bytes) => onnxTarget(bytes)), budget(0.3));
});

test('byte-mutated checkpoints are always refused, cleanly, naming the file', async () => {
  await fc.assert(fc.asyncProperty(mutatedBytes(BASE_CHECKPOINT), (bytes) => checkpointTarget(bytes, true)), budget(0.15));
});

test('checkpoints with edited headers (checksum resealed) load and plan a resume, or are refused cleanly', async () => {
  await fc.assert(fc.asyncProperty(mutatedCheckpointHeader, (bytes) => checkpointTarget(bytes, false)), budget(0.2));
});

test('mutated quant configs are refused cleanly naming the file, or hold only in-range values', () => {
  for (const raw of REGRESSIONS.quantConfig) quantConfigTarget(raw);
  fc.assert(fc.property(mutatedQuantConfig, (raw) => quantConfigTarget(raw)), budget(0.1));
});

test('random qat train command lines (with --dry-run): exit 0 writing nothing, or one qat: line and exit 1 or 2', async () => {
  for (const argv of REGRESSIONS.argv) await cliTarget(argv);
  await fc.assert(fc.asyncProperty(trainArgv, (argv) => cliTarget(argv)), budget(0.25));
});
