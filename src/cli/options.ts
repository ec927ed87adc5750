import os from 'node:os';
import { InvalidArgumentError } from 'commander';

/**
 * Commander parsers that name the flag and the valid values on bad input. Integers are decimal integers
 * ("1e3", "0x10", " 5", "5.0" are refused: Number() would read them), numbers are decimal or scientific
 * notation; both within the range the flag allows.
 */
const DECIMAL_INTEGER = /^(0|[1-9][0-9]*)$/;
const DECIMAL_NUMBER = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$/i;

export const intOption = (flag: string, min = 0, max = Number.MAX_SAFE_INTEGER) => (v: string) => {
  const n = DECIMAL_INTEGER.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`${flag} must be a decimal integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`}, got '${v}'`);
  }
  return n;
};

export const floatOption = (flag: string, { min = -Infinity, exclusiveMin = false, max = Infinity } = {}) => (v: string) => {
  const n = DECIMAL_NUMBER.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < min || (exclusiveMin && n === min) || n > max) {
    const range = max === Infinity ? `${exclusiveMin ? '>' : '>='} ${min}` : `in ${exclusiveMin ? '(' : '['}${min}, ${max}]`;
    throw new InvalidArgumentError(`${flag} must be a number ${range}, got '${v}'`);
  }
  return n;
};

/** The most intra-op threads a flag may ask for: the cores this process may use. */
export function maxThreads(): number {
  return Math.max(1, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
}

/** The default --threads: 2, or fewer on a smaller machine. */
export const defaultThreads = (): number => Math.min(2, maxThreads());

/**
 * --threads: 1 up to the machine's cores. More threads than cores only contend (issue 14 measured 400 ms/step and a
 * load average of 74 at --threads 999 on 2 cores).
 */
export const threadsOption = (flag = '--threads') => (v: string) => {
  const cores = maxThreads();
  const n = DECIMAL_INTEGER.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > cores) {
    throw new InvalidArgumentError(`${flag} must be a decimal integer in 1..${cores} (this machine's cores), got '${v}'`);
  }
  return n;
};

export const choiceOption = <T extends string>(flag: string, choices: readonly T[]) => (v: string): T => {
  if (!(choices as readonly string[]).includes(v)) throw new InvalidArgumentError(`${flag} must be one of ${choices.join(', ')}, got '${v}'`);
  return v as T;
};

export const floatListOption = (flag: string) => (v: string) => {
  const items = v.split(',').map((s) => s.trim());
  const parts = items.map((s) => (DECIMAL_NUMBER.test(s) ? Number(s) : NaN));
  if (items.length > 4096 || parts.some((n) => !Number.isFinite(n))) throw new InvalidArgumentError(`${flag} must be a comma-separated list of numbers, got '${v}'`);
  return parts;
};

/** --data: an image dataset, a bundled text, or a .txt file (checked when read). */
export const dataOption = (images: readonly string[], texts: readonly string[]) => (v: string) => {
  if (images.includes(v) || texts.includes(v) || /\.txt$/i.test(v)) return v;
  throw new InvalidArgumentError(`--data must be one of ${[...images, ...texts].join(', ')} or a path ending in .txt, got '${v}'`);
};

/**
 * An output file of a given kind (--json FILE.json, --out FILE.onnx): the suffix is required so that a slip of the
 * finger cannot write a report over a checkpoint or a model (`--json run/checkpoint.qat`).
 */
export const outputFileOption = (flag: string, suffix: '.json' | '.onnx' | '.html') => (v: string) => {
  if (!v.toLowerCase().endsWith(suffix) || v.length === suffix.length) throw new InvalidArgumentError(`${flag} must name a ${suffix} file, got '${v}'`);
  return v;
};
