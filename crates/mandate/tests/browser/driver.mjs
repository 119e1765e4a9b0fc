// A browser the Rust tests drive step by step: Debian's chromium through
// playwright-core, one JSON command per line on stdin, one JSON answer per line on
// stdout. Every step leaves a screenshot; a failed step answers with the page's URL and
// visible text (and a screenshot) so the test can say what the person would have seen.
//
//   node driver.mjs BASE_URL SCREENSHOT_DIR
//
// Commands: {"do":"goto","path"} {"do":"fill","label"|"placeholder","value"} {"do":"check","label"}
// {"do":"select","label","value"} {"do":"click","role","name"} {"do":"submit","name"} {"do":"see","text"}
// {"do":"url"} {"do":"text"} {"do":"crawl","forbidden":[...]} {"do":"quit"}
// Keyboard only: {"do":"press","key":"Tab"|"Enter"|…} {"do":"focused"} (what has the focus: tag,
// text, href, and whether a focus outline is drawn); {"do":"count","selector"} counts elements.
// Any command with "shot":false takes no screenshot (long runs of key presses).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: node driver.mjs BASE_URL SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// No background traffic: this machine's network is closed, and Chromium's own calls home
// would only be refused (many at a time) and slow every start.
const args = [
  '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-default-apps',
  ...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []),
];
const browser = await chromium.launch({ executablePath, args, headless: true });
const context = await browser.newContext({ baseURL: base });
const page = await context.newPage();
// What the page's console says (CSP refusals, script errors) goes to the test's output.
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.error(`browser ${m.type()}: ${m.text()}`); });
page.setDefaultTimeout(Number(process.env.STEP_TIMEOUT_MS || 15000));
let step = 0;

async function shot(name) {
  step += 1;
  const file = join(shots, `${String(step).padStart(2, '0')}-${name.replace(/[^a-z0-9_-]+/gi, '_')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/// Every console page reachable from /ui/ by links, none showing a forbidden string.
async function crawl(forbidden) {
  const seen = new Set();
  const queue = ['/ui/'];
  const leaks = [];
  while (queue.length && seen.size < 150) {
    const path = queue.shift();
    if (seen.has(path)) continue;
    seen.add(path);
    const response = await page.goto(path);
    const html = await page.content();
    for (const secret of forbidden) {
      if (secret && html.includes(secret)) leaks.push({ path, secret: secret.slice(0, 6) + '…' });
    }
    if (!response || response.headers()['content-type']?.startsWith('text/html') !== true) continue;
    await shot(`crawl${path.split('?')[0]}`);
    const links = await page.$$eval('a[href]', (as) => as.map((a) => a.getAttribute('href')));
    for (const href of links) {
      const u = new URL(href, page.url());
      if (u.origin === new URL(base).origin && u.pathname.startsWith('/ui/') && u.pathname !== '/ui/logout') {
        queue.push(u.pathname + u.search);
      }
    }
  }
  return { pages: [...seen], leaks };
}

async function run(c) {
  switch (c.do) {
    case 'goto': await page.goto(c.path); break;
    case 'fill': await (c.placeholder
      ? page.getByPlaceholder(c.placeholder, { exact: true })
      : page.getByLabel(c.label, { exact: true })).fill(c.value); break;
    case 'check': await page.getByLabel(c.label, { exact: true }).check(); break;
    case 'uncheck': await page.getByLabel(c.label, { exact: true }).uncheck(); break;
    case 'select': await page.getByLabel(c.label, { exact: true }).selectOption(c.value); break;
    case 'click': await Promise.all([
      page.waitForLoadState('load'),
      page.getByRole(c.role || 'button', { name: c.name, exact: true }).first().click(),
    ]); break;
    // Submits the button's form as that button would (HTMLFormElement.requestSubmit,
    // the form's validation included): on the long consent page, after many steps,
    // chromium focused the button on a click and sent nothing.
    case 'submit': await page.getByRole('button', { name: c.name, exact: true }).first()
      .evaluate((b) => b.form.requestSubmit(b)); await page.waitForLoadState('load'); break;
    case 'see': await page.getByText(c.text, { exact: false }).first().waitFor({ state: 'visible', timeout: c.timeout_ms }); break;
    case 'press': await Promise.all([page.waitForLoadState('load'), page.keyboard.press(c.key)]); break;
    case 'focused': return await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      const style = getComputedStyle(e);
      return {
        tag: e.tagName.toLowerCase(),
        text: (e.innerText || e.value || '').trim().slice(0, 200),
        href: e.getAttribute('href'),
        outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
      };
    });
    case 'count': return await page.locator(c.selector).count();
    case 'url': return page.url();
    case 'text': return await page.innerText('body');
    case 'crawl': return await crawl(c.forbidden || []);
    case 'quit': return null;
    default: throw new Error(`unknown command ${JSON.stringify(c.do)}`);
  }
  return null;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let c;
  try { c = JSON.parse(line); } catch (e) { console.log(JSON.stringify({ ok: false, error: `bad command: ${e}` })); continue; }
  try {
    const value = await run(c);
    const screenshot = c.do === 'quit' || c.shot === false ? null : await shot(c.shot || c.do);
    console.log(JSON.stringify({ ok: true, value, url: page.url(), screenshot }));
    if (c.do === 'quit') break;
  } catch (e) {
    let text = '';
    try { text = (await page.innerText('body')).slice(0, 3000); } catch {}
    let screenshot = null;
    try { screenshot = await shot(`FAILED-${c.do}`); } catch {}
    console.log(JSON.stringify({ ok: false, error: String(e).slice(0, 2000), url: page.url(), text, screenshot }));
  }
}
await browser.close();
// stdin may still be open (the test keeps its end until we are gone): leave now.
process.exit(0);
