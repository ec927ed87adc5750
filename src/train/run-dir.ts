/**
 * A run directory's life while a command writes it: exclusive (a lock file with the holder's pid), cleaned of
 * the temp files an interrupted write left, and, when the command fails before its first complete checkpoint,
 * put back as it was (what the command created is removed; nothing that was there is touched).
 */
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../validate/schema.js';
import { ensureDirectory } from '../onnx/ensure-directory.js';

export const LOCK_FILE = '.qat.lock';
/** writeFileAtomic's temp names: `.<file>.<pid>.<time>.tmp`. */
const TEMP_FILE = /^\..+\.(\d+)\.(\d+)\.tmp$/;

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temp files of interrupted atomic writes whose writer is gone; returns their names. */
export function removeStaleTempFiles(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_FILE.exec(name);
    if (!m || alive(Number(m[1]))) continue; // (this process's own writes are complete or in flight)
    fs.rmSync(path.join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}

export interface RunDirectoryOptions {
  /** Continue the run saved in the directory (it must hold `requiredFile`); otherwise start a new one. */
  resume: boolean;
  /** The file a resumable run holds (checkpoint.qat). */
  requiredFile: string;
  /** Flag that named the directory, for messages (default --out). */
  flag?: string;
}

/**
 * Opens `dir` for one command. A new run needs a directory that does not exist or is empty (so that no earlier
 * run can be replaced); a resumed one needs the run's checkpoint. Either way the lock is taken first.
 */
export class RunDirectory {
  /** Set once this command wrote a complete checkpoint: from then on a failure keeps the directory (resumable). */
  checkpointed = false;
  private readonly createdDir?: string;
  private readonly existing: Set<string>;
  private released = false;

  private constructor(readonly dir: string, readonly resume: boolean, createdDir: string | undefined, existing: Set<string>) {
    this.createdDir = createdDir;
    this.existing = existing;
  }

  /** The checks of `open`, writing nothing: a new run's directory is absent or empty, a resumed one holds its file, no live lock. */
  static check(dir: string, options: RunDirectoryOptions): void {
    RunDirectory.checkOnly(dir, options);
  }

  private static checkOnly(dir: string, options: RunDirectoryOptions): fs.Stats | undefined {
    const flag = options.flag ?? '--out';
    const abs = path.resolve(dir);
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(abs);
    } catch {
      stat = undefined;
    }
    if (stat && !stat.isDirectory()) throw new InputError(`${flag} ${dir}: exists and is not a directory`);
    const lock = path.join(abs, LOCK_FILE);
    const holder = stat ? lockHolder(lock) : undefined;
    if (holder !== undefined) throw inUse(abs, holder, lock);
    if (options.resume) {
      const file = path.join(abs, options.requiredFile);
      if (!stat || !fs.existsSync(file)) throw new InputError(`--resume: no checkpoint at ${path.join(dir, options.requiredFile)}`);
    } else if (stat) {
      const entries = fs.readdirSync(abs).filter((n) => n !== LOCK_FILE && !TEMP_FILE.test(n));
      if (entries.length) {
        const run = entries.includes(options.requiredFile);
        throw new InputError(
          `${flag} ${dir}: ${run ? `already holds a run (${options.requiredFile})` : `is not empty (${entries.slice(0, 5).join(', ')}${entries.length > 5 ? ', ...' : ''})`}; ` +
            `${run ? 'continue it with --resume, or ' : ''}choose a new directory (nothing was written)`,
        );
      }
    }
    return stat;
  }

  static open(dir: string, options: RunDirectoryOptions): RunDirectory {
    const abs = path.resolve(dir);
    const stat = RunDirectory.checkOnly(dir, options);
    const createdDir = stat ? undefined : ensureDirectory(abs);
    const existing = new Set(fs.readdirSync(abs));
    const rd = new RunDirectory(abs, options.resume, createdDir, existing);
    try {
      rd.lock();
    } catch (e) {
      if (createdDir) fs.rmSync(createdDir, { recursive: true, force: true });
      throw e;
    }
    removeStaleTempFiles(abs);
    return rd;
  }

  private lock(): void {
    const file = path.join(this.dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(file, 'wx');
        fs.writeSync(fd, `${process.pid}\n`);
        fs.closeSync(fd);
        this.existing.delete(LOCK_FILE);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = lockHolder(file);
      if (holder !== undefined) throw inUse(this.dir, holder, file);
      fs.rmSync(file, { force: true }); // the holder died without releasing it (kill -9)
    }
    throw new InputError(`run directory ${this.dir}: cannot take the lock file ${file}`);
  }

  /** The command finished (or stopped with a checkpoint): release the lock. */
  release(): void {
    if (this.released) return;
    this.released = true;
    const file = path.join(this.dir, LOCK_FILE);
    try {
      if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.rmSync(file, { force: true });
    } catch {
      // already gone
    }
  }

  /**
   * The command failed. Before its first complete checkpoint, everything it created goes (the directory itself
   * if it made it, else the files it added) and what was there stays; after one, the directory stays, resumable.
   * Returns whether the directory was restored.
   */
  abandon(): boolean {
    const restore = !this.checkpointed && !this.resume;
    if (restore) {
      if (this.createdDir) fs.rmSync(this.createdDir, { recursive: true, force: true });
      else {
        for (const name of safeReaddir(this.dir)) if (!this.existing.has(name) && name !== LOCK_FILE) fs.rmSync(path.join(this.dir, name), { recursive: true, force: true });
      }
    }
    removeStaleTempFiles(this.dir);
    this.release();
    return restore;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function inUse(dir: string, holder: number, file: string): InputError {
  return new InputError(
    `run directory ${dir} is in use by process ${holder}${holder === process.pid ? ' (this process)' : ''} (lock file ${file}); ` +
      `wait for it to finish, or delete the lock file if that process is not qatkit`,
  );
}

/** The pid in a lock file if that process is alive, else undefined (no lock, or a stale one). */
function lockHolder(file: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
  return alive(pid) ? pid : undefined;
}

/** Real paths of two directories (or their intended location) are the same directory. */
export function sameDirectory(a: string, b: string): boolean {
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  return real(a) === real(b);
}
