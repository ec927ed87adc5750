import type { Dim } from './graph.js';

// Arithmetic on dimensions that may be symbolic ('N', 'batch*sequence'). Symbolic results are labels: two dims
// with the same label are equal; different labels say nothing. A product of symbols is written 'a*b*4' (the
// form dimProduct uses) and compared as a multiset of factors; any other expression is one opaque factor in
// parentheses, so that no two different expressions print alike.

const ATOM = /^[A-Za-z_][\w.:]*$/;

/** A symbolic dim as coefficient x symbol factors: 'batch*sequence*4' is { coefficient: 4, symbols: [batch, sequence] }. */
export interface DimFactors {
  coefficient: number;
  symbols: string[];
}

export function dimFactors(d: Dim): DimFactors {
  if (typeof d === 'number') return { coefficient: d, symbols: [] };
  const parts = topLevelSplit(d, '*');
  const out: DimFactors = { coefficient: 1, symbols: [] };
  for (const p of parts) {
    if (/^\d+$/.test(p)) out.coefficient *= Number(p);
    else out.symbols.push(p);
  }
  return out;
}

/** Splits at `sep` outside parentheses; a string with other top-level operators stays one part. */
function topLevelSplit(s: string, sep: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (depth === 0 && ch === sep) {
      parts.push(s.slice(start, i));
      start = i + 1;
    } else if (depth === 0 && '+-/%'.includes(ch) && i > 0) return [s];
  }
  parts.push(s.slice(start));
  return parts;
}

export function dimFromFactors(f: DimFactors): Dim {
  if (f.symbols.length === 0 || f.coefficient === 0) return f.coefficient;
  return f.coefficient === 1 ? f.symbols.join('*') : [...f.symbols, f.coefficient].join('*');
}

/** An operand of a non-product expression: atoms and numbers as they are, anything else in parentheses. */
const operand = (d: Dim): string => (typeof d === 'number' ? `${d}` : ATOM.test(d) || (d.startsWith('(') && matchingClose(d) === d.length - 1) ? d : `(${d})`);

function matchingClose(s: string): number {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '(') depth++;
    else if (s[i] === ')' && --depth === 0) return i;
  }
  return -1;
}

export function mulDims(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a * b;
  const fa = dimFactors(a);
  const fb = dimFactors(b);
  return dimFromFactors({ coefficient: fa.coefficient * fb.coefficient, symbols: [...fa.symbols, ...fb.symbols] });
}

export function addDims(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  return `${operand(a)}+${operand(b)}`;
}

export function subDims(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (b === 0) return a;
  if (a === b) return 0;
  return `${operand(a)}-${operand(b)}`;
}

/** Integer division of non-negative dims (ONNX Div on integers truncates; dims are >= 0, so it floors). */
export function divDims(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return Math.trunc(a / b);
  if (b === 1) return a;
  if (a === b) return 1;
  if (typeof b === 'number' && b !== 0) {
    const fa = dimFactors(a);
    if (fa.coefficient % b === 0) return dimFromFactors({ coefficient: fa.coefficient / b, symbols: fa.symbols });
  }
  return `${operand(a)}/${operand(b)}`;
}

/** `total` / `known` as products of dims, where the division is exact by factors; undefined when unknown. */
export function divideProducts(total: Dim[], known: Dim[]): Dim | undefined {
  const t = total.map(dimFactors);
  const k = known.map(dimFactors);
  const symbols = t.flatMap((f) => f.symbols);
  for (const s of k.flatMap((f) => f.symbols)) {
    const at = symbols.indexOf(s);
    if (at < 0) return undefined;
    symbols.splice(at, 1);
  }
  const num = t.reduce((p, f) => p * f.coefficient, 1);
  const den = k.reduce((p, f) => p * f.coefficient, 1);
  if (den === 0 || num % den !== 0) return undefined;
  return dimFromFactors({ coefficient: num / den, symbols });
}
