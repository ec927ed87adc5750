/**
 * Rotary position tables recognised by their values. torch.onnx.export names a non-persistent buffer by its first
 * reader (`onnx::Slice_164`), so Hugging Face Llama's cos_cached / sin_cached reach the importer without the names
 * isBufferName knows, and would train as parameters. A rotary table ([..., P, D], leading dims 1) has column j
 * equal to cos(p f_j) or sin(p f_j) down its rows p, for frequencies 0 < f_j <= pi/2 (RoFormer, Su et al. 2021, eq. 34: f_j = base^(-2j/D),
 * <= 1), which row 1 gives; no learned table or zero / one initialisation satisfies that for every row.
 */
import { DType } from './dtype.js';
import { Tensor } from './tensor.js';

/** Tolerance: torch computes p * f_j in float32 before the cosine, ~P x 6e-8 off the exact angle. */
const TOLERANCE = 2e-3;

export function isRotaryTable(t: Tensor): boolean {
  if ((t.dtype !== DType.FLOAT && t.dtype !== DType.DOUBLE) || t.dims.length < 2 || t.dims.slice(0, -2).some((d) => d !== 1)) return false;
  const [rows, width] = t.dims.slice(-2);
  if (rows < 3 || width < 2) return false;
  const v = t.data as Float32Array | Float64Array;
  // Each column is a cosine (row 0 is 1) or a sine (row 0 is 0): all cos or all sin (LLaMA's two caches), or
  // [sin | cos] in one table (GPT-J's embed_positions).
  const isCos = Array.from(v.subarray(0, width), (x) => (x === 1 ? true : x === 0 ? false : undefined));
  if (isCos.some((c) => c === undefined)) return false;
  const wave = (j: number, angle: number) => (isCos[j] ? Math.cos(angle) : Math.sin(angle));
  const clamp = (x: number) => Math.max(-1, Math.min(1, x));
  // The angles whose cos (sin) is x, up to multiples of 2 pi.
  const principal = (j: number, x: number) => (isCos[j] ? [Math.acos(clamp(x)), -Math.acos(clamp(x))] : [Math.asin(clamp(x)), Math.PI - Math.asin(clamp(x))]);
  const nearest = (j: number, x: number, predicted: number) => {
    let best = NaN;
    for (const a of principal(j, x)) {
      const c = a + 2 * Math.PI * Math.round((predicted - a) / (2 * Math.PI));
      if (!(Math.abs(c - predicted) >= Math.abs(best - predicted))) best = c;
    }
    return best;
  };
  // f_j from row 1, refined on rows 2, 4, 8, ... and the last: a small angle's cosine is 1 in float32 at row 1
  // (f = 1e-4), and each farther row pins it down 2x better while the prediction stays within pi.
  const freq = Array.from(v.subarray(width, 2 * width), (x, j) => principal(j, x)[0]);
  const probes: number[] = [];
  for (let p = 2; p < rows; p *= 2) probes.push(p);
  if (probes.at(-1) !== rows - 1) probes.push(rows - 1);
  for (const p of probes) for (let j = 0; j < width; j++) freq[j] = nearest(j, v[p * width + j], p * freq[j]) / p;
  if (freq.some((f) => !(f > 1e-7 && f <= Math.PI / 2 + 1e-3))) return false;
  for (let p = 2; p < rows; p++) {
    for (let j = 0; j < width; j++) if (Math.abs(v[p * width + j] - wave(j, p * freq[j])) > TOLERANCE) return false;
  }
  return true;
}
