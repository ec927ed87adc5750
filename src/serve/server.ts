import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatasetName, loadDataset } from '../data/index.js';
import { Dataset } from '../data/dataset.js';
import { loadRun } from '../train/run.js';
import { InputError } from '../validate/schema.js';
import { Catalog, readCatalog } from './model-catalog.js';
import { buildQatBundle, QatBundle, QatBundleOptions, QatManifest } from './qat-bundle.js';
import { mimeType, resolveUnder } from './static-files.js';

/** The page and its modules. */
export const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url));
/** onnxruntime-web's browser builds: ort.wasm.min.mjs loads ort-wasm-simd-threaded.{mjs,wasm} beside it. */
export const ORT_WEB_DIST = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
const ORT_FILE = /^ort(-wasm-simd-threaded)?(\.wasm)?(\.min)?\.(mjs|wasm)$/;

export interface DemoServerOptions {
  /** Directory with the demo's runs and exports (qat demo's --out). */
  from: string;
  port: number;
  host: string;
  qat?: QatBundleOptions & {
    /** Training images sent to the page (uint8), and test images for the final accuracy. */
    trainSamples?: number;
    testSamples?: number;
  };
}

export interface DemoServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Served QAT material: the bundle plus MNIST subsets as raw uint8 pixels and labels. */
interface QatAssets {
  bundle: QatBundle;
  manifest: QatManifest & { data: { train: number; test: number; source: string } };
  files: Record<string, Uint8Array>;
}

function pixels(d: Dataset, count: number): Uint8Array {
  const n = Math.min(count, d.count) * d.shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(d.images[i] * 255);
  return out;
}

async function buildQatAssets(catalog: Catalog, options: DemoServerOptions['qat'] = {}): Promise<QatAssets> {
  if (!catalog.fp32Run) throw new InputError(`no fp32 run under ${catalog.from} (a directory with checkpoint.qat, model.onnx and an unquantized metrics.json): make one with npx qat demo --out ${catalog.from}`);
  const ckpt = loadRun(catalog.fp32Run);
  const dataName = ((ckpt.config.data as string | undefined) ?? 'mnist') as DatasetName;
  const data = loadDataset(dataName);
  const bundle = await buildQatBundle(ckpt.model, data, options);
  const train = Math.min(options.trainSamples ?? 4096, data.train.count);
  const test = Math.min(options.testSamples ?? 1000, data.test.count);
  return {
    bundle,
    manifest: { ...bundle.manifest, data: { train, test, source: `${dataName} (first ${train} training and ${test} test images)` } },
    files: {
      'step.onnx': bundle.stepModel,
      'eval.onnx': bundle.evalModel,
      'state.bin': bundle.state,
      'train-images.bin': pixels(data.train, train),
      'train-labels.bin': data.train.labels.slice(0, train),
      'test-images.bin': pixels(data.test, test),
      'test-labels.bin': data.test.labels.slice(0, test),
    },
  };
}

/**
 * Headers of every response. Cross-origin isolation (COOP same-origin + COEP require-corp) makes SharedArrayBuffer
 * available, which onnxruntime-web's threaded wasm build needs for more than one thread (its docs: "env.wasm.numThreads").
 */
function baseHeaders(type: string): http.OutgoingHttpHeaders {
  return {
    'Content-Type': type,
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-cache',
  };
}

/**
 * Starts the demo's HTTP server: the page (web/), onnxruntime-web's wasm files, the models found under `from`
 * (by id, never by path), and the in-page QAT material built on first request. Rejects with an InputError naming
 * the flag when the port is taken or not allowed.
 */
export async function startDemoServer(options: DemoServerOptions): Promise<DemoServer> {
  let qat: Promise<QatAssets> | undefined;
  const send = (res: http.ServerResponse, status: number, type: string, body: Uint8Array | string, head: boolean) => {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { ...baseHeaders(type), 'Content-Length': bytes.byteLength });
    res.end(head ? undefined : bytes);
  };
  const json = (res: http.ServerResponse, status: number, value: unknown, head: boolean) => send(res, status, 'application/json; charset=utf-8', JSON.stringify(value), head);
  const sendFile = (res: http.ServerResponse, file: string | undefined, head: boolean) => {
    if (!file) return json(res, 404, { error: 'not found' }, head);
    send(res, 200, mimeType(file), fs.readFileSync(file), head);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('Allow', 'GET, HEAD');
      return json(res, 405, { error: `${req.method} is not served; GET or HEAD` }, false);
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const p = url.pathname;
    if (p === '/' || p === '/index.html') return sendFile(res, resolveUnder(WEB_DIR, 'index.html'), head);
    if (p.startsWith('/web/')) return sendFile(res, resolveUnder(WEB_DIR, p.slice('/web/'.length)), head);
    if (p.startsWith('/ort/')) {
      const name = p.slice('/ort/'.length);
      return sendFile(res, ORT_FILE.test(name) ? resolveUnder(ORT_WEB_DIST, name) : undefined, head);
    }
    if (p === '/api/models') {
      const c = readCatalog(options.from);
      return json(res, 200, { from: c.from, models: c.models.map(({ file, json: report, ...m }) => ({ ...m, file: path.basename(file), report: report && path.basename(report), url: `/models/${m.id}.onnx` })), languageModels: c.languageModels.map(({ file, ...m }) => ({ ...m, file: path.relative(c.from, file), url: `/models/${m.id}.onnx` })), missing: c.missing, skipped: c.skipped.map((s) => ({ file: path.relative(c.from, s.file), reason: s.reason })), fp32Run: c.fp32Run }, head);
    }
    const model = /^\/models\/([a-z0-9]+)\.onnx$/.exec(p);
    if (model) {
      const c = readCatalog(options.from);
      return sendFile(res, [...c.models, ...c.languageModels].find((m) => m.id === model[1])?.file, head);
    }
    const asset = /^\/api\/qat\/([a-z0-9.-]+)$/.exec(p);
    if (asset) {
      qat ??= buildQatAssets(readCatalog(options.from), options.qat);
      let assets: QatAssets;
      try {
        assets = await qat;
      } catch (e) {
        qat = undefined; // a later request (after `qat demo` made the run) tries again
        return json(res, e instanceof InputError ? 404 : 500, { error: (e as Error).message }, head);
      }
      if (asset[1] === 'manifest.json') return json(res, 200, assets.manifest, head);
      const bytes = assets.files[asset[1]];
      return bytes ? send(res, 200, 'application/octet-stream', bytes, head) : json(res, 404, { error: `no QAT file '${asset[1]}'; served: manifest.json, ${Object.keys(assets.files).join(', ')}` }, head);
    }
    return json(res, 404, { error: `nothing at ${p}` }, head);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) json(res, 500, { error: (e as Error).message }, false);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') reject(new InputError(`--port ${options.port}: ${options.host}:${options.port} is already in use (another qat serve?); pass --port N with a free port, or --port 0 for any free one`));
      else if (e.code === 'EACCES') reject(new InputError(`--port ${options.port}: not allowed to listen on ${options.host}:${options.port} (ports below 1024 need privileges); pass --port N >= 1024`));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') reject(new InputError(`--host ${options.host}: not an address of this machine; pass --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface)`));
      else reject(e);
    });
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const shownHost = options.host === '0.0.0.0' || options.host === '::' ? 'localhost' : options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
