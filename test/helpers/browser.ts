/**
 * Headless Chromium for the browser tests (the report, the web demo page): playwright-core drives Debian's own
 * /usr/bin/chromium (installed by .ci/run with apt; playwright-core never downloads a browser). Where that binary
 * is absent the tests say so through t.skip(chromiumMissing()), so a missing browser never reads as a pass.
 *
 * watchPage collects what a test asserts is empty: console errors and warnings, uncaught page errors, failed
 * requests, HTTP errors, and every request that would leave the machine, which is aborted before it goes out
 * (the report and the demo page promise to work offline: no CDN, no fonts, no telemetry).
 */
import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';

export const CHROMIUM = process.env.QATKIT_CHROMIUM ?? '/usr/bin/chromium';

/** Undefined when Chromium is there, else the skip message. */
export function chromiumMissing(): string | undefined {
  return fs.existsSync(CHROMIUM) ? undefined : `chromium not found at ${CHROMIUM} (apt-get install chromium; .ci/run installs it); browser test skipped`;
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  // --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start. --disable-gpu: no GPU in
  // CI, software rendering only. --disable-background-networking: no update checks, field trials or safe browsing
  // lookups, so the only traffic is the page's own.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}

export interface PageWatch {
  /** Console errors/warnings, page errors, failed requests and HTTP >= 400 responses, one line each. */
  problems: string[];
  /** Requests to anything but the allowed origins (aborted). */
  offsite: string[];
  /** Every URL the page requested, in order. */
  requests: string[];
}

/**
 * Watches `page` and aborts every request whose URL is not file:// or on one of `origins` (for example
 * 'http://127.0.0.1:PORT'); data: and blob: URLs never reach the network and are not requests here.
 */
export async function watchPage(page: Page, origins: string[] = []): Promise<PageWatch> {
  const w: PageWatch = { problems: [], offsite: [], requests: [] };
  const allowed = (url: string) => url.startsWith('file://') || url.startsWith('data:') || url.startsWith('blob:') || origins.some((o) => new URL(url).origin === o);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') w.problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => w.problems.push(`page error: ${e.message}`));
  page.on('request', (r) => w.requests.push(r.url()));
  page.on('requestfailed', (r) => {
    if (allowed(r.url())) w.problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) w.problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (allowed(url)) return route.continue();
    w.offsite.push(url);
    return route.abort('blockedbyclient');
  });
  return w;
}
