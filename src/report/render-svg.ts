/**
 * Vega-Lite spec -> SVG text, in Node: vega-lite compiles the spec to Vega, a headless vega View (renderer
 * 'none') renders it. Both packages are loaded on first use, so other commands do not pay for them.
 */
import type { VegaLiteSpec } from './charts.js';

let modules: Promise<[typeof import('vega'), typeof import('vega-lite')]> | undefined;

export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  modules ??= Promise.all([import('vega'), import('vega-lite')]);
  const [vega, vl] = await modules;
  const compiled = vl.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
