// Kiln console: the few live parts of server-rendered pages. No framework, no build step.
'use strict';
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? '';

// Live regions: re-fetch this page's fragment and swap it while something still runs.
for (const el of document.querySelectorAll('[data-live]')) {
  const every = Number(el.dataset.every || 2000);
  const tick = async () => {
    if (el.dataset.done === '1') return;
    try {
      const url = new URL(location.href);
      url.searchParams.set('partial', el.dataset.live);
      const res = await fetch(url, { headers: { accept: 'text/html' } });
      if (res.ok) {
        const html = await res.text();
        const tpl = document.createElement('template');
        tpl.innerHTML = html;
        const fresh = tpl.content.firstElementChild;
        if (fresh) {
          el.innerHTML = fresh.innerHTML;
          el.dataset.done = fresh.dataset.done || '0';
        }
      }
    } catch { /* next tick */ }
    if (el.dataset.done !== '1') setTimeout(tick, every);
  };
  if (el.dataset.done !== '1') setTimeout(tick, every);
}

// Build log: Server-Sent Events, line numbers with anchors, search, follow while at the bottom.
const log = document.getElementById('log');
if (log) {
  const search = document.getElementById('log-search');
  const hits = document.getElementById('log-hits');
  const follow = document.getElementById('log-follow');
  let n = 0;
  const ANSI = /\x1b\[[0-9;]*m/g;
  const matches = (text) => !search.value || text.toLowerCase().includes(search.value.toLowerCase());
  const refreshHits = () => {
    let count = 0;
    for (const line of log.children) {
      const hit = !!search.value && matches(line.dataset.text);
      line.classList.toggle('hit', hit);
      line.classList.toggle('hidden', !!search.value && !hit);
      if (hit) count++;
    }
    hits.textContent = search.value ? `${count} matching lines` : `${n} lines`;
  };
  search.addEventListener('input', refreshHits);
  const es = new EventSource(log.dataset.src);
  // One event holds the lines of one stored log chunk, one data line per log line.
  es.addEventListener('log', (ev) => {
    for (const raw of ev.data.split('\n')) appendLine(raw);
    if (!search.value) hits.textContent = `${n} lines`;
    if (follow.checked) log.scrollTop = log.scrollHeight;
  });
  const appendLine = (raw) => {
    n++;
    const text = raw.replace(ANSI, '');
    const line = document.createElement('span');
    line.className = 'line';
    line.id = `L${n}`;
    line.dataset.text = text;
    const a = document.createElement('a');
    a.href = `#L${n}`;
    a.textContent = String(n);
    a.setAttribute('aria-label', `line ${n}`);
    line.append(a, document.createTextNode(text));
    if (search.value) {
      const hit = matches(text);
      line.classList.toggle('hit', hit);
      line.classList.toggle('hidden', !hit);
    }
    log.append(line);
  };
  es.addEventListener('end', (ev) => {
    es.close();
    log.dataset.ended = ev.data;
    document.getElementById('log-state').textContent = `Log complete (${ev.data}).`;
    if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  });
}

// Rule editor: preview the rule as it is typed (debounced), against the ref given.
for (const form of document.querySelectorAll('form[data-preview]')) {
  const out = form.querySelector('.preview');
  let timer;
  let seq = 0;
  const run = async () => {
    const mine = ++seq;
    const body = new URLSearchParams(new FormData(form));
    const res = await fetch(form.dataset.preview, { method: 'POST', body, headers: { 'x-csrf-token': csrf } });
    if (mine !== seq) return;
    const p = await res.json().catch(() => null);
    if (!p || !res.ok) {
      out.className = 'preview nomatch';
      out.textContent = p?.error?.message ?? `Preview failed (HTTP ${res.status})`;
      return;
    }
    out.className = `preview ${p.matches ? 'match' : 'nomatch'}`;
    out.replaceChildren();
    const head = document.createElement('strong');
    head.textContent = p.matches ? `Builds ${p.ref.type} ${p.ref.name} → ` : `Does not build ${p.ref.type} ${p.ref.name}: `;
    out.append(head);
    if (p.matches) for (const t of p.tags) { const c = document.createElement('code'); c.textContent = t; out.append(c, ' '); }
    else out.append(p.reason);
  };
  form.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, 250); });
  run();
}

// Copy buttons (pull commands).
for (const b of document.querySelectorAll('button[data-copy]')) {
  b.addEventListener('click', async () => {
    await navigator.clipboard?.writeText(b.dataset.copy).catch(() => {});
    b.textContent = 'Copied';
  });
}
