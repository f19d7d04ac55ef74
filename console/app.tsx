/** @jsxImportSource hono/jsx */
// The web console, served by the API process at `/`: pages rendered on the server with Hono's JSX,
// a small script for the live parts (console/assets/console.js), no CDN, no fonts fetched. Every
// page reads and writes through the public API (the typed client of api/client.ts, called in
// process with the signed-in token), so the console can do nothing the API would not allow.
//
// Sign-in: the token is kept in an HttpOnly, SameSite=Strict cookie, encrypted (AES-GCM) with a
// key derived from KILN_SECRET_KEY, so any API process can read it and nothing else can. Writes
// need a CSRF token derived from the session (a hidden form field or the x-csrf-token header) and
// a same-origin request.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono, type Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { createMiddleware } from 'hono/factory';
import type { Child, FC } from 'hono/jsx';
import { kilnClient, type BuildBody, type KilnClient } from '../api/client';
import { BUILD_STATUSES, isTerminal } from '../domain/builds';
import { PLATFORMS } from '../domain/platforms';
import { decryptSecret, encryptSecret } from '../db/crypto';

const ASSETS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'assets');
const ASSETS: Record<string, string> = { 'console.css': 'text/css; charset=utf-8', 'console.js': 'text/javascript; charset=utf-8' };
const SESSION_COOKIE = 'kiln_session';
const SESSION_HOURS = 12;
const CONSOLE_PATHS = ['/', '/logout', '/namespaces', '/namespaces/*', '/repositories', '/repositories/*', '/rules/*', '/builds', '/builds/*', '/admin/*'];

export interface ConsoleOptions {
  secretKey: string;
  /** host:port of the registry, for pull commands. */
  registry: string;
  /** Calls the public API in process (the app's own `request`). */
  request: (input: string, init?: RequestInit) => Response | Promise<Response>;
}

interface Session {
  token: string;
  admin: boolean;
  /** The namespace of a namespace token. */
  namespace: string | null;
}

type Env = { Variables: { session: Session; api: KilnClient; csrf: string } };

/** An API error, shown to the person with what they can do about it. */
class ConsoleError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code = 'error',
  ) {
    super(message);
  }
}

type Success<R> = R extends { status: infer S; json(): Promise<infer T> } ? (S extends 200 | 201 | 202 ? T : never) : never;

/** The body of a 2xx answer, else a ConsoleError carrying the API's message. */
async function data<R extends { ok: boolean; status: number; json(): Promise<unknown> }>(p: Promise<R>): Promise<Success<R>> {
  const res = await p;
  const body = (await res.json().catch(() => null)) as any;
  if (!res.ok) throw new ConsoleError(res.status, body?.error?.message ?? `HTTP ${res.status}`, body?.error?.code);
  return body as Success<R>;
}

const sessionKey = (secretKey: string) => createHash('sha256').update(`kiln-console-session:${secretKey}`).digest('hex');

function csrfFor(secretKey: string, cookie: string): string {
  return createHmac('sha256', sessionKey(secretKey)).update(`csrf:${cookie}`).digest('base64url');
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const fmtTime = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—');
const fmtMs = (ms: number | null) => (ms === null ? '…' : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);
const fmtBytes = (n: number) => (n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);
const short = (digest: string | null | undefined) => (digest ? digest.replace(/^sha256:/, '').slice(0, 12) : '—');

// ---------------------------------------------------------------------------------------------
// Layout and pieces

const Layout: FC<{ title: string; session?: Session; csrf?: string; children?: Child }> = ({ title, session, csrf, children }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      {csrf ? <meta name="csrf-token" content={csrf} /> : null}
      <title>{`${title} · Kiln`}</title>
      <link rel="stylesheet" href="/console/assets/console.css" />
      <script src="/console/assets/console.js" defer></script>
    </head>
    <body>
      <a class="skip" href="#main">Skip to content</a>
      <header>
        <a class="brand" href="/">Kiln</a>
        {session ? (
          <>
            <nav aria-label="Main">
              <ul>
                <li><a href="/namespaces">Namespaces</a></li>
                <li><a href="/builds">Builds</a></li>
                <li><a href="/builds/new">New build</a></li>
                {session.admin ? <li><a href="/admin/tokens">Tokens</a></li> : null}
                <li><a href="/docs">API docs</a></li>
              </ul>
            </nav>
            <form method="post" action="/logout">
              <input type="hidden" name="_csrf" value={csrf} />
              <span class="muted">{session.admin ? 'admin' : `namespace ${session.namespace}`}</span>{' '}
              <button class="secondary" type="submit">Sign out</button>
            </form>
          </>
        ) : null}
      </header>
      <main id="main">{children}</main>
    </body>
  </html>
);

const Csrf: FC<{ value: string }> = ({ value }) => <input type="hidden" name="_csrf" value={value} />;

const Status: FC<{ status: string }> = ({ status }) => <span class={`status status-${status}`}>{status.replace('_', ' ')}</span>;

function BuildRows({ items }: { items: BuildBody[] }) {
  return (
    <>
      {items.map((b) => (
        <tr>
          <td><a href={`/builds/${b.id}`}><code>{b.id.slice(0, 8)}</code></a></td>
          <td>{b.repository}</td>
          <td><Status status={b.status} /> {b.phase && !isTerminal(b.status) ? <span class="muted">{b.phase}</span> : null}</td>
          <td>{b.trigger}</td>
          <td>{b.tags.join(', ') || <span class="muted">from rule</span>}</td>
          <td>{b.platforms.map((p) => `${p.platform.replace('linux/', '')} ${p.progress.completedSteps}/${p.progress.totalSteps}`).join(' · ')}</td>
          <td>{fmtTime(b.createdAt)}</td>
        </tr>
      ))}
    </>
  );
}

function BuildStatusBlock({ b, csrf }: { b: BuildBody; csrf: string }) {
  const done = isTerminal(b.status);
  return (
    <div id="build-status" data-live="status" data-every="1000" data-done={done ? '1' : '0'} aria-live="polite">
      <div class="actions">
        {done ? null : (
          <form class="inline" method="post" action={`/builds/${b.id}/cancel`}>
            <Csrf value={csrf} />
            <button type="submit" class="danger">Cancel build</button>
          </form>
        )}
        <form class="inline" method="post" action={`/builds/${b.id}/rebuild`}>
          <Csrf value={csrf} />
          <button type="submit" class="secondary">Rebuild</button>
        </form>
      </div>
      <dl class="facts">
        <dt>Status</dt>
        <dd>
          <Status status={b.status} /> {b.phase && !done ? <span>phase <strong>{b.phase}</strong></span> : null}
          {b.queuePosition ? <span>waiting for a build slot: position <strong>{b.queuePosition}</strong> in its namespace</span> : null}
        </dd>
        <dt>Repository</dt>
        <dd>{b.repository}</dd>
        <dt>Trigger</dt>
        <dd>{b.trigger} ({b.creationMethod})</dd>
        {b.source ? (<><dt>Source</dt><dd><code>{b.source.url}</code> {b.source.ref} {b.source.commit ? <code>{b.source.commit.slice(0, 12)}</code> : null}</dd></>) : null}
        {b.context ? (<><dt>Local context</dt><dd><code>{b.context.digest}</code> ({fmtBytes(b.context.size)}), Dockerfile <code>{b.context.dockerfile}</code></dd></>) : null}
        <dt>Tags</dt>
        <dd>{b.tags.join(', ') || '—'}</dd>
        <dt>Image</dt>
        <dd>{b.manifestDigest ? <code id="manifest-digest">{b.manifestDigest}</code> : '—'}</dd>
        <dt>Created</dt>
        <dd>{fmtTime(b.createdAt)} · started {fmtTime(b.startedAt)} · finished {fmtTime(b.finishedAt)}</dd>
        {b.temporalUiUrl ? (<><dt>Workflow</dt><dd><a href={b.temporalUiUrl}>{b.workflowId} in the Temporal UI</a></dd></>) : null}
      </dl>
      {b.error ? (
        <div class="notice error" role="alert">
          <strong>{b.error.code}</strong>: {b.error.message}
        </div>
      ) : null}
      <h2>Platforms</h2>
      <div class="platforms">
        {b.platforms.map((p) => (
          <section class="platform" aria-label={p.platform}>
            <div>
              <strong>{p.platform}</strong> <Status status={p.status} />{' '}
              <span class="progress">{p.progress.completedSteps}/{p.progress.totalSteps} steps, {p.steps.filter((s) => s.cached).length} cached</span>
            </div>
            {p.digest ? <div class="muted">digest <code>{p.digest}</code></div> : null}
            <ol class="steps">
              {p.steps.map((s) => (
                <li class={s.cached ? 'cached' : s.completedAt ? 'done' : s.startedAt ? 'running' : 'waiting'}>
                  <span class="name">{s.name}</span>
                  <span class="dur">{s.cached ? '' : s.completedAt ? fmtMs(s.durationMs) : s.startedAt ? 'running' : 'waiting'}</span>
                </li>
              ))}
            </ol>
          </section>
        ))}
      </div>
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Rule forms

interface RuleLike {
  id?: string;
  type: 'branch' | 'tag';
  match: string;
  contextDir?: string;
  dockerfile?: string;
  platforms: string[];
  tags: { template: string; buildTime?: string; commitIdLength?: number }[];
  enabled?: boolean;
  noCache?: boolean;
  semver?: boolean;
  paths?: string[];
}

/** Form fields → the rule body the API takes (the live preview parses the same way). */
function ruleFromForm(f: Record<string, string | string[]>) {
  const one = (k: string) => (Array.isArray(f[k]) ? (f[k] as string[])[0] : (f[k] as string | undefined)) ?? '';
  const all = (k: string) => (Array.isArray(f[k]) ? (f[k] as string[]) : f[k] ? [f[k] as string] : []);
  const tags: { template: string; buildTime?: 'yyyyMMdd' | 'yyyyMMddHHmm'; commitIdLength?: number }[] = [];
  for (let i = 0; i < 5; i++) {
    const template = one(`tag${i}`).trim();
    if (!template) continue;
    const buildTime = one(`tag${i}time`);
    const commit = Number.parseInt(one(`tag${i}commit`), 10);
    tags.push({
      template,
      ...(buildTime === 'yyyyMMdd' || buildTime === 'yyyyMMddHHmm' ? { buildTime: buildTime as 'yyyyMMdd' | 'yyyyMMddHHmm' } : {}),
      ...(Number.isFinite(commit) && commit > 0 ? { commitIdLength: commit } : {}),
    });
  }
  return {
    type: (one('type') === 'tag' ? 'tag' : 'branch') as 'branch' | 'tag',
    match: one('match'),
    contextDir: one('contextDir') || '/',
    dockerfile: one('dockerfile') || 'Dockerfile',
    platforms: all('platforms').filter((p): p is (typeof PLATFORMS)[number] => (PLATFORMS as readonly string[]).includes(p)),
    tags,
    enabled: one('enabled') === 'on',
    noCache: one('noCache') === 'on',
    semver: one('semver') === 'on',
    paths: one('paths').split(',').map((s) => s.trim()).filter(Boolean),
  };
}

const RuleForm: FC<{ repoId: string; csrf: string; rule?: RuleLike; action: string; submit: string }> = ({ repoId, csrf, rule, action, submit }) => {
  const r: RuleLike = rule ?? { type: 'branch', match: '', platforms: ['linux/amd64'], tags: [{ template: '' }], enabled: true };
  const uid = r.id ? r.id.slice(0, 8) : 'new';
  return (
    <form class="stack" method="post" action={action} data-preview={`/repositories/${repoId}/rules/preview`}>
      <Csrf value={csrf} />
      {r.id ? <input type="hidden" name="ruleId" value={r.id} /> : null}
      <div class="row">
        <div>
          <label for={`type-${uid}`}>Type</label>
          <select id={`type-${uid}`} name="type">
            <option value="branch" selected={r.type === 'branch'}>branch</option>
            <option value="tag" selected={r.type === 'tag'}>tag</option>
          </select>
        </div>
        <div>
          <label for={`match-${uid}`}>Match (name or regular expression)</label>
          <input type="text" id={`match-${uid}`} name="match" value={r.match} required placeholder="release-(?<imageTag>\w*)" />
        </div>
      </div>
      <div class="row">
        <div><label for={`ctx-${uid}`}>Context directory</label><input type="text" id={`ctx-${uid}`} name="contextDir" value={r.contextDir ?? '/'} /></div>
        <div><label for={`df-${uid}`}>Dockerfile</label><input type="text" id={`df-${uid}`} name="dockerfile" value={r.dockerfile ?? 'Dockerfile'} /></div>
        <div><label for={`paths-${uid}`}>Path filters (comma-separated globs)</label><input type="text" id={`paths-${uid}`} name="paths" value={(r.paths ?? []).join(', ')} /></div>
      </div>
      <fieldset>
        <legend>Tag templates</legend>
        {[0, 1, 2, 3, 4].map((i) => {
          const t = r.tags[i];
          if (i > 0 && !t && i > r.tags.length) return null;
          return (
            <div class="row">
              <div><label for={`tag${i}-${uid}`}>Template {i + 1}</label><input type="text" id={`tag${i}-${uid}`} name={`tag${i}`} value={t?.template ?? ''} placeholder="${imageTag}" /></div>
              <div>
                <label for={`tag${i}time-${uid}`}>Build time</label>
                <select id={`tag${i}time-${uid}`} name={`tag${i}time`}>
                  <option value="">none</option>
                  <option value="yyyyMMdd" selected={t?.buildTime === 'yyyyMMdd'}>yyyyMMdd</option>
                  <option value="yyyyMMddHHmm" selected={t?.buildTime === 'yyyyMMddHHmm'}>yyyyMMddHHmm</option>
                </select>
              </div>
              <div><label for={`tag${i}commit-${uid}`}>Commit id characters</label><input type="number" min="0" max="40" id={`tag${i}commit-${uid}`} name={`tag${i}commit`} value={t?.commitIdLength ? String(t.commitIdLength) : ''} /></div>
            </div>
          );
        })}
      </fieldset>
      <fieldset class="checks">
        <legend>Platforms and options</legend>
        {PLATFORMS.map((p) => (
          <label><input type="checkbox" name="platforms" value={p} checked={r.platforms.includes(p)} /> {p}</label>
        ))}
        <label><input type="checkbox" name="enabled" checked={r.enabled !== false} /> enabled</label>
        <label><input type="checkbox" name="semver" checked={!!r.semver} /> semver tags</label>
        <label><input type="checkbox" name="noCache" checked={!!r.noCache} /> no cache</label>
      </fieldset>
      <div>
        <label for={`ref-${uid}`}>Preview with ref</label>
        <input type="text" id={`ref-${uid}`} name="previewRef" value={r.type === 'tag' ? 'v1.0.0' : r.match && !/[()[\]*+?{}^$|\\]/.test(r.match) ? r.match : 'main'} />
        <output class="preview" aria-live="polite" for={`match-${uid} ref-${uid}`}>…</output>
      </div>
      <div><button type="submit">{submit}</button></div>
    </form>
  );
};

// ---------------------------------------------------------------------------------------------

export function consoleRoutes(opts: ConsoleOptions) {
  const app = new Hono<Env>();
  const clientFor = (token: string) =>
    kilnClient('http://kiln.console', token, { fetch: ((input: string | URL | Request, init?: RequestInit) => opts.request(String(input), init)) as typeof fetch });

  function readSession(c: Context): { session: Session; cookie: string } | null {
    const cookie = getCookie(c, SESSION_COOKIE);
    if (!cookie) return null;
    try {
      const s = JSON.parse(decryptSecret(sessionKey(opts.secretKey), cookie)) as Session & { exp: number };
      if (s.exp < Date.now()) return null;
      return { session: { token: s.token, admin: s.admin, namespace: s.namespace }, cookie };
    } catch {
      return null;
    }
  }

  const page = (c: Context<Env>, title: string, body: Child, status: 200 | 201 | 400 | 403 | 404 | 409 | 500 = 200) =>
    c.html(<Layout title={title} session={c.get('session')} csrf={c.get('csrf')}>{body}</Layout>, status);

  app.get('/console/assets/:file', async (c) => {
    const type = ASSETS[c.req.param('file')];
    if (!type) return c.notFound();
    return c.body(await readFile(path.join(ASSETS_DIR, c.req.param('file'))), 200, { 'content-type': type, 'cache-control': 'public, max-age=300' });
  });

  app.get('/login', (c) =>
    c.html(
      <Layout title="Sign in">
        <h1>Sign in to Kiln</h1>
        {c.req.query('error') ? <div class="notice error" role="alert">{c.req.query('error')}</div> : null}
        <form class="stack" method="post" action="/login">
          <input type="hidden" name="next" value={c.req.query('next') ?? '/'} />
          <div>
            <label for="token">API token</label>
            <input type="password" id="token" name="token" autocomplete="current-password" required autofocus />
            <p class="muted">The admin token printed by <code>npm start</code>, or a namespace token.</p>
          </div>
          <div><button type="submit">Sign in</button></div>
        </form>
      </Layout>,
    ),
  );

  app.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const token = String(form.token ?? '').trim();
    const next = String(form.next ?? '/');
    const safeNext = next.startsWith('/') && !next.startsWith('//') ? next : '/';
    const api = clientFor(token);
    const res = token ? await api.namespaces.$get({ query: {} }) : null;
    if (!res || res.status !== 200) return c.redirect(`/login?error=${encodeURIComponent('That token is not valid.')}&next=${encodeURIComponent(safeNext)}`, 303);
    // The admin token may create namespace tokens; a namespace token may not (403 tells them apart).
    const probe = await opts.request('http://kiln.console/api/v1/namespaces', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    const admin = probe.status !== 403;
    const namespaces = (await res.json()).items;
    const session: Session & { exp: number } = { token, admin, namespace: admin ? null : (namespaces[0]?.name ?? null), exp: Date.now() + SESSION_HOURS * 3600_000 };
    setCookie(c, SESSION_COOKIE, encryptSecret(sessionKey(opts.secretKey), JSON.stringify(session)), {
      httpOnly: true,
      sameSite: 'Strict',
      path: '/',
      secure: new URL(c.req.url).protocol === 'https:',
      maxAge: SESSION_HOURS * 3600,
    });
    return c.redirect(safeNext, 303);
  });

  // Everything below needs a session; writes need the CSRF token and a same-origin request.
  // Mounted at `/` beside the API: only the console's own paths pass through here (a catch-all
  // would also be the last route every API request matched, which names its metrics).
  const requireSession = createMiddleware<Env>(async (c, next) => {
    const found = readSession(c);
    if (!found) {
      if (c.req.method === 'GET') return c.redirect(`/login?next=${encodeURIComponent(c.req.path)}`, 303);
      return c.json({ error: { code: 'unauthorized', message: 'Sign in first' } }, 401);
    }
    const csrf = csrfFor(opts.secretKey, found.cookie);
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const origin = c.req.header('origin');
      const site = c.req.header('sec-fetch-site');
      if ((origin && origin !== new URL(c.req.url).origin) || (site && site !== 'same-origin' && site !== 'none')) {
        return c.text('Cross-site request refused', 403);
      }
      const type = c.req.header('content-type') ?? '';
      const given = c.req.header('x-csrf-token') ?? (type.includes('form') ? String((await c.req.parseBody())._csrf ?? '') : '');
      if (!given || !sameToken(given, csrf)) return c.text('Missing or invalid CSRF token; reload the page', 403);
    }
    c.set('session', found.session);
    c.set('csrf', csrf);
    c.set('api', clientFor(found.session.token));
    await next();
  });
  for (const p of CONSOLE_PATHS) app.use(p, requireSession);

  app.onError((err, c) => {
    if (err instanceof ConsoleError) {
      const status = ([400, 403, 404, 409].includes(err.status) ? err.status : 500) as 400 | 403 | 404 | 409 | 500;
      if (c.req.header('x-csrf-token')) return c.json({ error: { code: err.code, message: err.message } }, status);
      return page(
        c,
        'Error',
        <>
          <h1>That did not work</h1>
          <div class="notice error" role="alert">{err.message} <span class="muted">({err.code}, HTTP {err.status})</span></div>
          <p><a href="javascript:history.back()">Back</a></p>
        </>,
        status,
      );
    }
    console.error('[console]', err);
    return c.text('Internal error', 500);
  });

  app.post('/logout', (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    return c.redirect('/login', 303);
  });

  app.get('/', (c) => c.redirect('/namespaces', 303));

  app.get('/namespaces', async (c) => {
    const { items } = await data(c.get('api').namespaces.$get({ query: {} }));
    return page(
      c,
      'Namespaces',
      <>
        <h1>Namespaces</h1>
        <ul>
          {items.map((n) => (
            <li><a href={`/namespaces/${n.name}`}>{n.name}</a> <span class="muted">default {n.defaultVisibility}{n.defaultImmutableTags ? ', immutable tags' : ''}</span></li>
          ))}
        </ul>
        {items.length === 0 ? <p class="muted">No namespaces yet.</p> : null}
        {c.get('session').admin ? (
          <>
            <h2>New namespace</h2>
            <form class="stack" method="post" action="/namespaces">
              <Csrf value={c.get('csrf')} />
              <div><label for="ns-name">Name</label><input type="text" id="ns-name" name="name" required pattern="[a-z0-9]+([._-][a-z0-9]+)*" /></div>
              <div><button type="submit">Create namespace</button></div>
            </form>
          </>
        ) : null}
      </>,
    );
  });

  app.post('/namespaces', async (c) => {
    const form = await c.req.parseBody();
    const ns = await data(c.get('api').namespaces.$post({ json: { name: String(form.name ?? '') } }));
    return c.redirect(`/namespaces/${ns.name}`, 303);
  });

  app.get('/namespaces/:ns', async (c) => {
    const ns = c.req.param('ns');
    const { items } = await data(c.get('api').repositories.$get({ query: { namespace: ns, limit: '100' } as never }));
    return page(
      c,
      ns,
      <>
        <h1>Namespace {ns}</h1>
        <div class="table-wrap">
          <table>
            <caption class="muted">Repositories</caption>
            <thead><tr><th scope="col">Repository</th><th scope="col">Visibility</th><th scope="col">Source</th><th scope="col">Summary</th></tr></thead>
            <tbody>
              {items.map((r) => (
                <tr>
                  <td><a href={`/repositories/${r.id}`}>{r.path}</a></td>
                  <td>{r.visibility}</td>
                  <td>{r.source ? `${r.source.provider}: ${r.source.url}` : '—'}</td>
                  <td>{r.summary}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <p><a href={`/builds?namespace=${ns}`}>Builds of {ns}</a></p>
        <h2>New repository</h2>
        <form class="stack" method="post" action="/repositories">
          <Csrf value={c.get('csrf')} />
          <input type="hidden" name="namespace" value={ns} />
          <div class="row">
            <div><label for="repo-name">Name</label><input type="text" id="repo-name" name="name" required /></div>
            <div>
              <label for="repo-vis">Visibility</label>
              <select id="repo-vis" name="visibility"><option value="private">private</option><option value="public">public</option></select>
            </div>
          </div>
          <div><label for="repo-summary">Summary</label><input type="text" id="repo-summary" name="summary" /></div>
          <div class="row">
            <div>
              <label for="repo-provider">Code source</label>
              <select id="repo-provider" name="provider">
                <option value="">none</option>
                {['github', 'gitlab', 'gitee', 'bitbucket', 'git'].map((p) => <option value={p}>{p}</option>)}
              </select>
            </div>
            <div><label for="repo-url">Clone URL</label><input type="text" id="repo-url" name="url" placeholder="https://github.com/acme/web.git" /></div>
            <div><label for="repo-token">Access token (optional)</label><input type="password" id="repo-token" name="token" autocomplete="off" /></div>
          </div>
          <div class="checks"><label><input type="checkbox" name="immutableTags" /> immutable tags</label></div>
          <div><button type="submit">Create repository</button></div>
        </form>
      </>,
    );
  });

  app.post('/repositories', async (c) => {
    const f = await c.req.parseBody();
    const provider = String(f.provider ?? '');
    const repo = await data(
      c.get('api').repositories.$post({
        json: {
          namespace: String(f.namespace ?? ''),
          name: String(f.name ?? ''),
          visibility: f.visibility === 'public' ? 'public' : 'private',
          immutableTags: f.immutableTags === 'on',
          summary: String(f.summary ?? ''),
          ...(provider
            ? { source: { provider: provider as 'github', url: String(f.url ?? ''), ...(f.token ? { token: String(f.token) } : {}) } }
            : {}),
        },
      }),
    );
    // The generated webhook secret is shown on this one page, never again.
    return repositoryPage(c, repo.id, repo.source?.webhookSecret);
  });

  async function repositoryPage(c: Context<Env>, id: string, webhookSecret?: string) {
    const api = c.get('api');
    const [repo, rules, tags] = await Promise.all([
      data(api.repositories[':id'].$get({ param: { id } })),
      data(api.repositories[':id'].rules.$get({ param: { id } })).catch(() => ({ items: [] })),
      data(api.repositories[':id'].tags.$get({ param: { id } })),
    ]);
    // Platforms of each tag: those of the build that pushed it.
    const buildIds = [...new Set(tags.items.map((t) => t.buildId).filter((b): b is string => !!b))];
    const builds = new Map(
      (await Promise.all(buildIds.map((b) => data(api.builds[':id'].$get({ param: { id: b } })).catch(() => null))))
        .filter((b): b is BuildBody => !!b)
        .map((b) => [b.id, b]),
    );
    const csrf = c.get('csrf');
    return page(
      c,
      repo.path,
      <>
        <h1>{repo.path}</h1>
        <p class="muted">{repo.summary}</p>
        <dl class="facts">
          <dt>Visibility</dt><dd>{repo.visibility}{repo.immutableTags ? ', immutable tags' : ''}{repo.acceleratedImages ? ', accelerated images' : ''}</dd>
          <dt>Code source</dt><dd>{repo.source ? <><code>{repo.source.url}</code> ({repo.source.provider}{repo.source.hasToken ? ', with access token' : ''})</> : 'none'}</dd>
          {repo.source?.webhookUrl ? (<><dt>Webhook URL</dt><dd><code id="webhook-url">{repo.source.webhookUrl}</code></dd></>) : null}
          <dt>Builds</dt><dd><a href={`/builds?repository=${repo.path}`}>builds of {repo.path}</a> · <a href={`/builds/new?repository=${repo.path}`}>start an inline build</a></dd>
        </dl>
        {webhookSecret ? (
          <div class="notice" role="status">
            <p><strong>Webhook secret</strong> (shown once; set it with the webhook URL in your git host):</p>
            <p class="secret" id="webhook-secret">{webhookSecret}</p>
          </div>
        ) : null}

        <h2 id="tags">Image tags</h2>
        <div class="table-wrap">
          <table>
            <thead><tr><th scope="col">Tag</th><th scope="col">Digest</th><th scope="col">Platforms</th><th scope="col">Created by</th><th scope="col">When</th><th scope="col">Pull</th></tr></thead>
            <tbody>
              {tags.items.map((t) => {
                const pull = `docker pull ${opts.registry}/${repo.path}:${t.tag}`;
                const b = t.buildId ? builds.get(t.buildId) : undefined;
                return (
                  <tr data-tag={t.tag}>
                    <td><strong>{t.tag}</strong></td>
                    <td><code class="digest">{t.digest}</code></td>
                    <td>{b ? b.platforms.map((p) => p.platform).join(', ') : '—'}</td>
                    <td>{t.creationMethod}{t.buildId ? <> (<a href={`/builds/${t.buildId}`}>build</a>)</> : null}</td>
                    <td>{fmtTime(t.updatedAt)}</td>
                    <td><code>{pull}</code> <button type="button" class="secondary" data-copy={pull} aria-label={`Copy pull command for ${t.tag}`}>Copy</button></td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        {tags.items.length === 0 ? <p class="muted">No tags yet.</p> : null}

        <h2 id="rules">Build rules</h2>
        {repo.source ? null : <p class="muted">Bind a code source to this repository to add build rules.</p>}
        {rules.items.map((r: any) => (
          <details class="rule">
            <summary>
              <strong>{r.type}</strong> <code>{r.match}</code> → {r.tags.map((t: any) => t.template).join(', ')} {r.enabled ? '' : '(disabled)'}
            </summary>
            <RuleForm repoId={repo.id} csrf={csrf} rule={r} action={`/rules/${r.id}`} submit="Save rule" />
            <div class="row">
              <form class="inline" method="post" action={`/rules/${r.id}/build`}>
                <Csrf value={csrf} />
                <label for={`buildref-${r.id}`}>Ref to build</label>
                <input type="text" id={`buildref-${r.id}`} name="ref" value={r.regex ? '' : r.match} />
                <button type="submit" class="secondary">Build now</button>
              </form>
              <form class="inline" method="post" action={`/rules/${r.id}/delete`}>
                <Csrf value={csrf} />
                <input type="hidden" name="repositoryId" value={repo.id} />
                <button type="submit" class="danger">Delete rule</button>
              </form>
            </div>
          </details>
        ))}
        {repo.source ? (
          <>
            <h3>New rule</h3>
            <RuleForm repoId={repo.id} csrf={csrf} action={`/repositories/${repo.id}/rules`} submit="Create rule" />
          </>
        ) : null}
      </>,
    );
  }

  app.get('/repositories/:id', (c) => repositoryPage(c, c.req.param('id')));

  app.post('/repositories/:id/rules', async (c) => {
    const id = c.req.param('id');
    await data(c.get('api').repositories[':id'].rules.$post({ param: { id }, json: ruleFromForm((await c.req.parseBody({ all: true })) as never) }));
    return c.redirect(`/repositories/${id}#rules`, 303);
  });

  app.post('/repositories/:id/rules/preview', async (c) => {
    const id = c.req.param('id');
    const f = (await c.req.parseBody({ all: true })) as Record<string, string | string[]>;
    const rule = ruleFromForm(f);
    const ref = String(f.previewRef ?? '').trim() || 'main';
    const res = await c.get('api').repositories[':id'].rules.preview.$post({ param: { id }, json: { rule, ref } });
    return c.json(await res.json(), res.status as 200);
  });

  app.post('/rules/:id', async (c) => {
    const id = c.req.param('id');
    const rule = await data(c.get('api').rules[':id'].$patch({ param: { id }, json: ruleFromForm((await c.req.parseBody({ all: true })) as never) }));
    return c.redirect(`/repositories/${rule.repositoryId}#rules`, 303);
  });

  app.post('/rules/:id/delete', async (c) => {
    const id = c.req.param('id');
    const f = await c.req.parseBody();
    await data(c.get('api').rules[':id'].$delete({ param: { id } }) as Promise<any>);
    return c.redirect(`/repositories/${String(f.repositoryId ?? '')}#rules`, 303);
  });

  app.post('/rules/:id/build', async (c) => {
    const id = c.req.param('id');
    const ref = String((await c.req.parseBody()).ref ?? '').trim();
    const { buildId } = await data(c.get('api').rules[':id'].builds.$post({ param: { id }, json: ref ? { ref } : {} }));
    return c.redirect(`/builds/${buildId}`, 303);
  });

  app.get('/builds', async (c) => {
    const q = c.req.query();
    const session = c.get('session');
    const query: Record<string, string> = { limit: '20' };
    for (const k of ['repository', 'status', 'trigger', 'cursor', 'namespace']) if (q[k]) query[k] = q[k]!;
    if (!query.repository && !query.namespace && !session.admin && session.namespace) query.namespace = session.namespace;
    const list = await data(c.get('api').builds.$get({ query: query as never }));
    const live = list.items.some((b) => !isTerminal(b.status));
    const rows = (
      <tbody id="build-rows" data-live="rows" data-done={live ? '0' : '1'}>
        <BuildRows items={list.items} />
      </tbody>
    );
    if (q.partial === 'rows') return c.html(rows);
    const next = list.nextCursor ? `/builds?${new URLSearchParams({ ...query, cursor: list.nextCursor }).toString()}` : null;
    return page(
      c,
      'Builds',
      <>
        <h1>Builds</h1>
        <form class="filters" method="get" action="/builds" role="search">
          <div><label for="f-repo">Repository</label><input type="text" id="f-repo" name="repository" value={q.repository ?? ''} placeholder="ns/name" /></div>
          <div>
            <label for="f-status">Status</label>
            <select id="f-status" name="status">
              <option value="">any</option>
              {BUILD_STATUSES.map((s) => <option value={s} selected={q.status === s}>{s}</option>)}
            </select>
          </div>
          <div>
            <label for="f-trigger">Trigger</label>
            <select id="f-trigger" name="trigger">
              <option value="">any</option>
              {['push', 'tag', 'manual', 'api'].map((s) => <option value={s} selected={q.trigger === s}>{s}</option>)}
            </select>
          </div>
          {q.namespace ? <input type="hidden" name="namespace" value={q.namespace} /> : null}
          <div><button type="submit">Filter</button></div>
        </form>
        <div class="table-wrap">
          <table aria-live="polite">
            <thead><tr><th scope="col">Build</th><th scope="col">Repository</th><th scope="col">Status</th><th scope="col">Trigger</th><th scope="col">Tags</th><th scope="col">Steps</th><th scope="col">Created</th></tr></thead>
            {rows}
          </table>
        </div>
        {list.items.length === 0 ? <p class="muted">No builds match.</p> : null}
        <nav aria-label="Pages" class="row">
          {q.cursor ? <a href="javascript:history.back()">← Newer</a> : null}
          {next ? <a href={next} rel="next">Older →</a> : null}
        </nav>
      </>,
    );
  });

  app.get('/builds/new', (c) =>
    page(
      c,
      'New build',
      <>
        <h1>Build an inline Dockerfile</h1>
        <p class="muted">To build a local directory, use the CLI: <code>npx kiln build . --tag ns/name:tag</code>.</p>
        <form class="stack" method="post" action="/builds">
          <Csrf value={c.get('csrf')} />
          <div class="row">
            <div><label for="b-repo">Repository</label><input type="text" id="b-repo" name="repository" value={c.req.query('repository') ?? (c.get('session').namespace ? `${c.get('session').namespace}/` : '')} required placeholder="ns/name" /></div>
            <div><label for="b-tags">Tags (comma-separated)</label><input type="text" id="b-tags" name="tags" value="latest" required /></div>
          </div>
          <div><label for="b-dockerfile">Dockerfile</label><textarea id="b-dockerfile" name="dockerfile" required>{`FROM ${opts.registry}/base/busybox\nRUN echo hello > /hello\n`}</textarea></div>
          <div><label for="b-args">Build args (KEY=VALUE, one per line)</label><textarea id="b-args" name="buildArgs" style="min-height:4em"></textarea></div>
          <fieldset class="checks">
            <legend>Platforms and options</legend>
            {PLATFORMS.map((p) => <label><input type="checkbox" name="platforms" value={p} checked={p === 'linux/amd64'} /> {p}</label>)}
            <label><input type="checkbox" name="noCache" /> no cache</label>
            <label><input type="checkbox" name="accelerated" /> accelerated (eStargz)</label>
          </fieldset>
          <div><button type="submit">Start build</button></div>
        </form>
      </>,
    ),
  );

  app.post('/builds', async (c) => {
    const f = (await c.req.parseBody({ all: true })) as Record<string, string | string[]>;
    const one = (k: string) => String(Array.isArray(f[k]) ? f[k]![0] : (f[k] ?? ''));
    const platforms = (Array.isArray(f.platforms) ? f.platforms : f.platforms ? [f.platforms] : []) as (typeof PLATFORMS)[number][];
    const buildArgs = Object.fromEntries(
      one('buildArgs').split(/\r?\n/).map((l) => l.trim()).filter(Boolean).map((l) => [l.slice(0, l.indexOf('=') < 0 ? l.length : l.indexOf('=')), l.includes('=') ? l.slice(l.indexOf('=') + 1) : '']),
    );
    const { buildId } = await data(
      c.get('api').builds.$post({
        json: {
          repository: one('repository').trim(),
          dockerfile: one('dockerfile').replace(/\r\n/g, '\n'),
          platforms,
          tags: one('tags').split(',').map((t) => t.trim()).filter(Boolean),
          buildArgs,
          ...(one('noCache') === 'on' ? { noCache: true } : {}),
          ...(one('accelerated') === 'on' ? { accelerated: true } : {}),
        },
      }),
    );
    return c.redirect(`/builds/${buildId}`, 303);
  });

  app.get('/builds/:id', async (c) => {
    const id = c.req.param('id');
    const b = await data(c.get('api').builds[':id'].$get({ param: { id } }));
    const csrf = c.get('csrf');
    if (c.req.query('partial') === 'status') return c.html(<BuildStatusBlock b={b} csrf={csrf} />);
    const running = !isTerminal(b.status);
    return page(
      c,
      `Build ${id.slice(0, 8)}`,
      <>
        <h1>Build <code>{id.slice(0, 8)}</code> of {b.repository}</h1>
        <BuildStatusBlock b={b} csrf={csrf} />
        <h2 id="log-heading">Log</h2>
        <div class="logbar">
          <label for="log-search" class="visually-hidden">Search the log</label>
          <input type="search" id="log-search" placeholder="Search the log" />
          <span id="log-hits" class="muted" aria-live="polite"></span>
          <label style="font-weight:400"><input type="checkbox" id="log-follow" checked /> follow</label>
          <a href={`/builds/${id}/log.txt`} download={`build-${id}.log`}>Download</a>
          <span id="log-state" class="muted" aria-live="polite">{running ? 'Following…' : ''}</span>
        </div>
        <pre class="log" id="log" data-src={`/builds/${id}/events`} aria-labelledby="log-heading" tabindex={0}></pre>
      </>,
    );
  });

  app.get('/builds/:id/log.txt', async (c) => {
    const res = await c.get('api').builds[':id'].logs.$get({ param: { id: c.req.param('id') }, query: {}, header: {} });
    if (!res.ok) await data(res as never);
    return c.body(await res.text(), 200, { 'content-type': 'text/plain; charset=utf-8', 'content-disposition': `attachment; filename="build-${c.req.param('id')}.log"` });
  });

  app.get('/builds/:id/events', async (c) => {
    const lastId = c.req.header('last-event-id');
    const res = await c.get('api').builds[':id'].logs.$get(
      { param: { id: c.req.param('id') }, query: { follow: '1' }, header: lastId ? { 'last-event-id': lastId } : {} },
      { init: { signal: c.req.raw.signal } },
    );
    if (!res.ok) await data(res as never);
    return new Response(res.body, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } });
  });

  app.post('/builds/:id/cancel', async (c) => {
    const id = c.req.param('id');
    await data(c.get('api').builds[':id'].cancel.$post({ param: { id } }));
    return c.redirect(`/builds/${id}`, 303);
  });

  app.post('/builds/:id/rebuild', async (c) => {
    const { buildId } = await data(c.get('api').builds[':id'].rebuild.$post({ param: { id: c.req.param('id') } }));
    return c.redirect(`/builds/${buildId}`, 303);
  });

  app.get('/admin/tokens', async (c) => {
    const api = c.get('api');
    const { items: namespaces } = await data(api.namespaces.$get({ query: {} }));
    const ns = c.req.query('namespace') ?? namespaces[0]?.name;
    const tokens = ns ? (await data(api.namespaces[':name'].tokens.$get({ param: { name: ns } }))).items : [];
    return tokensPage(c, namespaces.map((n) => n.name), ns, tokens);
  });

  function tokensPage(c: Context<Env>, namespaces: string[], ns: string | undefined, tokens: { id: string; name: string; createdAt: string }[], created?: string) {
    const csrf = c.get('csrf');
    return page(
      c,
      'Tokens',
      <>
        <h1>Namespace tokens</h1>
        <form class="filters" method="get" action="/admin/tokens">
          <div>
            <label for="t-ns">Namespace</label>
            <select id="t-ns" name="namespace">{namespaces.map((n) => <option value={n} selected={n === ns}>{n}</option>)}</select>
          </div>
          <div><button type="submit" class="secondary">Show</button></div>
        </form>
        {created ? (
          <div class="notice" role="status">
            <p><strong>New token</strong> for {ns} (shown once; copy it now):</p>
            <p class="secret" id="new-token">{created}</p>
          </div>
        ) : null}
        {ns ? (
          <>
            <div class="table-wrap">
              <table>
                <thead><tr><th scope="col">Name</th><th scope="col">Created</th><th scope="col"><span class="muted">Action</span></th></tr></thead>
                <tbody>
                  {tokens.map((t) => (
                    <tr>
                      <td>{t.name}</td>
                      <td>{fmtTime(t.createdAt)}</td>
                      <td>
                        <form class="inline" method="post" action={`/admin/tokens/${ns}/${t.id}/revoke`}>
                          <Csrf value={csrf} />
                          <button type="submit" class="danger" aria-label={`Revoke token ${t.name}`}>Revoke</button>
                        </form>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <h2>New token for {ns}</h2>
            <form class="stack" method="post" action="/admin/tokens">
              <Csrf value={csrf} />
              <input type="hidden" name="namespace" value={ns} />
              <div><label for="t-name">Token name</label><input type="text" id="t-name" name="name" required /></div>
              <div><button type="submit">Create token</button></div>
            </form>
          </>
        ) : <p class="muted">Create a namespace first.</p>}
        <p class="muted">Namespaces have no quotas configured in this version.</p>
      </>,
    );
  }

  app.post('/admin/tokens', async (c) => {
    const f = await c.req.parseBody();
    const ns = String(f.namespace ?? '');
    const api = c.get('api');
    const created = await data(api.namespaces[':name'].tokens.$post({ param: { name: ns }, json: { name: String(f.name ?? '') } }));
    const { items: namespaces } = await data(api.namespaces.$get({ query: {} }));
    const tokens = (await data(api.namespaces[':name'].tokens.$get({ param: { name: ns } }))).items;
    return tokensPage(c, namespaces.map((n) => n.name), ns, tokens, created.token);
  });

  app.post('/admin/tokens/:ns/:id/revoke', async (c) => {
    const { ns, id } = c.req.param();
    const res = await c.get('api').namespaces[':name'].tokens[':id'].$delete({ param: { name: ns, id } });
    if (!res.ok) await data(res as never);
    return c.redirect(`/admin/tokens?namespace=${ns}`, 303);
  });

  return app;
}
