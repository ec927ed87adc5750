import { Command } from 'commander';
import path from 'node:path';
import { startDemoServer } from '../serve/server.js';
import { readCatalog } from '../serve/model-catalog.js';
import { intOption } from './options.js';

/** `qat serve`: the browser demo (web/) on a local HTTP server, until Ctrl-C. */
export function serveCommand(): Command {
  return new Command('serve')
    .description('serve the browser demo: draw a digit for the fp32/int8/int4/ternary exports, QAT in the page (onnxruntime-web)')
    .option('--port <n>', 'TCP port (0: any free port)', intOption('--port', 0, 65535), 8080)
    .option('--host <address>', 'address to listen on (127.0.0.1: this machine only)', '127.0.0.1')
    .option('--from <dir>', 'directory of the demo runs and exports (qat demo --out)', 'runs/demo')
    .action(async (o) => {
      const from = path.resolve(o.from);
      const catalog = readCatalog(from);
      const server = await startDemoServer({ from, port: o.port, host: o.host });
      console.log(`qat serve: ${server.url} (models from ${from}; Ctrl-C stops)`);
      for (const m of catalog.models) console.log(`  ${m.slot.padEnd(8)} ${m.label.padEnd(20)} ${path.relative(from, m.file)} (${m.bytes} bytes)`);
      for (const m of catalog.missing) console.log(`  ${m.slot.padEnd(8)} missing: ${m.command}`);
      for (const m of catalog.languageModels) console.log(`  ${'text'.padEnd(8)} ${m.label.padEnd(20)} ${path.relative(from, m.file)} (${m.bytes} bytes, generates in the page)`);
      if (!catalog.fp32Run) console.log(`  in-page QAT needs an fp32 run under ${from}: npx qat demo --out ${o.from}`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void server.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
