// Command-line helpers shared by the benchmarks.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected an integer >= 1, got '${v}'`);
  return n;
}

/**
 * The options every step benchmark takes: --steps N (default `defaultSteps`), --warmup N (10), --threads N (2),
 * --json FILE, plus `extra` string options (their raw values come back in `values`).
 */
export function parseStepArgs(defaultSteps: number, extra: Record<string, { type: 'string'; default?: string }> = {}) {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: String(defaultSteps) },
      warmup: { type: 'string', default: '10' },
      threads: { type: 'string', default: '2' },
      ...extra,
      json: { type: 'string' },
    },
  });
  const raw = values as Record<string, string | undefined>;
  return {
    steps: positiveInt('--steps', raw.steps!),
    warmup: positiveInt('--warmup', raw.warmup!),
    threads: positiveInt('--threads', raw.threads!),
    json: raw.json,
    values: raw,
  };
}

/** Writes `out` as JSON to `file` (creating its folder) and says so. */
export function writeJson(file: string, out: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${file}`);
}

/** Runs a benchmark's main, printing only the message of an error and exiting with 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
