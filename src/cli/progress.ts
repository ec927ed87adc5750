import cliProgress from 'cli-progress';

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
