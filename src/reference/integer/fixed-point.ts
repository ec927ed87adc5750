// Requantization by a fixed-point multiplier and a right shift, as integer-only engines do it:
// Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
// Inference", section 2.2 and appendix B; the functions are gemmlowp's fixedpoint.h and TFLite's
// MultiplyByQuantizedMultiplier, written for int32 values held in JS numbers.

const TWO_31 = 2147483648;
const INT32_MIN = -TWO_31;
const INT32_MAX = TWO_31 - 1;

/** A real multiplier M = M0 * 2^shift / 2^31, with M0 in [2^30, 2^31) (Q31 of [0.5, 1)) or 0. */
export interface QuantizedMultiplier {
  multiplier: number;
  shift: number;
}

/**
 * M (> 0, finite) -> (M0, shift) with M = M0 / 2^31 * 2^shift up to the rounding of M0 (TFLite's
 * QuantizeMultiplier: frexp, then round M0 to nearest, carrying 2^31 into the exponent).
 */
export function quantizeMultiplier(real: number): QuantizedMultiplier {
  if (!(real >= 0) || !Number.isFinite(real)) throw new Error(`quantizeMultiplier: the multiplier must be a finite number >= 0, got ${real}`);
  if (real === 0) return { multiplier: 0, shift: 0 };
  let shift = Math.floor(Math.log2(real)) + 1;
  // log2 may be off by one next to powers of two: settle q = real / 2^shift into [0.5, 1).
  while (real / 2 ** shift >= 1) shift++;
  while (real / 2 ** shift < 0.5) shift--;
  let multiplier = Math.round((real / 2 ** shift) * TWO_31);
  if (multiplier === TWO_31) {
    multiplier /= 2;
    shift++;
  }
  // Too small to matter (as TFLite): every int32 accumulator maps to 0.
  if (shift < -31) return { multiplier: 0, shift: 0 };
  return { multiplier, shift };
}

/**
 * floor(a * b / 2^31 + 1/2) — the nearest integer, ties toward +infinity (gemmlowp's nudge of 2^30 or
 * 1 - 2^30 before a truncating division) — saturating the one overflow case (a = b = -2^31): gemmlowp's
 * SaturatingRoundingDoublingHighMul. The 62-bit product is formed exactly from 16-bit halves of b.
 */
export function saturatingRoundingDoublingHighMul(a: number, b: number): number {
  if (a === INT32_MIN && b === INT32_MIN) return INT32_MAX;
  const bLow = ((b % 65536) + 65536) % 65536;
  const bHigh = (b - bLow) / 65536;
  const nudge = (a >= 0) === (b >= 0) || a === 0 || b === 0 ? 2 ** 30 : 1 - 2 ** 30;
  // a * b + nudge = high * 2^16 + low, both parts exact in float64 (|high| < 2^46, |low| < 2^48).
  const high = a * bHigh;
  const low = a * bLow + nudge;
  // high * 2^16 = highTop * 2^31 + highRest * 2^16 with highRest in [0, 2^15).
  const highRest = ((high % 32768) + 32768) % 32768;
  const highTop = (high - highRest) / 32768;
  const rest = highRest * 65536 + low;
  const floorQuotient = highTop + Math.floor(rest / TWO_31);
  const remainder = rest - Math.floor(rest / TWO_31) * TWO_31;
  // C++'s int64 division truncates toward zero.
  return floorQuotient < 0 && remainder !== 0 ? floorQuotient + 1 : floorQuotient;
}

/** x / 2^exponent rounded to nearest, ties away from zero (gemmlowp's RoundingDivideByPOT), 0 <= exponent <= 31. */
export function roundingDivideByPOT(x: number, exponent: number): number {
  if (!Number.isInteger(exponent) || exponent < 0 || exponent > 31) throw new Error(`roundingDivideByPOT: exponent must be an integer in [0, 31], got ${exponent}`);
  if (exponent === 0) return x;
  const scale = 2 ** exponent;
  const floor = Math.floor(x / scale);
  const remainder = x - floor * scale;
  const threshold = Math.floor((scale - 1) / 2) + (x < 0 ? 1 : 0);
  return floor + (remainder > threshold ? 1 : 0);
}

/** acc * M in integers: TFLite's MultiplyByQuantizedMultiplier (left shift for M >= 1, else rounding right shift). */
export function multiplyByQuantizedMultiplier(acc: number, m: QuantizedMultiplier): number {
  const left = Math.max(m.shift, 0);
  const right = Math.max(-m.shift, 0);
  const shifted = acc * 2 ** left;
  if (shifted < INT32_MIN || shifted > INT32_MAX) throw new Error(`multiplyByQuantizedMultiplier: accumulator ${acc} << ${left} overflows int32`);
  return roundingDivideByPOT(saturatingRoundingDoublingHighMul(shifted, m.multiplier), right);
}
