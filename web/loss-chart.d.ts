// Types of web/loss-chart.js for the TypeScript tests that run its data functions in Node.
export function runningMean(values: readonly number[], window: number): number[];
export function ticks(lo: number, hi: number, count?: number): number[];
export function drawLossChart(svg: unknown, losses: readonly number[], total: number): void;
