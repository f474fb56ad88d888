// app.js — lossy's chat page: conversations kept in localStorage, answers streamed from /v1/chat/completions
// (server-sent events), a stop button that aborts the request (the server then frees the slot), new chat, and the
// system prompt and sampling settings. Text is always inserted as text (never as HTML).
'use strict';

const $ = (id) => document.getElementById(id);
const STORE = 'lossy.chats', CURRENT = 'lossy.current', SETTINGS = 'lossy.settings';
const SETTING_FIELDS = ['system-prompt', 'temperature', 'top-p', 'top-k', 'min-p', 'max-tokens', 'seed', 'api-key'];

let chats = load(STORE, []);
let current = localStorage.getItem(CURRENT);
let controller = null; // AbortController of the answer being streamed

function load(key, fallback) {
  try {
    const v = JSON.parse(localStorage.getItem(key));
    return v === null ? fallback : v;
  } catch (e) {
    return fallback;
  }
}

function save() {
  localStorage.setItem(STORE, JSON.stringify(chats));
  if (current) localStorage.setItem(CURRENT, current);
}

function chat() {
  return chats.find((c) => c.id === current);
}

function newChat() {
  if (controller) return;
  const c = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 7), title: 'New chat', messages: [] };
  chats.unshift(c);
  current = c.id;
  save();
  render();
  $('input').focus();
}

// ---- rendering ----

function bubble(role, text, extra) {
  const d = document.createElement('div');
  d.className = 'msg ' + role + (extra ? ' ' + extra : '');
  d.textContent = text;
  return d;
}

function note(el, text) {
  const n = document.createElement('span');
  n.className = 'note';
  n.textContent = text;
  el.appendChild(n);
}

function renderList() {
  const ul = $('chat-list');
  ul.replaceChildren();
  for (const c of chats) {
    const li = document.createElement('li');
    if (c.id === current) li.className = 'active';
    const open = document.createElement('button');
    open.className = 'open';
    open.type = 'button';
    open.textContent = c.title;
    open.onclick = () => {
      if (controller) return;
      current = c.id;
      save();
      render();
      $('sidebar').classList.remove('open');
    };
    const del = document.createElement('button');
    del.className = 'delete';
    del.type = 'button';
    del.textContent = '×';
    del.setAttribute('aria-label', 'Delete ' + c.title);
    del.onclick = () => {
      if (controller) return;
      chats = chats.filter((x) => x.id !== c.id);
      if (current === c.id) current = chats.length ? chats[0].id : null;
      save();
      if (!current) newChat();
      else render();
    };
    li.append(open, del);
    ul.appendChild(li);
  }
}

function render() {
  renderList();
  const c = chat();
  $('chat-title').textContent = c ? c.title : 'New chat';
  const box = $('messages');
  box.replaceChildren();
  if (!c || c.messages.length === 0) {
    const e = document.createElement('div');
    e.className = 'empty';
    e.textContent = 'Ask anything. Answers stream as they are generated.';
    box.appendChild(e);
    return;
  }
  for (const m of c.messages) {
    const b = bubble(m.role, m.content, m.error ? 'error' : '');
    if (m.stopped) note(b, 'stopped');
    box.appendChild(b);
  }
  box.scrollTop = box.scrollHeight;
}

// ---- settings ----

function loadSettings() {
  const s = load(SETTINGS, {});
  for (const f of SETTING_FIELDS) if (s[f] !== undefined) $(f).value = s[f];
}

function saveSettings() {
  const s = {};
  for (const f of SETTING_FIELDS) s[f] = $(f).value;
  localStorage.setItem(SETTINGS, JSON.stringify(s));
}

function number(id) {
  const v = $(id).value.trim();
  if (v === '') return undefined;
  const x = Number(v);
  return Number.isFinite(x) ? x : undefined;
}

// ---- talking to the server ----

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = $('api-key').value.trim();
  if (key) h.Authorization = 'Bearer ' + key;
  return h;
}

function setBusy(busy) {
  $('send').hidden = busy;
  $('stop').hidden = !busy;
  $('new-chat').disabled = busy;
}

async function errorText(res) {
  try {
    const j = await res.json();
    return (j.error && j.error.message) || res.statusText;
  } catch (e) {
    return res.status + ' ' + res.statusText;
  }
}

async function send(text) {
  let c = chat();
  if (!c) {
    newChat();
    c = chat();
  }
  c.messages.push({ role: 'user', content: text });
  if (c.title === 'New chat') c.title = text.slice(0, 48);
  const answer = { role: 'assistant', content: '' };
  c.messages.push(answer);
  save();
  render();
  const el = $('messages').lastChild;
  el.classList.add('streaming');

  const msgs = [];
  const sys = $('system-prompt').value.trim();
  if (sys) msgs.push({ role: 'system', content: sys });
  for (const m of c.messages.slice(0, -1)) if (!m.error) msgs.push({ role: m.role, content: m.content });
  const body = { model: 'lossy', messages: msgs, stream: true };
  const opts = { temperature: 'temperature', top_p: 'top-p', top_k: 'top-k', min_p: 'min-p', max_tokens: 'max-tokens', seed: 'seed' };
  for (const [k, id] of Object.entries(opts)) {
    const v = number(id);
    if (v !== undefined) body[k] = v;
  }

  let paintQueued = false;
  const paint = () => {
    paintQueued = false;
    el.textContent = answer.content;
    const box = $('messages');
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 80) box.scrollTop = box.scrollHeight;
  };

  controller = new AbortController();
  setBusy(true);
  try {
    const res = await fetch('v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) throw new Error(await errorText(res));
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '', done = false;
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data: ')) continue;
          const data = line.slice(6);
          if (data === '[DONE]') {
            done = true;
            break;
          }
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message);
          const ch = j.choices && j.choices[0];
          if (ch && ch.delta && ch.delta.content) {
            answer.content += ch.delta.content;
            // paint at most once per frame: a fast model streams thousands of tokens a second, and touching the DOM
            // (and forcing a layout for the scroll check) per token would freeze the page, stop button included
            if (!paintQueued) {
              paintQueued = true;
              requestAnimationFrame(paint);
            }
          }
          if (ch && ch.finish_reason === 'length') answer.truncated = true;
        }
      }
    }
  } catch (e) {
    if (e.name === 'AbortError') {
      answer.stopped = true;
    } else {
      answer.error = true;
      answer.content = (answer.content ? answer.content + '\n' : '') + 'Error: ' + e.message;
    }
  } finally {
    controller = null;
    setBusy(false);
    save();
    render();
  }
}

// ---- wiring ----

function autosize() {
  const t = $('input');
  t.style.height = 'auto';
  t.style.height = Math.min(t.scrollHeight, window.innerHeight * 0.4) + 'px';
}

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('input').value.trim();
  if (!text || controller) return;
  $('input').value = '';
  autosize();
  send(text);
});
$('input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
});
$('input').addEventListener('input', autosize);
$('stop').addEventListener('click', () => controller && controller.abort());
$('new-chat').addEventListener('click', newChat);
$('open-settings').addEventListener('click', () => {
  const s = $('settings');
  s.hidden = !s.hidden;
  $('open-settings').setAttribute('aria-expanded', String(!s.hidden));
});
$('open-sidebar').addEventListener('click', () => $('sidebar').classList.add('open'));
$('close-sidebar').addEventListener('click', () => $('sidebar').classList.remove('open'));
for (const f of SETTING_FIELDS) $(f).addEventListener('change', saveSettings);
$('api-key').addEventListener('change', showModel);

function showModel() {
  fetch('v1/models', { headers: headers() })
    .then((r) => (r.ok ? r.json() : null))
    .then((j) => { $('model-name').textContent = j && j.data && j.data[0] ? 'model: ' + j.data[0].id : 'lossy'; })
    .catch(() => { $('model-name').textContent = 'lossy'; });
}

loadSettings();
if (!chat()) {
  if (chats.length) current = chats[0].id;
  else newChat();
}
render();
showModel();
