/** Runs the `qat` command line in this process (the program main.ts runs) and captures what it prints. */
import { buildProgram } from '../../src/cli/program';
import { runCli } from '../../src/cli/run-cli';

export interface CorpusCase {
  file?: string;
  argv: string[];
  expect: string;
  why: string;
}

export async function runCorpusCase(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const previous = process.env.CI;
  process.env.CI = '1'; // plain progress lines, no bar
  try {
    const code = await runCli(buildProgram(), ['node', 'qat', ...argv], { out: (t) => (stdout += t), err: (t) => (stderr += t) });
    return { code, stdout, stderr };
  } finally {
    if (previous === undefined) delete process.env.CI;
    else process.env.CI = previous;
  }
}

/** Runs `qat argv...` in process for a fixture; a failure throws with the command and its stderr. Returns stdout. */
export async function runQatOk(argv: string[]): Promise<string> {
  const r = await runCorpusCase(argv);
  if (r.code !== 0) throw new Error(`qat ${argv.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}
