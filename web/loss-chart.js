// The live loss curve: an SVG line chart drawn from the per-step losses (raw in a light line, a running mean in a
// bold one), with its axes ticked from the data. Redrawn whole on each step: a few hundred points are cheap.

const NS = 'http://www.w3.org/2000/svg';
const MARGIN = { left: 48, right: 12, top: 12, bottom: 30 };

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Trailing mean over `window` values: the trend under the batch-to-batch noise. */
export function runningMean(values, window) {
  const out = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Draws `losses` (one per step, step 1 first) for a run of `total` steps into `svg`. */
export function drawLossChart(svg, losses, total) {
  const [, , width, height] = svg.getAttribute('viewBox').split(' ').map(Number);
  svg.replaceChildren();
  const w = width - MARGIN.left - MARGIN.right;
  const h = height - MARGIN.top - MARGIN.bottom;
  const xMax = Math.max(total, losses.length, 2);
  const yMax = losses.length ? Math.max(...losses) * 1.05 : 1;
  const x = (step) => MARGIN.left + ((step - 1) / (xMax - 1)) * w;
  const y = (v) => MARGIN.top + h - (v / yMax) * h;
  for (const t of ticks(0, yMax, 4)) {
    svg.append(el('line', { class: 'grid', x1: MARGIN.left, x2: MARGIN.left + w, y1: y(t), y2: y(t) }));
    svg.append(el('text', { x: MARGIN.left - 6, y: y(t) + 4, 'text-anchor': 'end' }, String(t)));
  }
  for (const t of ticks(1, xMax, 6)) {
    svg.append(el('text', { x: x(t), y: MARGIN.top + h + 16, 'text-anchor': 'middle' }, String(t)));
  }
  svg.append(el('line', { class: 'axis', x1: MARGIN.left, x2: MARGIN.left + w, y1: MARGIN.top + h, y2: MARGIN.top + h }));
  svg.append(el('line', { class: 'axis', x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: MARGIN.top + h }));
  svg.append(el('text', { x: MARGIN.left + w, y: height - 2, 'text-anchor': 'end' }, 'step'));
  svg.append(el('text', { x: 4, y: MARGIN.top + 4, 'text-anchor': 'start' }, 'loss'));
  if (losses.length === 0) return;
  const points = (values) => values.map((v, i) => `${x(i + 1).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  svg.append(el('polyline', { class: 'raw', points: points(losses) }));
  svg.append(el('polyline', { class: 'smooth', points: points(runningMean(losses, Math.max(1, Math.round(total / 30)))) }));
}
