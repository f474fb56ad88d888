// serve_load.mjs — load generator for `lossy serve`: N concurrent streaming chat clients on loopback for a bounded
// time. Each client loops: POST /v1/chat/completions with stream + include_usage, read the stream to the end, repeat.
// Reports requests, errors (anything but a deliberate 503 queue-full), tokens, aggregate tokens/s and the p50/p99
// time to first token. No npm packages: node's built-in fetch. Usage: node serve_load.mjs URL CLIENTS SECONDS MAX_TOKENS
const [url, clientsArg, secondsArg, maxTokArg] = process.argv.slice(2);
const clients = Number(clientsArg || 64), seconds = Number(secondsArg || 60), maxTokens = Number(maxTokArg || 128);
const prompts = ['Tell me a story about a dog.', 'What did the cat see?', 'Once upon a time there was a princess.',
                 'Why is the sky blue?', 'Lily went to the park.', 'Tom had a red ball.', 'Write about the sea.', 'A bird sang.'];
const end = Date.now() + seconds * 1000;
const ttft = [];
let requests = 0, errors = 0, full = 0, tokens = 0, firstError = '';

async function one(i, k) {
  const t0 = performance.now();
  const body = { model: 'x', messages: [{ role: 'user', content: prompts[(i + k) % prompts.length] }], stream: true,
                 stream_options: { include_usage: true }, max_tokens: maxTokens, seed: i * 100000 + k, temperature: 0.8 };
  const res = await fetch(url + '/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status === 503) {
    await res.text();
    full++;
    await new Promise((r) => setTimeout(r, 100));
    return;
  }
  if (!res.ok) throw new Error('status ' + res.status + ': ' + (await res.text()));
  const reader = res.body.getReader(), dec = new TextDecoder();
  let buf = '', first = true, done = false, usage = null;
  for (;;) {
    const { value, done: eof } = await reader.read();
    if (eof) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      if (!line.startsWith('data: ')) continue;
      if (line === 'data: [DONE]') { done = true; continue; }
      const j = JSON.parse(line.slice(6));
      if (j.error) throw new Error(j.error.message);
      if (first && j.choices[0]?.delta?.content) { ttft.push(performance.now() - t0); first = false; }
      if (j.usage) usage = j.usage;
    }
  }
  if (!done || !usage) throw new Error('stream ended without [DONE] and usage');
  requests++;
  tokens += usage.completion_tokens;
}

async function client(i) {
  for (let k = 0; Date.now() < end; k++) {
    try {
      await one(i, k);
    } catch (e) {
      errors++;
      if (!firstError) firstError = String(e);
    }
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
const wall = (performance.now() - t0) / 1000;
ttft.sort((a, b) => a - b);
const pct = (p) => (ttft.length ? ttft[Math.min(ttft.length - 1, Math.floor(p * ttft.length))].toFixed(0) : 'n/a');
console.log(JSON.stringify({ clients, seconds: Number(wall.toFixed(1)), requests, errors, queue_full: full, tokens,
                             tokens_per_s: Number((tokens / wall).toFixed(1)), ttft_p50_ms: pct(0.5), ttft_p99_ms: pct(0.99), first_error: firstError }));
process.exit(errors ? 1 : 0);
