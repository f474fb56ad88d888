// serve_load.mjs — load generator for `lossy serve`: N concurrent streaming chat clients on loopback for a bounded
// time. Each client loops: POST /v1/chat/completions with stream + include_usage, read the stream to the end, repeat.
// Reports requests, errors (anything but a deliberate 503 queue-full), tokens, aggregate tokens/s and the p50/p99
// time to first token (request sent -> first content chunk). No npm packages: node's http module with keep-alive,
// and the stream is only scanned (the first content chunk, [DONE], the usage chunk), not parsed event by event, so
// the client spends little of the machine's CPU that the server needs.
// Usage: node serve_load.mjs URL CLIENTS SECONDS MAX_TOKENS
import http from 'node:http';

const [url, clientsArg, secondsArg, maxTokArg] = process.argv.slice(2);
const clients = Number(clientsArg || 64), seconds = Number(secondsArg || 60), maxTokens = Number(maxTokArg || 128);
const prompts = ['Tell me a story about a dog.', 'What did the cat see?', 'Once upon a time there was a princess.',
                 'Why is the sky blue?', 'Lily went to the park.', 'Tom had a red ball.', 'Write about the sea.', 'A bird sang.'];
const { hostname, port } = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
const end = Date.now() + seconds * 1000;
const ttft = [];
let requests = 0, errors = 0, full = 0, tokens = 0, firstError = '';

function one(i, k) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const body = JSON.stringify({ model: 'x', messages: [{ role: 'user', content: prompts[(i + k) % prompts.length] }], stream: true,
                                  stream_options: { include_usage: true }, max_tokens: maxTokens, seed: i * 100000 + k, temperature: 0.8 });
    const req = http.request({ hostname, port, path: '/v1/chat/completions', method: 'POST', agent,
                               headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.setEncoding('utf8');
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => {
          if (res.statusCode === 503) { full++; setTimeout(resolve, 100); } else reject(new Error('status ' + res.statusCode + ': ' + text));
        });
        return;
      }
      let tail = '', first = true;
      res.on('data', (d) => {
        // the first chunk with text: `"content":"` followed by anything but the closing quote
        const seen = tail + d; // an event may arrive in two pieces
        if (first && /"content":"[^"]/.test(seen)) { ttft.push(performance.now() - t0); first = false; }
        tail = seen.slice(-2048); // the usage chunk and [DONE] come last
      });
      res.on('end', () => {
        if (/"error"\s*:/.test(tail)) return reject(new Error('error event: ' + tail.slice(-300)));
        const m = /"completion_tokens":(\d+)/.exec(tail);
        if (!tail.includes('data: [DONE]') || !m) return reject(new Error('stream ended without usage and [DONE]'));
        requests++;
        tokens += Number(m[1]);
        resolve();
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
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
const pct = (p) => (ttft.length ? Number(ttft[Math.min(ttft.length - 1, Math.floor(p * ttft.length))].toFixed(0)) : null);
console.log(JSON.stringify({ clients, seconds: Number(wall.toFixed(1)), requests, errors, queue_full: full, tokens,
                             tokens_per_s: Number((tokens / wall).toFixed(1)), ttft_p50_ms: pct(0.5), ttft_p99_ms: pct(0.99), first_error: firstError }));
agent.destroy();
process.exit(errors ? 1 : 0);
