/**
 * The malformed-input corpus (test/fixtures/malformed, written by its generate.ts): every ONNX file, checkpoint,
 * quant config, text file and flag in the manifest goes through the real `qat` command line (in process, the
 * program main.ts runs) and must be refused with exit code 1 or 2, one line on stderr that names the file (or
 * the flag) and says what the manifest expects, nothing on stdout, no stack trace, no raw control character, and
 * nothing written: no output, no temp file, the run directory as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCorpusCase, CorpusCase } from '../helpers/run-qat';
import { scratchDir } from '../helpers/scratch.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const corpus = path.resolve(here, '../fixtures/malformed');
const manifest = JSON.parse(fs.readFileSync(path.join(corpus, 'manifest.json'), 'utf8')) as { cases: CorpusCase[] };

function snapshot(dir: string): string {
  if (!fs.existsSync(dir)) return 'absent';
  return fs
    .readdirSync(dir)
    .sort()
    .map((f) => `${f}:${createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex')}`)
    .join(',');
}

test('the corpus holds at least 200 malformed input files, each small', () => {
  const files = new Set(manifest.cases.flatMap((c) => (c.file ? [c.file] : [])));
  assert.ok(files.size >= 200, `${files.size} files`);
  for (const f of files) assert.ok(fs.statSync(path.join(corpus, f)).size <= 16 * 1024, `${f} is larger than 16 KB`);
});

const byKind = new Map<string, CorpusCase[]>();
for (const c of manifest.cases) {
  const kind = c.file ? c.file.split('/')[0] : 'flags';
  byKind.set(kind, [...(byKind.get(kind) ?? []), c]);
}

for (const [kind, cases] of byKind) {
  test(`every malformed ${kind} input is refused with one line naming it, exit 1 or 2, nothing written (${cases.length} cases)`, async () => {
    const failures: string[] = [];
    for (const c of cases) {
      const work = scratchDir('qatkit-corpus-');
      const file = c.file ? path.join(corpus, c.file) : undefined;
      const dir = path.join(work, 'run');
      if (c.argv.includes('{dir}')) {
        fs.mkdirSync(dir);
        fs.copyFileSync(file!, path.join(dir, 'checkpoint.qat'));
      }
      const out = path.join(work, 'out');
      const argv = c.argv.map((a) => a.replace('{file}', file ?? '').replace('{dir}', dir).replace('{out}', out));
      const before = snapshot(dir);
      const corpusBefore = file ? snapshot(path.dirname(file)) : '';
      const t0 = Date.now();
      const r = await runCorpusCase(argv);
      const ms = Date.now() - t0;
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      const problems: string[] = [];
      if (r.code !== 1 && r.code !== 2) problems.push(`exit code ${r.code}`);
      if (lines.length !== 1) problems.push(`${lines.length} lines on stderr`);
      if (!lines[0]?.startsWith('qat: ')) problems.push('no "qat: " line');
      if (!new RegExp(c.expect).test(r.stderr)) problems.push(`does not match /${c.expect}/`);
      const named = c.argv.includes('{dir}') ? dir : file;
      if (named && !r.stderr.includes(c.argv.includes('{dir}') ? named : path.basename(named))) problems.push('does not name the input');
      if (/internal error|\n\s+at |Cannot read properties|Invalid (typed )?array length/.test(r.stderr)) problems.push('a bug surfaced');
      if (/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(r.stderr + r.stdout)) problems.push('a raw control character reached the terminal');
      if (r.stdout !== '') problems.push(`stdout: ${r.stdout.slice(0, 80)}`);
      if (fs.existsSync(out) || fs.existsSync(`${out}.json`) || fs.existsSync(`${out}.onnx`)) problems.push('an output was written');
      if (snapshot(dir) !== before) problems.push('the run directory changed');
      if (file && snapshot(path.dirname(file)) !== corpusBefore) problems.push('the corpus folder changed');
      if (fs.readdirSync(work).some((f) => f.endsWith('.tmp'))) problems.push('a temp file was left');
      if (ms > 20000) problems.push(`took ${ms} ms`);
      if (problems.length) failures.push(`${c.file ?? argv.join(' ')} [${c.argv[0]}] (${c.why}): ${problems.join('; ')}\n    stderr: ${r.stderr.trim()}`);
      fs.rmSync(work, { recursive: true, force: true });
    }
    assert.equal(failures.length, 0, `\n${failures.join('\n')}`);
  });
}
