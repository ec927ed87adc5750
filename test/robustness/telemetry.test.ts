import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

// onnxruntime-node's Linux build writes /tmp/mat-debug-<pid>.log when its telemetry starts (src/runtime/ort.ts).
const script = `
await import('./src/runtime/ort.ts').then(async (ort) => { await ort.InferenceSession.create('test/fixtures/torch_cnn.onnx'); });
console.log(process.pid);
`;

function sessionProcess(env: NodeJS.ProcessEnv): { pid: number; logged: boolean } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: path.resolve(import.meta.dirname, '../..'), env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const pid = Number(r.stdout.trim().split('\n').pop());
  const log = `/tmp/mat-debug-${pid}.log`;
  const logged = fs.existsSync(log);
  fs.rmSync(log, { force: true });
  return { pid, logged };
}

test('a qatkit process starts ONNX Runtime with its telemetry off (no /tmp/mat-debug-<pid>.log)', (t) => {
  const env = { ...process.env };
  delete env.ORT_DISABLE_TELEMETRY;
  assert.equal(sessionProcess(env).logged, false);
  // The user's own setting wins: with telemetry explicitly on, this ORT build writes its log again.
  const on = sessionProcess({ ...env, ORT_DISABLE_TELEMETRY: '0' });
  if (!on.logged) t.diagnostic('this ONNX Runtime build writes no telemetry log even with ORT_DISABLE_TELEMETRY=0');
});
