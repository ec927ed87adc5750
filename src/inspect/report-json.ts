import { InspectReport } from './report.js';

/** Version of the JSON form of `qat inspect --json` (docs/inspect.md); raised when a key changes meaning or goes. */
export const INSPECT_SCHEMA = 'qatkit.inspect/1';

// Characters that JSON.stringify leaves as they are but a terminal acts on (C1 controls, DEL, bidi and zero-width
// marks, line separators): written as \u escapes, so the output is still valid JSON with the same strings.
const TERMINAL_UNSAFE = /[\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;

/** The report as JSON text: the schema tag first, then the report's keys; safe to print to a terminal. */
export function inspectJson(report: InspectReport): string {
  return JSON.stringify({ schema: INSPECT_SCHEMA, ...report }, null, 2).replace(TERMINAL_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
