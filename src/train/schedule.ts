export const SCHEDULES = ['constant', 'step', 'cosine'] as const;
export type ScheduleKind = (typeof SCHEDULES)[number];

export interface ScheduleConfig {
  kind: ScheduleKind;
  lr: number;
  /** Linear warmup from 0 over this many steps (cosine and step). */
  warmupSteps?: number;
  /** step: multiply by gamma every stepSize steps. */
  stepSize?: number;
  gamma?: number;
  /** cosine: floor of the decay, as a fraction of lr. */
  minFactor?: number;
}

/** Learning rate at 0-based step `step` of `totalSteps`; fed to the step graph as a scalar input. */
export function learningRate(s: ScheduleConfig, step: number, totalSteps: number): number {
  const warm = s.warmupSteps ?? 0;
  if (warm > 0 && step < warm) return (s.lr * (step + 1)) / warm;
  switch (s.kind) {
    case 'constant':
      return s.lr;
    case 'step':
      return s.lr * Math.pow(s.gamma ?? 0.1, Math.floor((step - warm) / Math.max(1, s.stepSize ?? totalSteps)));
    case 'cosine': {
      const span = Math.max(1, totalSteps - warm);
      const t = Math.min(1, (step - warm) / span);
      const floor = s.minFactor ?? 0;
      return s.lr * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * t)));
    }
  }
}
