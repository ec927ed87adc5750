/**
 * Times a demo's phases and says each one on stderr as it starts and ends, with the load average: figures
 * measured beside other processes are inflated, and the load says by how much to expect.
 */
import os from 'node:os';
import { DemoPhase, DemoSummary } from './summary.js';

const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

export class DemoPhaseClock {
  readonly phases: DemoPhase[] = [];
  private readonly started = performance.now();
  private readonly loadStart = load();

  constructor(private readonly log: (line: string) => void) {}

  get count(): number {
    return this.phases.length;
  }

  async phase<T>(name: string, work: () => Promise<T>): Promise<T> {
    this.log(`${name} ...`);
    const t0 = performance.now();
    const result = await work();
    const seconds = (performance.now() - t0) / 1000;
    const phase = { name, seconds: Math.round(seconds * 10) / 10, load_average: load() };
    this.phases.push(phase);
    this.log(`${name}: ${phase.seconds.toFixed(1)} s (load average ${phase.load_average.join(', ')})`);
    return result;
  }

  elapsedSeconds(): number {
    return Math.round((performance.now() - this.started) / 100) / 10;
  }

  machine(threads: number): DemoSummary['machine'] {
    const cpus = os.cpus();
    return { cpus: cpus.length, cpu_model: cpus[0]?.model ?? 'unknown', threads, load_average_start: this.loadStart, load_average_end: load() };
  }
}
