import type { Window } from '../ops/window-geometry.js';
import { stridesOf } from './kernel.js';

/**
 * The gather table of a sliding window: entry [o·K + j] is the flat input position (over `inSpatial`)
 * that kernel offset j of output position o reads (o·stride + j·dilation − pad_begin on each axis), or −1
 * where that falls in the padding. Conv and the pools read through it; ConvTranspose scatters through it.
 */
export function windowTable(inSpatial: number[], outSpatial: number[], w: Window): Int32Array {
  const rank = inSpatial.length;
  const outCount = outSpatial.reduce((p, q) => p * q, 1);
  const k = w.kernel.reduce((p, q) => p * q, 1);
  const inStrides = stridesOf(inSpatial);
  const outStrides = stridesOf(outSpatial);
  const kStrides = stridesOf(w.kernel);
  const table = new Int32Array(outCount * k);
  for (let o = 0; o < outCount; o++) {
    for (let j = 0; j < k; j++) {
      let flat = 0;
      for (let axis = 0; axis < rank; axis++) {
        const oi = Math.floor(o / outStrides[axis]) % outSpatial[axis];
        const ji = Math.floor(j / kStrides[axis]) % w.kernel[axis];
        const pos = oi * w.strides[axis] + ji * w.dilations[axis] - w.padsBegin[axis];
        if (pos < 0 || pos >= inSpatial[axis]) {
          flat = -1;
          break;
        }
        flat += pos * inStrides[axis];
      }
      table[o * k + j] = flat;
    }
  }
  return table;
}
