/**
 * The report page: one HTML file with inline CSS and inline SVG, no script and no external reference, so it opens
 * from disk anywhere (also offline).
 */
import { escapeHtml } from './tables.js';

export interface ReportSection {
  id: string;
  title: string;
  /** HTML: charts (each `<figure class="chart">` with an inline SVG), tables, notes. */
  body: string;
}

const CSS = `
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; } td.num, th.num { text-align: right; }
thead th { background: #f4f4f4; }
figure.chart { margin: .5rem 0 1rem; } figure.chart svg { max-width: 100%; height: auto; }
p.absent { color: #666; font-style: italic; } code { background: #f4f4f4; padding: 0 .2rem; }
nav a { margin-right: 1rem; }
`;

/** A chart: the SVG inline in a figure named for the chart (the browser test finds charts by data-chart). */
export function figure(name: string, svg: string): string {
  return `<figure class="chart" data-chart="${escapeHtml(name)}">\n${svg}\n</figure>`;
}

/** A note that a part of the report is absent and the command that produces it. */
export function absent(what: string, command: string): string {
  return `<p class="absent">${escapeHtml(what)}: produce it with <code>${escapeHtml(command)}</code>.</p>`;
}

export function reportHtml(title: string, generated: string, sections: ReportSection[]): string {
  const nav = sections.map((s) => `<a href="#${escapeHtml(s.id)}">${escapeHtml(s.title)}</a>`).join('\n');
  const body = sections.map((s) => `<section id="${escapeHtml(s.id)}">\n<h2>${escapeHtml(s.title)}</h2>\n${s.body}\n</section>`).join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(generated)}</p>
<nav>${nav}</nav>
${body}
</body>
</html>
`;
}
