/**
 * Text from files (node and tensor names, paths, text data) is escaped before it reaches a terminal: a crafted
 * model must not be able to move the cursor, recolour, retitle the window, hide text or fake a line of output.
 */

// C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide text (bidi embeddings,
// overrides and isolates, the Arabic letter mark, zero-width marks, line and paragraph separators).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;
const UNSAFE_KEEP_LINES = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\u001b': '\\e' };

function escapeChar(c: string): string {
  if (NAMED[c]) return NAMED[c];
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `s` with every control and text-reordering character written as an escape (\n, \e, \x07, \u202e). */
export function escapeForTerminal(s: string, { keepNewlines = false } = {}): string {
  return s.replace(keepNewlines ? UNSAFE_KEEP_LINES : UNSAFE, escapeChar);
}

/** A name from a model as it is printed: escaped, newlines included. */
export const displayName = (name: string): string => escapeForTerminal(name);

/**
 * An error message as one terminal line: escaped, and the lines of a multi-line message (a list of unsupported
 * ops) joined with '; '.
 */
export function errorLine(message: string): string {
  return escapeForTerminal(message.trim(), { keepNewlines: true })
    .replace(/:\s*\n\s*/g, ': ')
    .replace(/\s*\n\s*/g, '; ')
    .trim();
}
