// README is the user's first page: its commands must parse, its op list must be the op table, its links must resolve.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../../src/cli/program.js';
import { registeredOps } from '../../src/ops/index.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

test('README starts with the two commands: install + demo, install + tests', () => {
  const block = readme.split('```')[1];
  const lines = block.split('\n').filter((l) => l.trim() && !l.startsWith('sh'));
  assert.match(lines[0], /^npm install && npx qat demo\b/);
  assert.match(lines[1], /^npm install && npm test\b/);
});

test("every `npx qat` line in README's code blocks names a real command and only its options", () => {
  const program = buildProgram();
  const blocks = readme.split('```').filter((_, i) => i % 2 === 1);
  const problems: string[] = [];
  let seen = 0;
  for (const line of blocks.flatMap((b) => b.split('\n'))) {
    const m = /npx qat (\S+)(.*)/.exec(line.replace(/#.*$/, ''));
    if (!m) continue;
    seen++;
    const command = program.commands.find((c) => c.name() === m[1]);
    if (!command) {
      problems.push(`qat ${m[1]}: no such command`);
      continue;
    }
    const known = new Set(command.options.flatMap((o) => [o.long, o.short].filter(Boolean) as string[]));
    for (const flag of m[2].match(/(?<=\s|\[)--[a-z0-9-]+/g) ?? []) if (!known.has(flag)) problems.push(`qat ${m[1]} ${flag}: no such option`);
  }
  assert.ok(seen >= 10, `README shows ${seen} qat commands`);
  assert.deepEqual(problems, []);
});

test('the ONNX op list in README is exactly the op table (standard domain)', () => {
  const line = /\*\*ONNX ops\*\*[^:]*:([^.]*)\./s.exec(readme);
  assert.ok(line, 'README has an **ONNX ops** list');
  const listed = line[1].split(',').map((s) => s.trim()).filter(Boolean).sort();
  const table = [...new Set(registeredOps().filter((o) => o.domain === '').map((o) => o.opType))].sort();
  assert.deepEqual(listed, table);
});

test('README and docs link only to files inside the repository that exist', () => {
  const pages = ['README.md', ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f))];
  const problems: string[] = [];
  for (const page of pages) {
    const text = fs.readFileSync(path.join(root, page), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^https?:/.test(target)) continue; // citations of papers and specs are allowed in docs
      const file = path.resolve(root, path.dirname(page), target.split('#')[0]);
      if (!file.startsWith(root + path.sep)) problems.push(`${page}: ${target} leads outside the repository`);
      else if (!fs.existsSync(file)) problems.push(`${page}: ${target} does not exist`);
    }
  }
  if (/\]\(https?:/.test(readme)) problems.push('README.md links outside the repository');
  assert.deepEqual(problems, []);
});
