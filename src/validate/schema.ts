/**
 * Shared pieces of qatkit's input schemas (zod): numbers that are integers or finite and in a range, named
 * choices, and one error line per refused input that names the source, the field path, what is valid, what was
 * given and, for a misspelt key, the closest valid one.
 */
import { z } from 'zod';

/** An integer in [min, max] (JavaScript numbers: never a string, never 1.5, never NaN). */
export const intIn = (min: number, max: number = Number.MAX_SAFE_INTEGER) => {
  const error = `must be an integer in ${min}..${max === Number.MAX_SAFE_INTEGER ? 'inf' : max}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};

/** A finite number in [min, max] (or (min, max] with exclusiveMin; [min, max) with exclusiveMax). */
export const numberIn = (min: number, max: number, { exclusiveMin = false, exclusiveMax = false } = {}) => {
  const lo = `${exclusiveMin ? '(' : '['}${min}`;
  const hi = `${max === Infinity ? 'inf' : max}${exclusiveMax || max === Infinity ? ')' : ']'}`;
  const error = `must be a finite number in ${lo}, ${hi}`;
  let s = z.number({ error }).refine(Number.isFinite, { error });
  s = s.refine((v) => (exclusiveMin ? v > min : v >= min) && (exclusiveMax ? v < max : v <= max), { error });
  return s;
};

export const oneOf = <T extends string>(values: readonly T[]) =>
  z.enum(values as unknown as [T, ...T[]], { error: `must be one of ${values.join(', ')}` });

export const bool = () => z.boolean({ error: 'must be true or false (a JSON boolean, not a string)' });

export const text = (what = 'a non-empty string') => z.string({ error: `must be ${what}` }).min(1, { error: `must be ${what}` });

/** Levenshtein distance (insert, delete, substitute), for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The valid key closest to `key` when it is a plausible misspelling (distance <= max(2, length / 3)). */
export function closest(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const v of valid) {
    const d = editDistance(key, v);
    if (d < bestDistance) [best, bestDistance] = [v, d];
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** `a.b[2].c` from a zod path. */
export function pathText(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const p of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

/** A value as an error message shows it: JSON, shortened. */
export function shown(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'nothing' : typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v);
  } catch {
    s = Array.isArray(v) ? '[...]' : typeof v === 'object' ? '{...}' : '(unprintable)';
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** The keys a strict object schema accepts at `path` (for suggestions), if the schema is an object there. */
function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let s: z.ZodType | undefined = schema;
  for (const p of path) {
    s = unwrap(s);
    if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.ZodType>)[String(p)];
    else if (s instanceof z.ZodArray) s = s.element as z.ZodType;
    else return undefined;
  }
  s = unwrap(s);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : undefined;
}

function unwrap(s: z.ZodType | undefined): z.ZodType | undefined {
  while (s && (s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodDefault)) s = s.unwrap() as z.ZodType;
  return s;
}

/**
 * One line for the first problem zod found: `where: path: what is valid, got VALUE`, or for an unknown key
 * `where: path.key: unknown key; did you mean 'x'? valid keys: ...`. `fieldName` maps a path to what the user
 * knows it as (e.g. the flag); default the dotted path, prefixed by `prefix`.
 */
export function formatIssue(where: string, schema: z.ZodType, root: unknown, error: z.ZodError, fieldName?: (path: string) => string): string {
  // A misspelt key first: its "did you mean" explains the missing required key that zod also reports.
  const issue = error.issues.find((i) => i.code === 'unrecognized_keys') ?? error.issues[0];
  const name = (p: readonly PropertyKey[]) => {
    const t = pathText(p);
    return fieldName ? fieldName(t) : t || '(top level)';
  };
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    const valid = keysAt(schema, issue.path) ?? [];
    const guess = closest(key, valid);
    return `${where}: ${name([...issue.path, key])}: unknown key${guess ? `; did you mean '${guess}'?` : ''} (valid keys: ${valid.join(', ')})`;
  }
  const got = valueAt(root, issue.path);
  const generic = issue.code === 'invalid_type' && issue.message.startsWith('Invalid input');
  const message = generic ? `must be ${issue.expected === 'object' ? 'a JSON object' : `a ${issue.expected}`}` : issue.message;
  if (issue.code === 'invalid_type' && got === undefined) return `${where}: ${name(issue.path)}: is missing (it ${message})`;
  return `${where}: ${name(issue.path)}: ${message}, got ${shown(got)}`;
}

/** Parses `value` with `schema`, throwing one formatted line on failure. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, where: string, fieldName?: (path: string) => string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new InputError(formatIssue(where, schema, value, r.error, fieldName));
  return r.data;
}

/** An input refused before any work started: bad file, bad config, bad flag value. */
export class InputError extends Error {}

/** A command-line usage error (exit code 2): unknown or inapplicable flag, bad flag value. */
export class UsageError extends InputError {}

/** How deeply arrays and objects nest in a parsed JSON value (iterative: a crafted file cannot overflow the stack). */
export function jsonDepth(value: unknown, limit = 64): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    deepest = Math.max(deepest, d);
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return deepest;
}
