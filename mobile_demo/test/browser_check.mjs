// Drives Debian's headless Chromium through the demo page and reports what the page computed.
// tests/test_browser.py runs it and judges the results against Python; this script only collects.
//
//   node test/browser_check.mjs URL INPUT.json OUTPUT.json SCREENSHOT.png
//
// INPUT.json: {"texts": [...], "type_text": "..."}. Halfway, the script prints the line
// "STOP-SERVER" and waits for a line on stdin: the caller stops the web server, so the offline check
// runs against a server that is really gone, not an emulated network switch.
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [url, inputPath, outputPath, screenshotPath] = process.argv.slice(2);
const input = JSON.parse(readFileSync(inputPath, 'utf8'));
const PHONE = { width: 390, height: 844 };

// Chromium as root in a container needs no sandbox; the rest keeps it from calling home (its connections
// are refused on a closed network, many at a time).
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

const userDataDir = mkdtempSync(join(tmpdir(), 'gendistill-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: ARGS,
  viewport: PHONE,
  deviceScaleFactor: 1,
  isMobile: true,
  hasTouch: true,
});
const result = { browser: context.browser()?.version() ?? null, errors: [] };
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (err) => result.errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') result.errors.push(`console: ${msg.text()}`); });
  page.setDefaultTimeout(60_000);

  await page.goto(url);
  await page.evaluate(() => window.gendistill.ready);
  result.cross_origin_isolated = await page.evaluate(() => crossOriginIsolated);

  // 1 + 2: ids and probabilities for every text, through the page's own code paths.
  result.cases = await page.evaluate(async (texts) => {
    const out = [];
    for (const text of texts) {
      const ids = await window.gendistill.tokenize(text);
      const { probabilities, label } = await window.gendistill.predict(text);
      out.push({ ids, probabilities, label });
    }
    return out;
  }, input.texts);
  result.changed_code_points = await page.evaluate(() => window.gendistill.changedCodePoints());

  // 3: a person typing; every keystroke runs the model, as on a phone.
  await page.locator('#text').pressSequentially(input.type_text);
  await page.waitForFunction((text) => document.body.dataset.state === 'predicted'
    && window.gendistill.latencies().runs > 0 && document.querySelector('#text').value === text, input.type_text);
  await page.waitForTimeout(300); // let the bar transition finish before the screenshot
  result.ui = await page.evaluate(() => ({
    label: document.querySelector('#label').textContent,
    confidence: document.querySelector('#confidence').textContent,
    bars: [...document.querySelectorAll('#bars li')].map((li) => ({
      name: li.querySelector('.name').textContent,
      value: li.querySelector('.value').textContent,
      width: li.querySelector('.fill').getBoundingClientRect().width,
      top: li.classList.contains('top'),
    })),
    status: document.querySelector('#status').textContent,
    page_width: document.documentElement.scrollWidth,
  }));
  await page.screenshot({ path: screenshotPath });

  // 4: the page's own latency: what the typing showed, and a steady-state batch-1 median.
  result.typing_latency = await page.evaluate(() => window.gendistill.latencies());
  result.benchmark = await page.evaluate((text) => window.gendistill.benchmark(text, 300, 30), input.type_text);

  // Offline: the service worker must have cached everything; then the server goes away.
  result.offline_ready = await page.evaluate(() => window.gendistill.offline());
  const probe = input.texts[0] ?? input.type_text;
  const online = await page.evaluate((text) => window.gendistill.predict(text), probe);
  console.log('STOP-SERVER');
  const lines = createInterface({ input: process.stdin });
  await new Promise((resolve) => lines.once('line', resolve));
  lines.close(); // an open stdin would keep node running after the report is written
  await context.setOffline(true);
  await page.reload();
  await page.evaluate(() => window.gendistill.ready);
  const offline = await page.evaluate((text) => window.gendistill.predict(text), probe);
  const servedBy = await page.evaluate(() => (navigator.serviceWorker.controller ? 'service-worker' : 'network'));
  result.offline = { online: online.probabilities, offline: offline.probabilities, label: offline.label, served_by: servedBy };
} catch (err) {
  result.errors.push(`driver: ${err.stack || err}`);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  writeFileSync(outputPath, JSON.stringify(result));
}
