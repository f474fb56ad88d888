// run.mjs — `lossy serve` driven by real clients: the official `openai` npm package (plain, streamed, errors, API
// key, same text as `lossy run`), curl, and the chat page in headless Chromium through playwright-core (type a
// message, see it streamed, stop a generation, new chat, conversations kept across a reload, phone layout).
// Screenshots are written to OUTDIR. Usage: node run.mjs LOSSY_BIN MODEL OUTDIR (run.sh installs the packages).
// Prints one line per check and ends with "N passed, N failed"; exits non-zero on any failure.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { chromium } from 'playwright-core';

const [bin, model, outdir] = process.argv.slice(2);
if (!bin || !model || !outdir) {
  console.error('usage: node run.mjs LOSSY_BIN MODEL OUTDIR');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, '../../web');
const KEY = 'test-key-' + process.pid;
mkdirSync(outdir, { recursive: true });

let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) passed++;
  else failed++;
  console.log((ok ? 'ok   ' : 'FAIL ') + name + (ok || detail === undefined ? '' : ': ' + detail));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function within(ms, fn) { // poll fn until true, at most ms
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await sleep(50);
  }
  return false;
}

// ---- the server ----
function startServer() {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ['serve', model, '--port', '0', '--api-key', KEY, '--web', webDir, '--ctx', '16384', '--parallel', '2', '--threads', '1'],
                    { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 60000);
    p.stderr.on('data', (d) => {
      log += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(log);
      if (m && !p.port) {
        p.port = Number(m[1]);
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.on('exit', (code) => reject(new Error('server exited ' + code + ':\n' + log)));
    p.log = () => log;
  });
}

function lossyRun(prompt, n, seed, temp) {
  const r = spawnSync(bin, ['run', model, '-p', prompt, '-n', String(n), '--seed', String(seed), '--temp', String(temp), '--no-echo', '--threads', '1'],
                      { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.replace(/\n$/, '') : null;
}

async function health(base) {
  const r = await fetch(base + '/health');
  return r.json();
}

// ---- the openai client ----
async function apiTests(base) {
  const client = new OpenAI({ baseURL: base + '/v1', apiKey: KEY, maxRetries: 0, timeout: 60000 });
  const models = await client.models.list();
  check('openai: models.list', models.data.length === 1 && typeof models.data[0].id === 'string', JSON.stringify(models.data));

  const ref = lossyRun('Once upon a time', 40, 11, 0.8);
  const c = await client.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 40, seed: 11, temperature: 0.8 });
  check('openai: completions.create equals lossy run', ref !== null && c.choices[0].text === ref, JSON.stringify([c.choices[0].text, ref]));
  check('openai: usage', c.usage.completion_tokens === 40 && c.usage.total_tokens === c.usage.prompt_tokens + 40, JSON.stringify(c.usage));

  let streamed = '', chunks = 0, finish = null;
  const s = await client.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 40, seed: 11, temperature: 0.8, stream: true });
  for await (const ch of s) {
    chunks++;
    streamed += ch.choices[0]?.text ?? '';
    finish = ch.choices[0]?.finish_reason ?? finish;
  }
  check('openai: streamed completion equals lossy run', streamed === ref && chunks >= 3 && finish === 'length', JSON.stringify([streamed, chunks, finish]));

  const req = { model: 'x', messages: [{ role: 'system', content: 'Be kind.' }, { role: 'user', content: 'Tell me about a cat.' }], max_tokens: 30, seed: 7, temperature: 0.7 };
  const cc = await client.chat.completions.create(req);
  const text = cc.choices[0].message.content;
  check('openai: chat.completions.create', typeof text === 'string' && cc.choices[0].message.role === 'assistant' && cc.usage.prompt_tokens > 0, JSON.stringify(cc));
  let chatStreamed = '', usage = null, role = null;
  const cs = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  for await (const ch of cs) {
    if (ch.choices[0]?.delta?.role) role = ch.choices[0].delta.role;
    chatStreamed += ch.choices[0]?.delta?.content ?? '';
    if (ch.usage) usage = ch.usage;
  }
  check('openai: streamed chat equals plain chat', chatStreamed === text && role === 'assistant' && usage && usage.completion_tokens === cc.usage.completion_tokens,
        JSON.stringify([chatStreamed, text, usage]));

  try {
    await client.chat.completions.create({ ...req, temperature: 5 });
    check('openai: bad temperature is a 400', false, 'no error');
  } catch (e) {
    check('openai: bad temperature is a 400', e instanceof OpenAI.BadRequestError && e.status === 400 && /temperature/.test(e.message), String(e));
  }
  try {
    const bad = new OpenAI({ baseURL: base + '/v1', apiKey: 'wrong', maxRetries: 0 });
    await bad.models.list();
    check('openai: wrong key is a 401', false, 'no error');
  } catch (e) {
    check('openai: wrong key is a 401', e instanceof OpenAI.AuthenticationError && e.status === 401, String(e));
  }

  // curl, streaming
  const cu = spawnSync('curl', ['-sN', '-H', 'Authorization: Bearer ' + KEY, '-H', 'Content-Type: application/json', '-d',
                                JSON.stringify({ prompt: 'Once upon a time', max_tokens: 40, seed: 11, temperature: 0.8, stream: true }), base + '/v1/completions'],
                       { encoding: 'utf8' });
  let curlText = '';
  for (const line of (cu.stdout || '').split('\n')) {
    if (line.startsWith('data: {')) curlText += JSON.parse(line.slice(6)).choices[0]?.text ?? '';
  }
  check('curl: streamed completion', cu.status === 0 && curlText === ref && cu.stdout.trimEnd().endsWith('data: [DONE]'), cu.stderr || curlText);
}

// ---- the page ----
async function pageTests(base) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    const page = await ctx.newPage();
    const problems = [];
    // the page asks /v1/models before the test has typed the API key in: that one 401 is expected
    page.on('console', (m) => { if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(base + '/');
    check('page: loads', (await page.title()) === 'lossy chat');

    await page.click('#open-settings');
    await page.fill('#api-key', KEY);
    await page.dispatchEvent('#api-key', 'change');
    await page.fill('#system-prompt', 'You tell short stories.');
    await page.dispatchEvent('#system-prompt', 'change');
    await page.fill('#max-tokens', '60');
    await page.dispatchEvent('#max-tokens', 'change');
    await page.click('#open-settings');

    // type a message, see the answer streamed
    await page.fill('#input', 'Tell me a story about a dog.');
    await page.press('#input', 'Enter');
    await page.waitForSelector('.msg.user');
    const sawStreaming = await within(10000, async () => (await page.$('.msg.assistant.streaming')) !== null || (await page.isVisible('#send')));
    await page.waitForSelector('#send', { state: 'visible', timeout: 30000 });
    const answer = await page.textContent('.msg.assistant');
    check('page: a streamed answer appears', sawStreaming && answer.trim().length > 0 && !answer.startsWith('Error'), answer);

    // stop a long generation: the request is made endless (ignore_eos) and the stop button must end it
    await page.route('**/v1/chat/completions', async (route) => {
      const body = JSON.parse(route.request().postData());
      await route.continue({ postData: JSON.stringify({ ...body, max_tokens: 16000, ignore_eos: true, temperature: 1.2 }) });
    });
    await page.fill('#input', 'And another one, please.');
    await page.press('#input', 'Enter');
    await page.waitForSelector('#stop', { state: 'visible' });
    await within(10000, async () => ((await page.textContent('.msg.assistant:last-child')) || '').length > 20);
    const busy = (await health(base)).slots_processing;
    await page.click('#stop');
    await page.waitForSelector('#send', { state: 'visible', timeout: 10000 });
    const stoppedNote = await page.$('.msg.assistant:last-child .note');
    const freed = await within(5000, async () => (await health(base)).slots_processing === 0);
    const h = await health(base);
    check('page: stop ends the generation and frees the slot', busy === 1 && stoppedNote !== null && freed && h.requests_cancelled >= 1,
          JSON.stringify({ busy, note: stoppedNote !== null, freed, h }));
    await page.unroute('**/v1/chat/completions');
    await page.screenshot({ path: path.join(outdir, 'chat.png') });

    // new chat; conversations survive a reload
    await page.click('#new-chat');
    const empty = await page.isVisible('.empty');
    const n = await page.$$eval('#chat-list li', (li) => li.length);
    check('page: new chat', empty && n === 2, JSON.stringify({ empty, n }));
    await page.reload();
    const n2 = await page.$$eval('#chat-list li', (li) => li.length);
    await page.click('#chat-list li:nth-child(2) button.open');
    const kept = await page.$$eval('.msg', (m) => m.length);
    const keyKept = await page.inputValue('#api-key');
    check('page: conversations and settings kept in the browser', n2 === 2 && kept === 4 && keyKept === KEY, JSON.stringify({ n2, kept }));

    // a phone: the same conversation at a phone's width (the sidebar becomes a drawer)
    await page.setViewportSize({ width: 390, height: 760 });
    await sleep(300);
    const sidebarHidden = await page.evaluate(() => document.getElementById('sidebar').getBoundingClientRect().right <= 0);
    const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    await page.screenshot({ path: path.join(outdir, 'chat-phone.png') });
    await page.click('#open-sidebar');
    await sleep(300);
    const opened = await page.evaluate(() => document.getElementById('sidebar').getBoundingClientRect().left >= 0);
    await page.screenshot({ path: path.join(outdir, 'chat-phone-drawer.png') });
    await page.click('#close-sidebar');
    check('page: phone layout (drawer, no horizontal scroll)', sidebarHidden && fits && opened, JSON.stringify({ sidebarHidden, fits, opened }));
    check('page: no console errors', problems.length === 0, problems.join(' | '));
  } finally {
    await browser.close();
  }
}

let server;
try {
  server = await startServer();
  const base = 'http://127.0.0.1:' + server.port;
  await apiTests(base);
  await pageTests(base);
} catch (e) {
  check('run', false, e && e.stack ? e.stack : String(e));
} finally {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.on('exit', (code) => r(code)));
    server.kill('SIGTERM');
    const code = await Promise.race([exited, sleep(20000).then(() => 'timeout')]);
    check('server exits cleanly', code === 0, String(code) + '\n' + server.log());
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
