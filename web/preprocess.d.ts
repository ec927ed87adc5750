// Types of web/preprocess.js for the TypeScript tests that run it in Node.
export const SIDE: 28;
export const BOX: 20;
export function toMnistInput(ink: ArrayLike<number>, width: number, height: number, threshold?: number): Float32Array | undefined;
export function areaResample(src: ArrayLike<number>, width: number, left: number, top: number, bw: number, bh: number, tw: number, th: number): Float32Array;
export function inkFromRgba(rgba: ArrayLike<number>, width: number, height: number): Float32Array;
export function softmax(logits: ArrayLike<number>): number[];
export function argmax(values: ArrayLike<number>): number;
