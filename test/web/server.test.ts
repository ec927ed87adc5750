import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { readCatalog } from '../../src/serve/model-catalog.js';
import { DemoServer, ORT_WEB_DIST, startDemoServer, WEB_DIR } from '../../src/serve/server.js';
import { resolveUnder } from '../../src/serve/static-files.js';
import { InputError } from '../../src/validate/schema.js';
import { tinyModel } from '../helpers/tiny-model.js';
import { runCorpusCase } from '../helpers/run-qat.js';
import { buildDemoFixture } from './demo-fixture.js';
import { scratchDir } from '../helpers/scratch.js';

// `qat serve`'s HTTP side (src/serve/): routes, headers, refusals and the model catalog, on a demo-like directory of
// the tiny model (test/helpers/tiny-model.ts: every file a few KB, every run a few steps).

const tmp = scratchDir('qat-serve-');
const demoDir = path.join(tmp, 'demo');
const fp32Only = path.join(tmp, 'fp32-only');
let server: DemoServer;

before(async () => {
  await buildDemoFixture(demoDir, { model: tinyModel(), fp32Steps: 20, qatSteps: 2 });
  // Beside the exports: a file that is not ONNX.
  fs.writeFileSync(path.join(demoDir, 'broken.onnx'), 'not a model');
  fs.mkdirSync(fp32Only);
  fs.cpSync(path.join(demoDir, 'fp32'), path.join(fp32Only, 'fp32'), { recursive: true });
  server = await startDemoServer({ from: demoDir, port: 0, host: '127.0.0.1', qat: { trainSamples: 96, testSamples: 40, calibBatches: 1, batch: 16 } });
});

after(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request with the path sent as written (fetch would normalise `..` and percent-escapes before sending). */
function request(rawPath: string, method = 'GET', port = server.port): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

const json = (r: Reply) => JSON.parse(r.body.toString('utf8'));

test('the page is served at / with cross-origin isolation headers (COOP same-origin, COEP require-corp)', async () => {
  const r = await request('/');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin');
  assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp');
  assert.equal(r.headers['cross-origin-resource-policy'], 'same-origin');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.equal(r.body.toString(), fs.readFileSync(path.join(WEB_DIR, 'index.html'), 'utf8'));
  assert.match(r.body.toString(), /<canvas id="pad"/);
});

test('every file the page references is served with its MIME type, and none from a CDN', async () => {
  const html = fs.readFileSync(path.join(WEB_DIR, 'index.html'), 'utf8');
  const app = fs.readFileSync(path.join(WEB_DIR, 'app.js'), 'utf8');
  assert.doesNotMatch(html + app, /https?:\/\//, 'no absolute URL in the page or its entry module');
  const cases: [string, string][] = [
    ['/web/app.js', 'text/javascript; charset=utf-8'],
    ['/web/styles.css', 'text/css; charset=utf-8'],
    ['/web/qat-step.js', 'text/javascript; charset=utf-8'],
    ['/ort/ort.wasm.min.mjs', 'text/javascript; charset=utf-8'],
    ['/ort/ort-wasm-simd-threaded.mjs', 'text/javascript; charset=utf-8'],
    ['/ort/ort-wasm-simd-threaded.wasm', 'application/wasm'],
  ];
  for (const [p, type] of cases) {
    const r = await request(p);
    assert.equal(r.status, 200, p);
    assert.equal(r.headers['content-type'], type, p);
    assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp', p);
  }
  const wasm = await request('/ort/ort-wasm-simd-threaded.wasm');
  assert.deepEqual([...wasm.body.subarray(0, 4)], [0x00, 0x61, 0x73, 0x6d], 'WebAssembly magic');
  assert.equal(wasm.body.byteLength, fs.statSync(path.join(ORT_WEB_DIST, 'ort-wasm-simd-threaded.wasm')).size);
  // Every module app.js imports relatively exists under web/.
  for (const m of app.matchAll(/from '\.\/([a-z-]+\.js)'/g)) assert.equal((await request(`/web/${m[1]}`)).status, 200, m[1]);
});

test('only the browser builds of onnxruntime-web are served from its package, not the rest of node_modules', async () => {
  assert.equal((await request('/ort/ort.node.min.mjs')).status, 404);
  assert.equal((await request('/ort/package.json')).status, 404);
  assert.equal((await request('/ort/%2e%2e/package.json')).status, 404);
});

test('path traversal is refused: .., percent-encoded .., backslashes, NUL, hidden files, absolute paths', async () => {
  const secret = path.join(tmp, 'secret.txt');
  fs.writeFileSync(secret, 'SECRET');
  const attempts = [
    '/web/../package.json',
    '/web/%2e%2e/package.json',
    '/web/..%2fpackage.json',
    '/web/%2e%2e%2f%2e%2e%2fpackage.json',
    '/web/..%5c..%5cpackage.json',
    '/web/app.js%00.html',
    '/web/.hidden',
    `/web/${encodeURIComponent(secret)}`,
    `/web//${secret}`,
    '/web/%zz',
    '/models/../fp32/model.onnx',
    '/models/%2e%2e%2ffp32%2fmodel.onnx',
  ];
  for (const p of attempts) {
    const r = await request(p);
    assert.equal(r.status, 404, p);
    assert.doesNotMatch(r.body.toString(), /SECRET|"name": "qatkit"/, p);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8', p);
  }
});

test('a symlink out of the served root is refused; a plain file inside it resolves', () => {
  const root = path.join(tmp, 'root');
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'ok.js'), '');
  fs.writeFileSync(path.join(tmp, 'outside.js'), '');
  fs.symlinkSync(path.join(tmp, 'outside.js'), path.join(root, 'link.js'));
  fs.mkdirSync(path.join(root, 'dir'));
  assert.equal(resolveUnder(root, 'ok.js'), fs.realpathSync(path.join(root, 'ok.js')));
  assert.equal(resolveUnder(root, 'link.js'), undefined);
  assert.equal(resolveUnder(root, 'dir'), undefined, 'a directory is not a file');
  assert.equal(resolveUnder(root, ''), undefined);
});

test('unknown paths are a 404 with a JSON error naming them; methods other than GET and HEAD are a 405', async () => {
  const r = await request('/nothing/here');
  assert.equal(r.status, 404);
  assert.match(json(r).error, /\/nothing\/here/);
  assert.equal((await request('/web/missing.js')).status, 404);
  const post = await request('/', 'POST');
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  assert.match(json(post).error, /POST/);
});

test('HEAD gives the headers of GET and no body', async () => {
  const [get, head] = [await request('/web/app.js'), await request('/web/app.js', 'HEAD')];
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(get.body.byteLength));
  assert.equal(head.headers['content-type'], get.headers['content-type']);
  assert.equal(head.body.byteLength, 0);
});

test('the catalog finds the fp32 run model and the int8, int4 and ternary exports by their export metadata', async () => {
  const r = await request('/api/models');
  assert.equal(r.status, 200);
  const c = json(r);
  assert.deepEqual(c.models.map((m: { slot: string }) => m.slot), ['fp32', 'int8', 'int4', 'ternary']);
  assert.deepEqual(c.missing, []);
  assert.equal(c.fp32Run, path.join(demoDir, 'fp32'));
  const bySlot = Object.fromEntries(c.models.map((m: { slot: string }) => [m.slot, m]));
  assert.equal(bySlot.int8.format, 'qdq');
  assert.equal(bySlot.int8.label, 'w4a4 int8 QDQ');
  assert.equal(bySlot.int4.format, 'int4');
  assert.equal(bySlot.ternary.format, 'packed');
  assert.equal(bySlot.ternary.preset, 'ternary');
  assert.equal(bySlot.fp32.format, undefined);
  // From the export JSON beside each file (qat export --json): the parity check's figures.
  const report = JSON.parse(fs.readFileSync(path.join(demoDir, 'tiny-w4a4-qdq.json'), 'utf8'));
  assert.equal(bySlot.int8.exportedAccuracy, report.parity.exported_accuracy);
  assert.equal(bySlot.int8.checkedSamples, report.parity.samples);
  assert.equal(bySlot.int8.report, 'tiny-w4a4-qdq.json');
  // The page never sees a path, only ids and file names.
  for (const m of c.models) {
    assert.equal(m.url, `/models/${m.id}.onnx`);
    assert.ok(!String(m.file).includes('/'), m.file);
  }
  // What was seen and left out, with why.
  assert.deepEqual(c.skipped.map((s: { file: string }) => s.file), ['broken.onnx']);
  assert.match(c.skipped[0].reason, /not readable as ONNX/);
});

test('models are served by id with their exact bytes; an unknown id is a 404', async () => {
  for (const m of readCatalog(demoDir).models) {
    const r = await request(`/models/${m.id}.onnx`);
    assert.equal(r.status, 200, m.id);
    assert.equal(r.headers['content-type'], 'application/octet-stream');
    assert.ok(r.body.equals(fs.readFileSync(m.file)), m.id);
    assert.equal(m.bytes, r.body.byteLength);
  }
  assert.equal((await request('/models/int2.onnx')).status, 404);
  assert.equal((await request('/models/INT8.onnx')).status, 404);
});

test('a directory with only the fp32 run: the catalog names the command that makes each missing export', () => {
  const c = readCatalog(fp32Only);
  assert.deepEqual(c.models.map((m) => m.slot), ['fp32']);
  const missing = Object.fromEntries(c.missing.map((m) => [m.slot, m.command]));
  assert.deepEqual(Object.keys(missing), ['int8', 'int4', 'ternary']);
  assert.match(missing.int8, /^npx qat train --from .*fp32 --quant w4a4 --out .*qat-w4a4 && npx qat export --from .*qat-w4a4 --format qdq /);
  assert.match(missing.int4, /--format int4 /);
  assert.match(missing.ternary, /--quant ternary .*--format packed /);
});

test('a directory that does not exist: everything is missing and the fp32 slot says to run qat demo', () => {
  const gone = path.join(tmp, 'no-such-demo');
  const c = readCatalog(gone);
  assert.deepEqual(c.models, []);
  assert.equal(c.fp32Run, undefined);
  assert.equal(c.missing.find((m) => m.slot === 'fp32')!.command, `npx qat demo --out ${gone}`);
});

test('the QAT bundle: manifest, step and eval graphs, initial state and MNIST subsets of the announced sizes', async () => {
  const m = json(await request('/api/qat/manifest.json'));
  assert.equal(m.quant, 'w4a4');
  assert.equal(m.batch, 16);
  assert.deepEqual(m.sampleShape, [1, 28, 28]);
  assert.deepEqual(m.data, { train: 96, test: 40, source: 'mnist (first 96 training and 40 test images)' });
  const floats = m.carried.reduce((s: number, c: { length: number }) => s + c.length, 0);
  assert.equal((await request('/api/qat/state.bin')).body.byteLength, 4 * floats);
  const images = await request('/api/qat/train-images.bin');
  assert.equal(images.headers['content-type'], 'application/octet-stream');
  assert.equal(images.body.byteLength, 96 * 784);
  assert.ok(images.body.some((v) => v === 255) && images.body.some((v) => v === 0), 'pixels are bytes 0..255');
  assert.equal((await request('/api/qat/train-labels.bin')).body.byteLength, 96);
  assert.equal((await request('/api/qat/test-images.bin')).body.byteLength, 40 * 784);
  assert.ok((await request('/api/qat/test-labels.bin')).body.every((v) => v < 10));
  for (const f of ['step.onnx', 'eval.onnx']) assert.ok((await request(`/api/qat/${f}`)).body.byteLength > 1000, f);
  const unknown = await request('/api/qat/weights.bin');
  assert.equal(unknown.status, 404);
  assert.match(json(unknown).error, /served: manifest\.json, step\.onnx/);
});

test('without an fp32 run, the QAT route answers 404 naming qat demo (the message the page shows); the page is still served', async () => {
  const empty = path.join(tmp, 'empty');
  fs.mkdirSync(empty);
  const s = await startDemoServer({ from: empty, port: 0, host: '127.0.0.1' });
  try {
    const r = await request('/api/qat/manifest.json', 'GET', s.port);
    assert.equal(r.status, 404);
    assert.match(json(r).error, new RegExp(`no fp32 run under ${empty.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*npx qat demo --out`));
    assert.equal((await request('/', 'GET', s.port)).status, 200, 'the page is still served');
  } finally {
    await s.close();
  }
});

test('a port in use is refused with an InputError naming --port and the way out', async () => {
  await assert.rejects(startDemoServer({ from: demoDir, port: server.port, host: '127.0.0.1' }), (e: Error) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, new RegExp(`^--port ${server.port}: 127\\.0\\.0\\.1:${server.port} is already in use.*--port 0`));
    return true;
  });
});

test('qat serve refuses a port out of range in one line naming --port', async () => {
  const r = await runCorpusCase(['serve', '--port', '70000', '--from', demoDir]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--port/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('npx qat serve prints its URL and the models it found, serves the page, and stops cleanly on SIGINT', async () => {
  const root = path.resolve(WEB_DIR, '..');
  const child = spawn(process.execPath, [path.join(root, 'bin/qat.mjs'), 'serve', '--port', '0', '--from', fp32Only], { cwd: root, env: { ...process.env, CI: '1' } });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL printed in 60 s; stdout: ${stdout} stderr: ${stderr}`)), 60_000);
      child.stdout.on('data', (d) => {
        stdout += d;
        const m = /qat serve: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stdout);
        if (m && stdout.includes('ternary')) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on('exit', () => reject(new Error(`qat serve exited early: ${stderr}`)));
    });
    assert.match(stdout, /fp32 +fp32 +fp32\/model\.onnx \(\d+ bytes\)/);
    assert.match(stdout, /int8 +missing: npx qat train --from /);
    assert.match(stdout, /ternary +missing: .*--format packed/);
    const r = await request('/', 'GET', Number(new URL(url).port));
    assert.equal(r.status, 200);
  } finally {
    child.kill('SIGINT');
  }
  assert.equal(await exited, 0, stderr);
});
