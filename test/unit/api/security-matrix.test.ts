// The security matrix, generated from the OpenAPI document the app serves: every operation ×
// every kind of caller, with nothing changed by a refused call. A new route is covered as soon as
// it is documented; one that cannot be classified, filled or sent fails here with what to add.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { insertDelivery, recordDeliveryAttempt } from '../../../db/queries/notifications';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadOrCreateRegistryTokenKeys } from '../../../infra/registry-token-keys';
import { afterAll, describe, expect, it } from 'vitest';
import type { RegistryClient } from '../../../activities/registry';
import { OPENAPI_PATH } from '../../../api/app';
import { registryNotificationToken } from '../../../api/routes/registry-events';
import { changedTables, snapshotDatabase } from '../../support/db-snapshot';
import { bitbucketPush, forgejoPush, giteaPush, giteePush, githubPush, gitlabPush, type PushSpec, type SignedDelivery } from '../../support/webhooks';
import { createHarness, DOCKERFILE, SECRET_KEY, TOKEN, type Res } from './harness';

// ---- the app and its document -------------------------------------------------------------

const realmKeys = await loadOrCreateRegistryTokenKeys(mkdtempSync(path.join(tmpdir(), 'kiln-matrix-keys-')));
/**
 * POST /contexts streams its body into a registry blob: here a stand-in that reads and hashes it
 * (the real upload into a token-auth registry is test/e2e/local-context.test.ts's).
 */
const contextRegistry = {
  async uploadBlob(_repository: string, body: AsyncIterable<Uint8Array>) {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of body) {
      hash.update(chunk);
      size += chunk.byteLength;
    }
    return { digest: `sha256:${hash.digest('hex')}`, size };
  },
} as unknown as RegistryClient;
const h = await createHarness({
  registryTokenSigner: realmKeys,
  contexts: { registry: contextRegistry, maxContextBytes: 1024 * 1024, retentionMs: 3600_000 },
});
afterAll(() => h.close());

interface OpenApiOperation {
  summary?: string;
  description?: string;
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: string; required?: boolean; schema?: { enum?: string[] } }[];
  requestBody?: { required?: boolean };
}
interface OpenApiDoc {
  security?: Record<string, string[]>[];
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { securitySchemes: Record<string, { type: string; scheme?: string; in?: string; name?: string }> };
}

const served = await h.call(OPENAPI_PATH, { token: null });
const doc = served.body as OpenApiDoc;
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

interface Operation {
  key: string; // "POST /api/v1/builds", paths as the document writes them
  method: string;
  path: string;
  op: OpenApiOperation;
}
const operations: Operation[] = Object.entries(doc.paths).flatMap(([path, item]) =>
  Object.entries(item)
    .filter(([m]) => HTTP_METHODS.includes(m))
    .map(([m, op]) => ({ key: `${m.toUpperCase()} ${path}`, method: m.toUpperCase(), path, op })),
);

// ---- callers ----------------------------------------------------------------------------------

const OWNER = 'matrix-owner';
const OTHER = 'matrix-other';
const admin = (path: string, init: Parameters<typeof h.call>[1] = {}) => h.call(path, { ...init, token: TOKEN });
/** Set-up outside any test: a failure here must stop the file with the answer that caused it. */
function must(res: Res, status: number): Res {
  if (res.status !== status) throw new Error(`set-up expected ${status}, got ${res.status} ${res.text}`);
  return res;
}
for (const name of [OWNER, OTHER]) must(await admin('/api/v1/namespaces', { json: { name } }), 201);
const newToken = async (ns: string) => must(await admin(`/api/v1/namespaces/${ns}/tokens`, { json: { name: 'matrix' } }), 201).body.token as string;
const OWNER_TOKEN = await newToken(OWNER);
const OTHER_TOKEN = await newToken(OTHER);

type Caller = 'no token' | 'unknown token' | 'other namespace' | 'owning namespace' | 'admin';
const CALLERS: Caller[] = ['no token', 'unknown token', 'other namespace', 'owning namespace', 'admin'];
const BEARER: Record<Caller, string | null> = {
  'no token': null,
  'unknown token': `kiln_${randomBytes(24).toString('base64url')}`,
  'other namespace': OTHER_TOKEN,
  'owning namespace': OWNER_TOKEN,
  admin: TOKEN,
};

// ---- security classes: what each expects ----------------------------------------------------

/**
 * Every operation's effective `security` (its own, else the document's) must be exactly one of
 * these. The test lists per class what it asserts; an unknown combination fails
 * "every operation has a security class" instead of being skipped.
 */
const SECURITY_CLASSES = {
  /** Kiln bearer tokens: no/unknown token → 401 with a challenge; other namespace → 403 or 404;
   * owning namespace → 2xx (403 when the operation says "admin only"); admin → 2xx. */
  'kiln bearer': [['bearerAuth']],
  /** `security: []`: every caller, with any token or none → 2xx. */
  public: [],
  /** The registry's notification endpoint: no Kiln token of any kind is accepted (401, nothing
   * recorded); only the notification token derived from KILN_SECRET_KEY → 2xx. */
  'registry notification token': [['registryNotificationToken']],
  /** Git host webhooks, per provider: missing or wrong signature → 401 with or without any Kiln
   * token, nothing recorded and no build started; the correct signature → 2xx. */
  'git host signature': [['bitbucketSignature'], ['forgejoSignature'], ['giteaSignature'], ['giteeSignature'], ['githubSignature'], ['gitlabToken']],
  /** The registry's token realm: Basic with a Kiln token as the password, or nothing (anonymous).
   * A bearer header is no credential here (anonymous); an unknown password → 401; the token grants
   * the owning namespace and the admin pull+push on a private repository, others nothing; no call
   * changes anything. */
  'registry token realm': [['registryBasic'], []],
} satisfies Record<string, string[][]>;
type SecurityClass = keyof typeof SECURITY_CLASSES;

const normalizeSecurity = (s: Record<string, string[]>[]) =>
  JSON.stringify(s.map((alt) => Object.keys(alt).sort()).sort((a, b) => a.join().localeCompare(b.join())));

const CLASS_KEYS = Object.fromEntries(
  Object.entries(SECURITY_CLASSES).map(([c, alts]) => [normalizeSecurity(alts.map((a) => Object.fromEntries(a.map((n) => [n, []])))), c]),
) as Record<string, SecurityClass>;
const classify = (o: Operation): SecurityClass | undefined => CLASS_KEYS[normalizeSecurity(o.op.security ?? doc.security ?? [])];
const classified = operations.map((o) => ({ ...o, securityClass: classify(o) }));
const ofClass = (c: SecurityClass) => classified.filter((o) => o.securityClass === c);

/** Admin-only operations say so in their summary or description; the matrix checks the code agrees. */
const isAdminOnly = (o: Operation) => /\badmin only\b/i.test(`${o.op.summary ?? ''} ${o.op.description ?? ''}`);

/**
 * Routes the app serves outside the document and that are public: the document itself, the docs,
 * and the console's sign-in page and static assets. Checked against app.routes both ways.
 */
const UNDOCUMENTED_PUBLIC: Record<string, string> = {
  [`GET ${OPENAPI_PATH}`]: OPENAPI_PATH,
  'GET /docs': '/docs',
  'GET /docs/assets/swagger-ui-dist/:file': '/docs/assets/swagger-ui-dist/swagger-ui.css',
  'GET /login': '/login',
  'GET /console/assets/:file': '/console/assets/console.css',
};

/** The console's sign-in form: public, but it opens a session only for a valid Kiln token. */
const CONSOLE_SIGN_IN = 'POST /login';

/**
 * The web console's pages and forms (console/app.tsx), outside the document: every one is behind
 * the session cookie. Without a valid one, a GET is redirected to the sign-in page and a POST gets
 * 401, whatever bearer token comes along (the console reads only its cookie); nothing changes.
 */
const CONSOLE_SESSION: string[] = [
  'GET /',
  'POST /logout',
  'GET /namespaces',
  'POST /namespaces',
  'GET /namespaces/:ns',
  'POST /repositories',
  'GET /repositories/:id',
  'POST /repositories/:id/rules',
  'POST /repositories/:id/rules/preview',
  'POST /rules/:id',
  'POST /rules/:id/delete',
  'POST /rules/:id/build',
  'GET /builds',
  'GET /builds/new',
  'POST /builds',
  'GET /builds/:id',
  'GET /builds/:id/log.txt',
  'GET /builds/:id/events',
  'POST /builds/:id/cancel',
  'POST /builds/:id/rebuild',
  'GET /admin/tokens',
  'POST /admin/tokens',
  'POST /admin/tokens/:ns/:id/revoke',
];

// ---- resources of the owning namespace, fresh for every call that may change them ------------

interface Fixture {
  n: number;
  namespace: string;
  repositoryId: string;
  repositoryName: string;
  sourceUrl: string;
  webhookSecret: string;
  ruleId: string;
  buildId: string;
  /** The build lives in its own repository, so the first one has no active build (DELETE works). */
  builtRepository: string;
  /** A namespace token of the owner's, made for this fixture (not OWNER_TOKEN: it may be revoked). */
  tokenId: string;
  /** A notification subscription of the namespace, its secret (shown once) and one finished delivery. */
  subscriptionId: string;
  subscriptionSecret: string;
  deliveryId: string;
}

const RULE = { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'main' }] };
let seq = 0;

async function seed(provider = 'github'): Promise<Fixture> {
  const n = ++seq;
  const repositoryName = `app-${n}`;
  const sourceUrl = `https://${provider === 'bitbucket' ? 'bitbucket.org' : `${provider}.com`}/acme/matrix-${n}.git`;
  const webhookSecret = `matrix-webhook-secret-${randomBytes(8).toString('hex')}`;
  const repo = await admin('/api/v1/repositories', {
    json: { namespace: OWNER, name: repositoryName, source: { provider, url: sourceUrl, webhookSecret } },
  });
  expect(repo.status, repo.text).toBe(201);
  const rule = await admin(`/api/v1/repositories/${repo.body.id}/rules`, { json: RULE });
  expect(rule.status, rule.text).toBe(201);
  const builtRepository = `${OWNER}/built-${n}`;
  const build = await admin('/api/v1/builds', {
    json: { repository: builtRepository, dockerfile: DOCKERFILE, platforms: ['linux/amd64'], tags: ['v1'] },
  });
  expect(build.status, build.text).toBe(202);
  const token = await admin(`/api/v1/namespaces/${OWNER}/tokens`, { json: { name: `fixture-${n}` } });
  expect(token.status, token.text).toBe(201);
  const subscription = await admin(`/api/v1/namespaces/${OWNER}/subscriptions`, {
    json: { url: `https://hooks.example.test/matrix-${n}`, events: ['build.succeeded', 'image.pushed'] },
  });
  expect(subscription.status, subscription.text).toBe(201);
  const delivery = await insertDelivery(h.db, {
    id: randomUUID(),
    subscriptionId: subscription.body.id,
    event: 'build.succeeded',
    eventKey: `matrix-${n}`,
    body: JSON.stringify({ event: 'build.succeeded' }),
  });
  await recordDeliveryAttempt(h.db, delivery.id, { attempt: 1, at: new Date().toISOString(), statusCode: 200, durationMs: 5, error: null }, 'delivered', 20);
  return {
    n,
    namespace: OWNER,
    repositoryId: repo.body.id,
    repositoryName,
    sourceUrl,
    webhookSecret,
    ruleId: rule.body.id,
    buildId: build.body.buildId,
    builtRepository,
    tokenId: token.body.id,
    subscriptionId: subscription.body.id,
    subscriptionSecret: subscription.body.secret,
    deliveryId: delivery.id,
  };
}

/** `/{collection}/{param}` → the owned resource that fills it. */
const PATH_PARAMS: Record<string, (f: Fixture) => string> = {
  '/namespaces/{name}': (f) => f.namespace,
  '/repositories/{id}': (f) => f.repositoryId,
  '/builds/{id}': (f) => f.buildId,
  '/imagebuilds/{id}': (f) => f.buildId,
  '/rules/{id}': (f) => f.ruleId,
  '/tokens/{id}': (f) => f.tokenId,
  '/subscriptions/{id}': (f) => f.subscriptionId,
  '/deliveries/{deliveryId}': (f) => f.deliveryId,
};
const pathParams = (path: string) => [...path.matchAll(/\/([^/{}]+)\/\{([^}]+)\}/g)].map((m) => `/${m[1]}/{${m[2]}}`);
const hasPathParams = (path: string) => path.includes('{');

function fillPath(o: Operation, f: Fixture): string {
  return o.path.replace(/\/([^/{}]+)\/\{([^}]+)\}/g, (whole) => {
    const fill = PATH_PARAMS[whole];
    if (!fill) throw new Error(`${o.key}: no owned resource fills ${whole}; add it to PATH_PARAMS`);
    return whole.replace(/\{[^}]+\}/, encodeURIComponent(fill(f)));
  });
}

interface Example {
  query?: Record<string, string>;
  body?: unknown;
  /** A body that is not JSON (a tar stream), with its content type. */
  raw?: { body: string; contentType: string };
  /** A list narrowed to the caller's namespace: another namespace gets 2xx, with nothing of the owner. */
  scopedList?: true;
}

/**
 * Valid requests that act on the owning namespace. Needed where the body is required or where no
 * path parameter says whose resource it is; the owner and admin calls prove them valid (2xx).
 */
const EXAMPLES: Record<string, (f: Fixture) => Example | Example[]> = {
  'POST /api/v1/namespaces': (f) => ({ body: { name: `fresh-${f.n}` } }),
  'GET /api/v1/namespaces': () => ({ scopedList: true }),
  'POST /api/v1/namespaces/{name}/tokens': () => ({ body: { name: 'ci' } }),
  'POST /api/v1/repositories': (f) => ({
    body: { namespace: f.namespace, name: `new-${f.n}`, source: { provider: 'gitlab', url: `https://gitlab.com/acme/new-${f.n}.git` } },
  }),
  'GET /api/v1/repositories': (f): Example[] => [{ query: { namespace: f.namespace } }, { scopedList: true }],
  'PATCH /api/v1/repositories/{id}': () => ({ body: { description: 'changed', visibility: 'public', buildSettings: { noCache: true } } }),
  'POST /api/v1/builds': (f) => ({
    body: { repository: `${f.namespace}/${f.repositoryName}`, dockerfile: DOCKERFILE, platforms: ['linux/amd64'], tags: ['v2'] },
  }),
  'GET /api/v1/builds': (f): Example[] => [{ query: { repository: f.builtRepository } }, { query: { repositoryId: f.repositoryId } }],
  'POST /api/v1/imagebuilds': (f) => ({
    body: { Image: { Uri: `127.0.0.1:5000/${f.namespace}/${f.repositoryName}:v3` }, BuildConfig: { Dockerfile: DOCKERFILE } },
  }),
  'POST /api/v1/repositories/{id}/rules': () => ({ body: { ...RULE, match: 'develop', tags: [{ template: 'develop' }] } }),
  'PATCH /api/v1/rules/{id}': () => ({ body: { match: 'trunk', tags: [{ template: 'trunk' }], noCache: true } }),
  'POST /api/v1/rules/{id}/builds': () => ({ body: { ref: 'main' } }),
  'POST /api/v1/namespaces/{name}/subscriptions': (f): Example[] => [
    { body: { url: 'https://hooks.example.test/new', events: ['build.failed'] } },
    { body: { url: 'http://127.0.0.1:9/hook', events: ['image.pushed'], repository: f.repositoryName } },
  ],
  'PATCH /api/v1/subscriptions/{id}': () => ({ body: { events: ['build.started'], active: false } }),
  'POST /api/v1/repositories/{id}/source/rotate': () => ({ body: { webhookSecret: 'generate', token: 'rotated-token' } }),
  'PATCH /api/v1/namespaces/{name}': () => ({ body: { defaultImmutableTags: true, buildPool: 'dedicated' } }),
  'POST /api/v1/contexts': (f) => ({
    query: { repository: `${f.namespace}/${f.repositoryName}` },
    raw: { body: tarOf('Dockerfile', `FROM scratch\nLABEL fixture=${f.n}\n`), contentType: 'application/x-tar' },
  }),
  'POST /api/v1/repositories/{id}/rules/preview': (f): Example[] => [
    { body: { rule: { type: 'branch', match: 'release-(?<v>\\w+)', tags: [{ template: '${v}' }] }, ref: 'release-7' } },
    { body: { rule: f.ruleId, ref: 'main' } },
  ],
};

/** A one-file ustar archive (header, data, two zero blocks); ASCII only, so it travels as a string. */
function tarOf(name: string, content: string): string {
  const field = (value: string, length: number) => value.padEnd(length, '\0').slice(0, length);
  const octal = (n: number, length: number) => `${n.toString(8).padStart(length - 1, '0')}\0`;
  const header = (checksum: string) =>
    field(name, 100) + octal(0o644, 8) + octal(0, 8) + octal(0, 8) + octal(content.length, 12) + octal(0, 12) +
    checksum + '0' + field('', 100) + field('ustar', 6) + '00' + field('', 32) + field('', 32) + octal(0, 8) + octal(0, 8) +
    field('', 155) + field('', 12);
  const sum = [...header(' '.repeat(8))].reduce((a, ch) => a + ch.charCodeAt(0), 0);
  const block = (s: string) => s.padEnd(Math.ceil(s.length / 512) * 512, '\0');
  return header(`${sum.toString(8).padStart(6, '0')}\0 `) + block(content) + '\0'.repeat(1024);
}

function examplesFor(o: Operation, f: Fixture): Example[] {
  const make = EXAMPLES[o.key];
  if (make) return [make(f)].flat();
  if (o.op.requestBody?.required) throw new Error(`${o.key} needs a body: add a valid example to EXAMPLES`);
  if (!hasPathParams(o.path)) throw new Error(`${o.key} names no resource in its path: add an example to EXAMPLES saying whose it is`);
  return [{}];
}

async function send(o: Operation, f: Fixture, ex: Example, headers: { token: string | null; extra?: Record<string, string> }): Promise<Res> {
  const qs = ex.query ? `?${new URLSearchParams(ex.query)}` : '';
  if (ex.raw) {
    return h.call(fillPath(o, f) + qs, {
      method: o.method,
      body: ex.raw.body,
      token: headers.token,
      headers: { 'content-type': ex.raw.contentType, ...headers.extra },
    });
  }
  return h.call(fillPath(o, f) + qs, { method: o.method, json: ex.body, token: headers.token, headers: headers.extra });
}

// ---- what a refused call must leave alone --------------------------------------------------------

/** Runs a call that must be refused and asserts it changed no row of any table and started or canceled nothing. */
async function refused(call: () => Promise<Res>, secrets: string[] = []): Promise<Res> {
  const before = await snapshotDatabase(h.db);
  const starts = h.starter.starts.length;
  const pushes = h.pushes.starts.length;
  const cancels = h.starter.cancels.length;
  const res = await call();
  expect(changedTables(before, await snapshotDatabase(h.db)), `a refused call (${res.status}) changed the database`).toEqual([]);
  expect(h.starter.starts.length, 'a refused call started a build').toBe(starts);
  expect(h.pushes.starts.length, 'a refused call started a push workflow').toBe(pushes);
  expect(h.starter.cancels.length, 'a refused call canceled a build').toBe(cancels);
  for (const s of secrets) expect(res.text).not.toContain(s);
  return res;
}

const is2xx = (s: number) => s >= 200 && s < 300;
const describeRes = (o: Operation, who: string, res: Res) => `${o.key} as ${who}: ${res.status} ${res.text.slice(0, 300)}`;

// ---- the tests -------------------------------------------------------------------------------------

describe('the document', () => {
  it('is served and lists operations of every class', () => {
    expect(served.status).toBe(200);
    expect(ofClass('kiln bearer').length).toBeGreaterThan(10);
    for (const c of Object.keys(SECURITY_CLASSES) as SecurityClass[]) expect(ofClass(c).length, c).toBeGreaterThan(0);
  });

  it('every operation has a security class', () => {
    const unclassified = classified.filter((o) => !o.securityClass).map((o) => `${o.key}: ${JSON.stringify(o.op.security ?? doc.security)}`);
    expect(unclassified, 'add a class to SECURITY_CLASSES with what it expects').toEqual([]);
  });

  it('every route the app serves is documented or listed as undocumented and public', () => {
    const documented = new Set(operations.map((o) => `${o.method} ${o.path.replace(/\{([^}]+)\}/g, ':$1')}`));
    const served = new Set(h.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`));
    const listed = new Set([...Object.keys(UNDOCUMENTED_PUBLIC), CONSOLE_SIGN_IN, ...CONSOLE_SESSION]);
    expect([...served].filter((k) => !documented.has(k) && !listed.has(k))).toEqual([]);
    expect([...listed].filter((k) => !served.has(k)), 'stale UNDOCUMENTED_PUBLIC / CONSOLE_* entries').toEqual([]);
  });

  it('every path parameter and example is known, and no example is stale', () => {
    const keys = new Set(operations.map((o) => o.key));
    expect(Object.keys(EXAMPLES).filter((k) => !keys.has(k)), 'stale EXAMPLES entries').toEqual([]);
    const missing = ofClass('kiln bearer').flatMap((o) => {
      const problems = pathParams(o.path).filter((p) => !PATH_PARAMS[p]).map((p) => `${o.key}: ${p} not in PATH_PARAMS`);
      if (!EXAMPLES[o.key] && o.op.requestBody?.required) problems.push(`${o.key}: body required, no example`);
      if (!EXAMPLES[o.key] && !hasPathParams(o.path)) problems.push(`${o.key}: no path parameter and no example`);
      return problems;
    });
    expect(missing).toEqual([]);
  });
});

describe.each(ofClass('kiln bearer'))('$key (kiln bearer)', (o) => {
  const adminOnly = isAdminOnly(o);

  it(`no or unknown token → 401; other namespace → 403/404${adminOnly ? '; owning namespace → 403 (admin only)' : ''}; nothing changes`, async () => {
    const f = await seed();
    const secrets = [f.sourceUrl, f.webhookSecret, f.subscriptionSecret];
    for (const ex of examplesFor(o, f)) {
      for (const who of ['no token', 'unknown token'] as const) {
        const res = await refused(() => send(o, f, ex, { token: BEARER[who] }), secrets);
        expect(res.status, describeRes(o, who, res)).toBe(401);
        expect(res.headers.get('www-authenticate'), describeRes(o, who, res)).toMatch(/^Bearer /);
      }
      if (ex.scopedList) {
        const res = await refused(() => send(o, f, ex, { token: OTHER_TOKEN }));
        expect(is2xx(res.status), describeRes(o, 'other namespace', res)).toBe(true);
        for (const s of [OWNER, f.repositoryId, f.buildId, f.ruleId, ...secrets]) expect(res.text, describeRes(o, 'other namespace', res)).not.toContain(s);
      } else {
        const res = await refused(() => send(o, f, ex, { token: OTHER_TOKEN }), secrets);
        expect([403, 404], describeRes(o, 'other namespace', res)).toContain(res.status);
      }
      if (adminOnly) {
        const res = await refused(() => send(o, f, ex, { token: OWNER_TOKEN }), secrets);
        expect(res.status, describeRes(o, 'owning namespace', res)).toBe(403);
      }
    }
  });

  for (const who of (adminOnly ? ['admin'] : ['owning namespace', 'admin']) as Caller[]) {
    it(`${who} → 2xx`, async () => {
      // One fresh fixture per call: a DELETE or a cancel by the owner must not decide the admin's answer.
      for (let i = 0, count = 1; i < count; i++) {
        const f = await seed();
        const examples = examplesFor(o, f);
        count = examples.length;
        const ex = examples[i]!;
        const res = await send(o, f, ex, { token: BEARER[who] });
        expect(is2xx(res.status), describeRes(o, who, res)).toBe(true);
        if (ex.scopedList) expect(res.text, describeRes(o, who, res)).toContain(f.namespace);
      }
    });
  }
});

describe.each(ofClass('public'))('$key (public)', (o) => {
  it('answers every caller, token or not, with 2xx', async () => {
    const f = await seed();
    for (const who of CALLERS) {
      const res = await send(o, f, {}, { token: BEARER[who] });
      expect(is2xx(res.status), describeRes(o, who, res)).toBe(true);
    }
  });
});

describe.each(Object.entries(UNDOCUMENTED_PUBLIC))('%s (undocumented, public)', (_key, path) => {
  it('answers without a token', async () => {
    const res = await h.call(path, { token: null });
    expect(res.status, res.text.slice(0, 200)).toBe(200);
  });
});

describe('the console', () => {
  const signIn = (token: string | undefined, bearer: string | null = null) =>
    h.call('/login', {
      method: 'POST',
      body: new URLSearchParams({ token: token ?? '', next: '/builds' }).toString(),
      token: bearer,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  const sessionCookie = (res: Res) => /kiln_session=([^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1];
  /** `:ns`, `:id` filled with the owner's resources (the route decides which kind of id). */
  const fill = (route: string, f: Fixture) => {
    const path = route.split(' ')[1]!;
    const id = path.startsWith('/repositories') ? f.repositoryId : path.startsWith('/rules') ? f.ruleId : path.startsWith('/admin') ? f.tokenId : f.buildId;
    return path.replace(':ns', f.namespace).replace(':id', id);
  };

  it(`${CONSOLE_SIGN_IN}: no, unknown or bearer-only token → back to the sign-in page, no session, nothing changes; a Kiln token → a session`, async () => {
    for (const [token, bearer] of [[undefined, null], [BEARER['unknown token']!, null], [undefined, TOKEN]] as const) {
      const res = await refused(() => signIn(token, bearer));
      expect(res.status, res.text).toBe(303);
      expect(res.headers.get('location')).toMatch(/^\/login\?error=/);
      expect(sessionCookie(res)).toBeUndefined();
    }
    const ok = await signIn(OWNER_TOKEN);
    expect([ok.status, ok.headers.get('location')]).toEqual([303, '/builds']);
    expect(sessionCookie(ok)).toBeTruthy();
  });

  it.each(CONSOLE_SESSION)('%s: without a session → sign-in (GET) or 401 (POST), with any bearer token or a forged cookie; nothing changes', async (route) => {
    const f = await seed();
    const method = route.split(' ')[0]!;
    const path = fill(route, f);
    const forged = { cookie: `kiln_session=${randomBytes(48).toString('base64url')}` };
    for (const [who, extra] of [...CALLERS.map((c) => [c, undefined] as const), ['forged cookie', forged] as const]) {
      const token = who === 'forged cookie' ? null : BEARER[who];
      const res = await refused(
        () =>
          method === 'GET'
            ? h.call(path, { token, headers: extra })
            : h.call(path, { method, token, body: '', headers: { ...extra, 'content-type': 'application/x-www-form-urlencoded' } }),
        [f.sourceUrl, f.webhookSecret],
      );
      if (method === 'GET') {
        expect(res.status, `${route} as ${who}: ${res.status} ${res.text.slice(0, 200)}`).toBe(303);
        expect(res.headers.get('location'), `${route} as ${who}`).toBe(`/login?next=${encodeURIComponent(path)}`);
      } else {
        expect(res.status, `${route} as ${who}: ${res.status} ${res.text.slice(0, 200)}`).toBe(401);
      }
    }
  });

  it('a session opens the pages (so the refusals above are the cookie\'s doing)', async () => {
    const f = await seed();
    const cookie = sessionCookie(await signIn(OWNER_TOKEN));
    for (const path of ['/namespaces', `/repositories/${f.repositoryId}`, `/builds/${f.buildId}`]) {
      const res = await h.call(path, { token: null, headers: { cookie: `kiln_session=${cookie}` } });
      expect(res.status, `${path}: ${res.text.slice(0, 200)}`).toBe(200);
    }
  });
});

describe.each(ofClass('registry notification token'))('$key (registry notification token)', (o) => {
  const digest = `sha256:${'ab'.repeat(32)}`;
  const envelope = (f: Fixture) => ({
    events: [
      {
        id: `ev-${f.n}`,
        action: 'push',
        target: { mediaType: 'application/vnd.oci.image.index.v1+json', digest, repository: `${f.namespace}/${f.repositoryName}`, tag: 'pushed' },
        request: { useragent: 'docker/24.0.7' },
      },
    ],
  });

  it('refuses every Kiln token and none with 401 and records nothing; the notification token records the push', async () => {
    const f = await seed();
    for (const who of CALLERS) {
      const res = await refused(() => send(o, f, { body: envelope(f) }, { token: BEARER[who] }));
      expect(res.status, describeRes(o, who, res)).toBe(401);
    }
    const ok = await send(o, f, { body: envelope(f) }, { token: registryNotificationToken(SECRET_KEY) });
    expect(ok.status, describeRes(o, 'registry', ok)).toBe(200);
    expect(ok.body.recorded).toEqual([{ repository: `${f.namespace}/${f.repositoryName}`, tag: 'pushed', digest }]);
  });
});

describe.each(ofClass('git host signature'))('$key (git host signature)', (o) => {
  const providers = o.op.parameters?.find((p) => p.in === 'path' && p.name === 'provider')?.schema?.enum ?? [];
  const signers: Record<string, (s: PushSpec) => SignedDelivery> = {
    github: githubPush,
    gitlab: gitlabPush,
    gitee: giteePush,
    bitbucket: bitbucketPush,
    gitea: giteaPush,
    forgejo: forgejoPush,
  };

  it('documents one signature scheme per provider', () => {
    expect(providers.length).toBeGreaterThan(0);
    for (const p of providers) expect(signers[p], `no signer for ${p} in this test`).toBeDefined();
  });

  it.each(providers)('%s: missing or wrong signature → 401 whatever Kiln token comes along; nothing recorded; the right one → 2xx', async (provider) => {
    const schemeName = (o.op.security ?? []).flatMap((alt) => Object.keys(alt)).find((n) => n.startsWith(provider));
    const scheme = schemeName ? doc.components.securitySchemes[schemeName] : undefined;
    expect(scheme?.in === 'header' && scheme.name, `the ${provider} security scheme names its header`).toBeTruthy();
    const signatureHeader = scheme!.name!.toLowerCase();

    const f = await seed(provider);
    const path = o.path.replace('{provider}', provider);
    const delivery = (secret: string) => signers[provider]!({ repoUrl: f.sourceUrl, ref: 'refs/heads/main', after: 'c'.repeat(40), secret });
    const post = (d: SignedDelivery, token: string | null) => h.call(path, { method: 'POST', body: d.body, headers: d.headers, token });

    const unsigned = delivery(f.webhookSecret);
    delete unsigned.headers[signatureHeader];
    const wrong = delivery(`wrong-${f.webhookSecret}`);
    for (const d of [unsigned, wrong]) {
      for (const who of CALLERS) {
        const res = await refused(() => post(d, BEARER[who]), [f.webhookSecret]);
        expect(res.status, `${provider} as ${who}: ${res.status} ${res.text}`).toBe(401);
      }
    }
    const starts = h.pushes.starts.length;
    const ok = await post(delivery(f.webhookSecret), null);
    expect(is2xx(ok.status), `${provider} signed: ${ok.status} ${ok.text}`).toBe(true);
    // The delivery's push workflow starts the build.
    expect(h.pushes.starts.length).toBe(starts + 1);
    await h.pushDispatcher.idle(); // its row is marked started before the next case snapshots the database
  });
});

describe.each(ofClass('registry token realm'))('$key (registry token realm)', (o) => {
  const ask = (f: Fixture, headers: Record<string, string>) => {
    const scope = `repository:${f.namespace}/${f.repositoryName}:pull,push`;
    return o.method === 'GET'
      ? h.call(`${o.path}?service=kiln-registry&scope=${encodeURIComponent(scope)}`, { token: null, headers })
      : h.call(o.path, {
          method: 'POST',
          token: null,
          body: new URLSearchParams({ grant_type: 'password', service: 'kiln-registry', scope }).toString(),
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        });
  };
  const actions = (res: Res) => JSON.parse(Buffer.from(res.body.token.split('.')[1], 'base64url').toString()).access[0].actions;

  it('grants by the Basic password; a bearer header is no credential; unknown passwords → 401; nothing changes', async () => {
    const f = await seed();
    const expected: Record<Caller, string[] | 401> = {
      'no token': [],
      'unknown token': 401,
      'other namespace': [],
      'owning namespace': ['pull', 'push'],
      admin: ['pull', 'push'],
    };
    for (const who of CALLERS) {
      const bearer = BEARER[who];
      const asBearer = await refused(() => ask(f, bearer ? { authorization: `Bearer ${bearer}` } : {}));
      expect(asBearer.status, describeRes(o, `${who} (bearer)`, asBearer)).toBe(200);
      expect(actions(asBearer), `${who} (bearer) is anonymous`).toEqual([]);
      if (!bearer) continue;
      const asBasic = await refused(() => ask(f, { authorization: `Basic ${Buffer.from(`u:${bearer}`).toString('base64')}` }));
      if (expected[who] === 401) expect(asBasic.status, describeRes(o, who, asBasic)).toBe(401);
      else expect([asBasic.status, actions(asBasic)], describeRes(o, who, asBasic)).toEqual([200, expected[who]]);
    }
  });
});
