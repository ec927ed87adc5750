import { format } from 'node:util';
import { Command, CommanderError } from 'commander';
import { InputError, UsageError } from '../validate/schema.js';
import { errorLine, escapeForTerminal } from './terminal.js';

/** Exit codes: 0 done, 1 a refused input or a failed run, 2 a usage error (flags), 130/143 stopped by SIGINT/SIGTERM. */
export const EXIT = { ok: 0, failed: 1, usage: 2, sigint: 130, sigterm: 143 } as const;

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

const processIo: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

function configure(cmd: Command, io: CliIo): void {
  cmd.exitOverride();
  cmd.showHelpAfterError(false);
  cmd.configureOutput({
    writeOut: (s) => io.out(escapeForTerminal(s, { keepNewlines: true })),
    writeErr: (s) => io.err(escapeForTerminal(s, { keepNewlines: true })),
    // Commander's usage errors as ours: one line, `qat: ...`, pointing at --help.
    outputError: (s) => io.err(`qat: ${errorLine(s.replace(/^error: /, ''))} (see '${fullName(cmd)} --help')\n`),
  });
  for (const sub of cmd.commands) configure(sub, io);
}

function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Runs the `qat` program on argv and returns the exit code; never throws. Every failure is one line on stderr,
 * `qat: <what is wrong, naming the file or flag>`, escaped for the terminal; a stack trace only with QAT_DEBUG=1.
 * Whatever the commands print through console.log / console.error is escaped too (names from a model can hold
 * escape sequences). Errors that are not refusals of an input (bugs) say so.
 */
export async function runCli(program: Command, argv: string[], io: CliIo = processIo): Promise<number> {
  configure(program, io);
  const [log, error] = [console.log, console.error];
  console.log = (...args: unknown[]) => io.out(escapeForTerminal(format(...args), { keepNewlines: true }) + '\n');
  console.error = (...args: unknown[]) => io.err(escapeForTerminal(format(...args), { keepNewlines: true }) + '\n');
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander printed its message already (through writeErr).
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
      return EXIT.usage;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    // Errors qatkit throws are Error (or a subclass); the built-in kinds come from a bug (reading undefined, ...).
    const bug = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError].some((k) => err.constructor === k);
    const known = err instanceof InputError || !bug;
    const message = known ? err.message : `internal error (${err.name}): ${err.message}; this is a qatkit bug: please report it with QAT_DEBUG=1's stack trace`;
    io.err(`qat: ${errorLine(message)}\n`);
    if (process.env.QAT_DEBUG) io.err(`${escapeForTerminal(err.stack ?? '', { keepNewlines: true })}\n`);
    const code = (err as { exitCode?: number }).exitCode;
    return err instanceof UsageError ? EXIT.usage : typeof code === 'number' ? code : EXIT.failed;
  } finally {
    console.log = log;
    console.error = error;
  }
}
