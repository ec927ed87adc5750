import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { buildProgram } from '../../src/cli/program.js';
import { cliReferenceMarkdown, REFERENCE_END, REFERENCE_START, replaceReference, visibleOptions } from '../../src/cli/cli-reference.js';

const page = fs.readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');

test('docs/cli.md lists every command and every visible option of qat (run `npm run docs:cli` after changing a flag)', () => {
  const program = buildProgram();
  const missing: string[] = [];
  for (const command of program.commands) {
    if (!page.includes(`## qat ${command.name()}\n`)) missing.push(`qat ${command.name()}`);
    for (const option of visibleOptions(command)) {
      if (!page.includes(`\`${option.flags.replace(/\|/g, '\\|')}\``)) missing.push(`qat ${command.name()} ${option.flags}`);
    }
  }
  assert.deepEqual(missing, [], `docs/cli.md lacks: ${missing.join('; ')}`);
});

test('the reference is written between its markers and keeps the hand-written text around them', () => {
  const reference = cliReferenceMarkdown(buildProgram());
  const before = `# intro\n${REFERENCE_START}\nold\n${REFERENCE_END}\ntail\n`;
  const after = replaceReference(before, reference);
  assert.ok(after.startsWith('# intro\n'));
  assert.ok(after.endsWith('\ntail\n'));
  assert.ok(!after.includes('\nold\n'));
  assert.ok(after.includes('## qat train'));
  assert.throws(() => replaceReference('# no markers', reference), /markers/);
});

test('hidden test-only options stay out of the reference; a pipe in a flag does not split its table cell', () => {
  const reference = cliReferenceMarkdown(buildProgram());
  const demo = buildProgram().commands.find((c) => c.name() === 'demo')!;
  const demoSection = reference.slice(reference.indexOf('## qat demo\n'), reference.indexOf('## qat', reference.indexOf('## qat demo\n') + 1));
  const hidden = demo.options.filter((o) => o.hidden);
  assert.ok(hidden.length > 0, 'qat demo has a hidden test-only option');
  for (const o of hidden) assert.ok(!demoSection.includes(`\`${o.flags}\``), o.flags);
  assert.ok(reference.includes('`--model <name\\|file.onnx>`'));
});
