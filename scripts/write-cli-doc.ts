// Rewrites the generated part of docs/cli.md from the `qat` program (npm run docs:cli).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../src/cli/program.js';
import { cliReferenceMarkdown, replaceReference } from '../src/cli/cli-reference.js';
import { writeFileAtomic } from '../src/onnx/atomic-write.js';

const page = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'cli.md');
writeFileAtomic(page, replaceReference(fs.readFileSync(page, 'utf8'), cliReferenceMarkdown(buildProgram())));
console.log(`wrote ${path.relative(process.cwd(), page)}`);
