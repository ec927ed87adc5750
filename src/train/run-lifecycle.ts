/**
 * What every training run does around its steps, shared by image and language-model runs: the source run named by
 * --from checked, the run directory opened (lock, stale temp files), a resumed checkpoint checked against the
 * step graph it feeds, checkpoints counted, and on failure the directory restored or left resumable with the
 * message saying which.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tensor } from '../ir/tensor.js';
import { writeFileAtomic } from '../onnx/atomic-write.js';
import { InputError } from '../validate/schema.js';
import { Checkpoint, loadCheckpoint } from './checkpoint.js';
import { checkStoredTrainConfig } from './config-schema.js';
import { RunDirectory, sameDirectory } from './run-dir.js';
import type { CarriedValue } from './step-graph.js';

export const CHECKPOINT_FILE = 'checkpoint.qat';
export const METRICS_FILE = 'metrics.json';

/** metrics.json of a finished run: the result without its per-step losses, and the config that produced it. */
export function writeRunMetrics(runDir: string, result: { losses: number[] }, config: unknown): void {
  const { losses: _losses, ...summary } = result;
  writeFileAtomic(path.join(runDir, METRICS_FILE), JSON.stringify({ ...summary, config }, null, 2) + '\n');
}

/** A run stopped by SIGINT/SIGTERM (or an aborted signal) after writing its checkpoint. */
export class TrainingInterruptedError extends Error {}

/**
 * The run a command starts from or distills from (`--from`, or the `from` a checkpoint names): it must be a
 * directory other than the run itself holding a valid qatkit checkpoint of an fp32 run. A checkpoint cannot
 * redirect a command to an arbitrary file: whatever path it names goes through this check.
 */
export function openSourceRun(from: string, runDir: string | undefined, what = '--from'): Checkpoint {
  if (runDir !== undefined && sameDirectory(from, runDir)) {
    throw new InputError(`${what} ${from} is the run directory itself (--out ${runDir}): a run cannot start from itself, that would overwrite its source; choose another --out`);
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(from);
  } catch {
    throw new InputError(`${what} ${from}: no such run directory${runDir !== undefined && what !== "--from" ? " (moved? pass --from NEW_PATH)" : ""}`);
  }
  if (!stat.isDirectory()) throw new InputError(`${what} ${from}: not a directory (a run directory holds ${CHECKPOINT_FILE})`);
  const file = path.join(from, CHECKPOINT_FILE);
  if (!fs.existsSync(file)) throw new InputError(`${what}: no checkpoint at ${file} (not a qatkit run${what === '--from' ? `; train an fp32 run first with qat train --out ${from}` : ''})`);
  return loadCheckpoint(file);
}

/** A source run for QAT fine-tuning or distillation: an fp32 classification or language-model run. */
export function openFp32SourceRun(from: string, runDir: string | undefined, what = '--from'): Checkpoint {
  const source = openSourceRun(from, runDir, what);
  if (source.model.quant) {
    throw new InputError(`${what} ${from} is a quantized run (${source.model.quant.method ?? 'qat'} ${source.model.quant.preset ?? 'custom'}); start from an fp32 run`);
  }
  checkStoredTrainConfig(source.config, path.join(from, CHECKPOINT_FILE));
  return source;
}

/**
 * A resumed run's saved values must be exactly what its step graph carries: a missing optimizer tensor would
 * silently restart from zeros, a renamed or extra one is a checkpoint that does not belong to its model.
 */
export function checkResumeState(carried: CarriedValue[], saved: Map<string, Tensor>, file: string): void {
  const fail = (why: string): never => {
    throw new InputError(`checkpoint '${file}': ${why}`);
  };
  const byName = new Map(carried.map((c) => [c.input, c]));
  for (const [name, t] of saved) {
    const c = byName.get(name);
    if (!c || c.kind !== 'optimizer') fail(`tensor '${name}' is no optimizer state of this run's training step (renamed or foreign?)`);
    if (t.dims.length !== c!.initial.dims.length || t.dims.some((d, i) => d !== c!.initial.dims[i])) fail(`tensor '${name}' has dims [${t.dims}], the run needs [${c!.initial.dims}]`);
  }
  for (const c of carried) if (c.kind === 'optimizer' && !saved.has(c.input)) fail(`optimizer state '${c.input}' is missing (the run cannot continue exactly without it)`);
}

/** The directory of one training command, with the failure handling of the file comment. */
export class RunSession {
  private constructor(readonly dir: RunDirectory, readonly runDir: string) {}

  static open(runDir: string, resume: boolean): RunSession {
    return new RunSession(RunDirectory.open(runDir, { resume, requiredFile: CHECKPOINT_FILE }), runDir);
  }

  get checkpointFile(): string {
    return path.join(this.runDir, CHECKPOINT_FILE);
  }

  /** Call after each complete checkpoint. */
  checkpointed(): void {
    this.dir.checkpointed = true;
  }

  finish(): void {
    this.dir.release();
  }

  /** Restores or keeps the directory (see RunDirectory.abandon) and returns the error with that said. */
  fail(e: unknown): unknown {
    const wrote = this.dir.checkpointed;
    const restored = this.dir.abandon();
    if (!(e instanceof Error) || e instanceof TrainingInterruptedError) return e;
    // A resumed run refused for its own checkpoint gets no "continue with --resume" advice: that is what failed.
    if (!restored && !wrote && e instanceof InputError) return e;
    const note = restored
      ? this.dir.resume
        ? ''
        : ` (nothing was kept: ${this.runDir} is as it was before)`
      : `; the run in ${this.runDir} keeps its last checkpoint: continue with qat train --out ${this.runDir} --resume`;
    if (!note || e.message.includes('--resume')) return e;
    const Class = e.constructor as new (message: string) => Error;
    try {
      const wrapped = new Class(`${e.message}${note}`);
      wrapped.stack = e.stack;
      return wrapped;
    } catch {
      return e;
    }
  }
}

/** The step a resumed run may continue from: not past the run's end. */
export function checkStartStep(step: number, totalSteps: number, file: string, stepsGiven: boolean): void {
  if (step <= totalSteps) return;
  if (stepsGiven) throw new InputError(`--steps ${totalSteps} is before the checkpoint's step ${step} (${file}); give --steps >= ${step}`);
  throw new InputError(`checkpoint '${file}': step ${step} is past the run's end (${totalSteps} steps)`);
}
