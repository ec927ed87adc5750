import cliProgress from 'cli-progress';
import type { RunHooks } from '../train/run.js';

/** Progress on a TTY (a bar with loss, accuracy, steps/s); plain log lines otherwise or under CI. */
export class Progress {
  private bar?: cliProgress.SingleBar;
  private lastLog = 0;
  private started = Date.now();
  private readonly interactive: boolean;

  constructor(private readonly label: string, stream: NodeJS.WriteStream = process.stderr) {
    this.interactive = Boolean(stream.isTTY) && !process.env.CI;
    if (this.interactive) {
      this.bar = new cliProgress.SingleBar(
        { format: `${label} [{bar}] {value}/{total} | loss {loss} | acc {acc} | {rate} steps/s | eta {eta_formatted}`, hideCursor: true, stream },
        cliProgress.Presets.shades_classic,
      );
    }
  }

  start(total: number, start = 0): void {
    this.started = Date.now();
    this.startValue = start;
    this.bar?.start(total, start, { loss: '-', acc: '-', rate: '-' });
  }
  private startValue = 0;

  update(value: number, total: number, fields: { loss: number; acc: number; tokensPerSecond?: number }): void {
    const rate = (value - this.startValue) / Math.max(1e-3, (Date.now() - this.started) / 1000);
    const tokens = fields.tokensPerSecond !== undefined ? ` | ${Math.round(fields.tokensPerSecond)} tokens/s` : '';
    const f = { loss: fields.loss.toFixed(4), acc: fields.acc.toFixed(3), rate: rate.toFixed(1) + (this.bar ? tokens : ''), tokens };
    if (this.bar) {
      this.bar.update(value, f);
      return;
    }
    const now = Date.now();
    if (now - this.lastLog > 10000 || value === total) {
      this.lastLog = now;
      console.error(`${this.label} step ${value}/${total} loss ${f.loss} acc ${f.acc} ${f.rate} steps/s${f.tokens}`);
    }
  }

  /** A line of its own (e.g. a validation result) without breaking the bar. */
  note(line: string): void {
    if (this.bar) this.bar.stop();
    console.error(`${this.label} ${line}`);
    if (this.bar) this.bar.start(this.bar.getTotal(), this.bar.getProgress() * this.bar.getTotal());
  }

  stop(): void {
    this.bar?.stop();
  }
}

/**
 * The training hooks that drive `progress`: the bar starts at the run's first step and shows loss, a moving average
 * of the batches' accuracy and tokens/s. StepInfo.correct counts the batch's correct predictions (language models:
 * per window position); the run's own batch divides it, also when a resumed run's batch is not the command line's.
 */
export function progressHooks(progress: Progress, log: (line: string) => void): RunHooks {
  let batch = 1;
  let accuracyEma = 0;
  return {
    onStart: ({ totalSteps, startStep, batch: runBatch }) => {
      batch = runBatch;
      progress.start(totalSteps, startStep);
    },
    onStep: (s) => {
      const accuracy = s.correct / batch;
      accuracyEma = accuracyEma === 0 ? accuracy : 0.95 * accuracyEma + 0.05 * accuracy;
      progress.update(s.step, s.totalSteps, { loss: s.loss, acc: accuracyEma, tokensPerSecond: s.metrics.tokens_per_second });
    },
    log,
  };
}
