import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../validate/schema.js';

/**
 * Creates `dir` and any missing parents, one level at a time, and returns the topmost directory it created
 * (undefined when `dir` already existed), so a caller that fails later can remove exactly what it made.
 *
 * Why not `fs.mkdirSync(dir, { recursive: true })`: on Linux, Node 20's recursive mkdir spins forever under
 * procfs (`/proc/x/y`: mkdir answers ENOENT, which its retry loop reads as "create the parent first"). Walking
 * the path ourselves turns every failure into one line naming the directory and the reason.
 */
export function ensureDirectory(dir: string): string | undefined {
  const target = path.resolve(dir);
  const missing: string[] = [];
  for (let current = target; ; ) {
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(current);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw cannotCreate(target, e);
    }
    if (stat) {
      if (!stat.isDirectory()) throw new InputError(`cannot create directory ${target}: ${current} is a file, not a directory`);
      break;
    }
    missing.push(current);
    const parent = path.dirname(current);
    if (parent === current) throw new InputError(`cannot create directory ${target}: its root ${current} does not exist`);
    current = parent;
  }
  missing.reverse();
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      const raced = (e as NodeJS.ErrnoException).code === 'EEXIST' && fs.statSync(d, { throwIfNoEntry: false })?.isDirectory();
      if (!raced) throw cannotCreate(target, e);
    }
  }
  return missing[0];
}

/** "EACCES: permission denied, mkdir '/x'" -> "permission denied": the reason without the errno name or call. */
export function systemReason(e: unknown): string {
  const message = (e as Error).message ?? String(e);
  return message.replace(/^E[A-Z]+: /, '').replace(/, \w+ '.*'$/, '');
}

function cannotCreate(target: string, e: unknown): InputError {
  return new InputError(`cannot create directory ${target}: ${systemReason(e)}`);
}
