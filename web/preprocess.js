// A drawing -> the 28x28 image the classifiers were trained on. MNIST's own preprocessing (LeCun et al. 1998, the
// MNIST page: "the images were centered in a 28x28 image by computing the center of mass of the pixels"): the digit's
// bounding box is scaled, aspect ratio kept, to fit a 20x20 box with area averaging (grey levels from
// anti-aliasing), then placed so that its centre of mass lies at the centre of the 28x28 field. Pixels are ink
// intensities in [0, 1] (0 background, 1 ink), which is what the training pipeline feeds (src/data/dataset.ts scales
// the IDX bytes by 1/255); the models normalise by MNIST's mean and std inside the graph (src/models/builder.ts).
// No DOM here, so the same code is tested in Node.

export const SIDE = 28;
export const BOX = 20;

/**
 * Ink intensities (row-major, width x height, values in [0, 1]) -> Float32Array(28 * 28), or undefined when nothing
 * is drawn (every pixel under `threshold`).
 */
export function toMnistInput(ink, width, height, threshold = 0.05) {
  let [top, left, bottom, right] = [height, width, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[y * width + x] > threshold) {
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
  }
  if (bottom < 0) return undefined;
  const bw = right - left + 1;
  const bh = bottom - top + 1;
  // Source pixels per target pixel; a thin stroke (a "1") keeps its aspect ratio and stays narrow.
  const scale = Math.max(bw, bh) / BOX;
  const tw = Math.max(1, Math.round(bw / scale));
  const th = Math.max(1, Math.round(bh / scale));
  const box = areaResample(ink, width, left, top, bw, bh, tw, th);

  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      const v = box[y * tw + x];
      mass += v;
      mx += v * x;
      my += v * y;
    }
  }
  // Pixel centres: a field of 28 has its centre at 13.5 in pixel-index coordinates.
  const cx = mass > 0 ? mx / mass : (tw - 1) / 2;
  const cy = mass > 0 ? my / mass : (th - 1) / 2;
  const ox = Math.round((SIDE - 1) / 2 - cx);
  const oy = Math.round((SIDE - 1) / 2 - cy);
  const out = new Float32Array(SIDE * SIDE);
  for (let y = 0; y < th; y++) {
    const ty = y + oy;
    if (ty < 0 || ty >= SIDE) continue;
    for (let x = 0; x < tw; x++) {
      const tx = x + ox;
      if (tx >= 0 && tx < SIDE) out[ty * SIDE + tx] = Math.min(1, box[y * tw + x]);
    }
  }
  return out;
}

/** Area averaging of the (bw x bh) region at (left, top) onto (tw x th): each target pixel is the mean over its footprint. */
export function areaResample(src, width, left, top, bw, bh, tw, th) {
  const out = new Float32Array(tw * th);
  const sx = bw / tw;
  const sy = bh / th;
  for (let y = 0; y < th; y++) {
    const y0 = y * sy;
    const y1 = y0 + sy;
    for (let x = 0; x < tw; x++) {
      const x0 = x * sx;
      const x1 = x0 + sx;
      let sum = 0;
      for (let v = Math.floor(y0); v < Math.min(bh, Math.ceil(y1)); v++) {
        const wy = Math.min(y1, v + 1) - Math.max(y0, v);
        if (wy <= 0) continue;
        const row = (top + v) * width + left;
        for (let u = Math.floor(x0); u < Math.min(bw, Math.ceil(x1)); u++) {
          const wx = Math.min(x1, u + 1) - Math.max(x0, u);
          if (wx > 0) sum += wx * wy * src[row + u];
        }
      }
      out[y * tw + x] = sum / (sx * sy);
    }
  }
  return out;
}

/** RGBA bytes (canvas ImageData) -> ink intensities from the red channel (the pad draws white ink on black). */
export function inkFromRgba(rgba, width, height) {
  const ink = new Float32Array(width * height);
  for (let i = 0; i < ink.length; i++) ink[i] = rgba[i * 4] / 255;
  return ink;
}

/** Softmax of one row of logits (max subtracted first, for range). */
export function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
