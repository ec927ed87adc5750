/**
 * Seeded PRNG (sfc32, a small fast counter generator that passes PractRand) whose whole state is four
 * uint32s, so checkpoints can store it and --resume continues the same stream.
 */
export class Rng {
  private s: Uint32Array;

  constructor(seed: number | number[] = 0) {
    if (Array.isArray(seed)) {
      this.s = Uint32Array.from(seed);
      return;
    }
    // splitmix32 expands one seed into four words; then warm up to decorrelate nearby seeds.
    let z = seed >>> 0;
    const next = () => {
      z = (z + 0x9e3779b9) >>> 0;
      let t = z ^ (z >>> 16);
      t = Math.imul(t, 0x21f0aaad);
      t ^= t >>> 15;
      t = Math.imul(t, 0x735a2d97);
      return (t ^ (t >>> 15)) >>> 0;
    };
    this.s = Uint32Array.from([next(), next(), next(), next()]);
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** Derives an independent stream, e.g. for (seed, epoch). */
  static derive(seed: number, ...path: number[]): Rng {
    let h = seed >>> 0;
    for (const p of path) h = (Math.imul(h ^ (p >>> 0), 0x9e3779b1) + 0x7f4a7c15) >>> 0;
    return new Rng(h);
  }

  state(): number[] {
    return Array.from(this.s);
  }

  nextU32(): number {
    const s = this.s;
    const t = (((s[0] + s[1]) >>> 0) + s[3]) >>> 0;
    s[3] = (s[3] + 1) >>> 0;
    s[0] = s[1] ^ (s[1] >>> 9);
    s[1] = (s[2] + (s[2] << 3)) >>> 0;
    s[2] = ((s[2] << 21) | (s[2] >>> 11)) >>> 0;
    s[2] = (s[2] + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal by Box-Muller. */
  normal(): number {
    const u = 1 - this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fisher-Yates permutation of 0..n-1. */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }
}
