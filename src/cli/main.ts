import { buildProgram } from './program.js';
import { runCli } from './run-cli.js';

// One line on stderr per failure and the exit code of run-cli.ts (1 refused input or failed run, 2 usage).
process.exit(await runCli(buildProgram(), process.argv));
