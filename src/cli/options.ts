import { InvalidArgumentError } from 'commander';

/** Commander parsers that name the flag and the valid values on bad input. */
export const intOption = (flag: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${flag} must be an integer >= ${min}, got '${v}'`);
  return n;
};

export const floatOption = (flag: string, { min = -Infinity, exclusiveMin = false } = {}) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min || (exclusiveMin && n === min)) {
    throw new InvalidArgumentError(`${flag} must be a number ${exclusiveMin ? '>' : '>='} ${min}, got '${v}'`);
  }
  return n;
};

export const choiceOption = <T extends string>(flag: string, choices: readonly T[]) => (v: string): T => {
  if (!(choices as readonly string[]).includes(v)) throw new InvalidArgumentError(`${flag} must be one of ${choices.join(', ')}, got '${v}'`);
  return v as T;
};

export const floatListOption = (flag: string) => (v: string) => {
  const parts = v.split(',').map((s) => Number(s.trim()));
  if (parts.some((n) => !Number.isFinite(n))) throw new InvalidArgumentError(`${flag} must be a comma-separated list of numbers, got '${v}'`);
  return parts;
};

/** --data: an image dataset, a bundled text, or a .txt file (checked when read). */
export const dataOption = (images: readonly string[], texts: readonly string[]) => (v: string) => {
  if (images.includes(v) || texts.includes(v) || /\.txt$/i.test(v)) return v;
  throw new InvalidArgumentError(`--data must be one of ${[...images, ...texts].join(', ')} or a path ending in .txt, got '${v}'`);
};
