/**
 * The CLI reference (docs/cli.md) written from the commander program itself, so the page lists exactly the
 * commands and options `qat` accepts. `npm run docs:cli` rewrites the part of docs/cli.md between the markers;
 * test/cli/cli-reference.test.ts fails when an option is missing from the page.
 */
import { Command, Option } from 'commander';

export const REFERENCE_START = '<!-- cli-reference:start (written by `npm run docs:cli`; edit the option descriptions in src/cli/) -->';
export const REFERENCE_END = '<!-- cli-reference:end -->';

/** Table cells: a pipe would split the cell, a newline would end the row. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

function defaultText(option: Option): string {
  if (option.defaultValueDescription) return option.defaultValueDescription;
  const d = option.defaultValue;
  if (d === undefined || d === false) return '';
  return Array.isArray(d) ? d.join(',') : String(d);
}

/** The options a user may pass to `command`, hidden ones (test-only knobs) left out. */
export function visibleOptions(command: Command): Option[] {
  return command.options.filter((o) => !o.hidden);
}

function commandSection(command: Command): string[] {
  const args = command.registeredArguments.map((a) => (a.required ? `<${a.name()}${a.variadic ? '...' : ''}>` : `[${a.name()}${a.variadic ? '...' : ''}]`));
  const lines = [`## qat ${command.name()}`, '', cell(command.description()), '', '```sh', ['npx qat', command.name(), ...args, '[options]'].join(' '), '```', ''];
  const options = visibleOptions(command);
  if (!options.length) return lines;
  lines.push('| option | meaning | default |', '|---|---|---|');
  for (const o of options) {
    const choices = o.argChoices ? ` (one of: ${o.argChoices.join(', ')})` : '';
    const d = defaultText(o);
    lines.push(`| \`${cell(o.flags)}\` | ${cell(o.description + choices)} | ${d ? `\`${cell(d)}\`` : ''} |`);
  }
  lines.push('');
  return lines;
}

/** Markdown for every command of `program`, in the order `qat --help` lists them. */
export function cliReferenceMarkdown(program: Command): string {
  const lines = [REFERENCE_START, ''];
  for (const command of program.commands) lines.push(...commandSection(command));
  lines.push(REFERENCE_END);
  return lines.join('\n');
}

/** `page` with its reference part replaced by `reference`; the hand-written text around the markers stays. */
export function replaceReference(page: string, reference: string): string {
  const start = page.indexOf(REFERENCE_START);
  const end = page.indexOf(REFERENCE_END);
  if (start < 0 || end < start) throw new Error(`docs/cli.md: the markers ${REFERENCE_START} ... ${REFERENCE_END} are missing`);
  return page.slice(0, start) + reference + page.slice(end + REFERENCE_END.length);
}
