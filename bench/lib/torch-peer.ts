// Runs a PyTorch peer script (bench/peers/) with Debian's python3-torch, after our own timing has finished.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { StepTimes } from './timing';

export const PYTHON = '/usr/bin/python3';
/**
 * OpenMP threads that spin while waiting lose badly when the cores are shared: on the loaded 2-core dev machine
 * torch's step was ~3.5x slower with the default (active) policy than with PASSIVE. A caller's setting wins.
 */
export const PEER_OMP_WAIT_POLICY = process.env.OMP_WAIT_POLICY ?? 'PASSIVE';
export const TORCH_MISSING = `skipped: Debian's PyTorch not installed (apt-get install python3-torch); ${PYTHON} cannot import torch`;

/** The JSON line every peer prints (bench/peers/common.py time_train_steps, plus the peer's own fields). */
export interface PeerResult extends StepTimes {
  peer: string;
  version: string;
  rss_mb_first: number | null;
  rss_mb_last: number;
}

/** Path of bench/peers/<script>. */
export function peerScript(script: string): string {
  return path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'peers', script);
}

export function torchAvailable(): boolean {
  if (!fs.existsSync(PYTHON)) return false;
  return spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

/** Runs `script` with the step counts, threads and batch of our run (and `extraArgs`); returns its last JSON line. */
export function runPeer<R extends PeerResult>(script: string, warmup: number, steps: number, threads: number, batch: number, extraArgs: string[] = []): R {
  const r = spawnSync(PYTHON, [script, '--steps', String(steps), '--warmup', String(warmup), '--threads', String(threads), '--batch', String(batch), ...extraArgs], {
    encoding: 'utf8',
    maxBuffer: 16 << 20,
    env: { ...process.env, OMP_WAIT_POLICY: PEER_OMP_WAIT_POLICY },
  });
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status}):\n${r.stderr}`);
  const line = r.stdout.split('\n').reverse().find((l) => l.trim().startsWith('{'));
  if (!line) throw new Error(`${script} printed no JSON line; stdout was:\n${r.stdout}`);
  return JSON.parse(line) as R;
}

/** A peer that trains on request: `steps(n)` runs n timed steps and resolves with their milliseconds. */
export interface SteppingPeer<R> {
  /** Settings and versions the peer printed once its model and warmup were ready. */
  ready: R;
  steps(n: number): Promise<number[]>;
  /** Ends the peer; resolves with its RSS. */
  close(): Promise<{ rss_mb: number }>;
}

/**
 * Starts `script --serve` (bench/peers/common.py serve_steps): it builds its model, warms up, prints one JSON line,
 * then for each line "N" on stdin runs N timed steps and prints {"ms": [...]}. Steps are requested only while
 * ours are idle, so the two never run at the same time, and steps of both alternate within one run: both see
 * the same minute of a shared machine, which the ratio needs (bench/README.md).
 */
export async function startSteppingPeer<R>(script: string, args: string[]): Promise<SteppingPeer<R>> {
  const child = spawn(PYTHON, [script, '--serve', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, OMP_WAIT_POLICY: PEER_OMP_WAIT_POLICY } });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextJson = async () => {
    for (;;) {
      const { value, done } = await lines.next();
      if (done) throw new Error(`${script} ended (exit ${child.exitCode}):\n${stderr}`);
      if (value.trim().startsWith('{')) return JSON.parse(value);
    }
  };
  const ready = (await nextJson()) as R;
  return {
    ready,
    steps: async (n) => {
      child.stdin.write(`${n}\n`);
      return ((await nextJson()) as { ms: number[] }).ms;
    },
    close: async () => {
      child.stdin.write('quit\n');
      const last = (await nextJson()) as { rss_mb: number };
      child.stdin.end();
      return last;
    },
  };
}
