import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../../api/app';
import type { Principal } from '../../../api/auth';
import { buildBody, createHarness, DB_TIMEOUT, FakeBuildStarter, makeApp, request, TOKEN, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());

describe('authentication', () => {
  const protectedRoutes: [string, string][] = [
    ['GET', '/api/v1/namespaces'],
    ['POST', '/api/v1/namespaces'],
    ['GET', '/api/v1/repositories'],
    ['POST', '/api/v1/repositories'],
    ['GET', '/api/v1/repositories/00000000-0000-4000-8000-000000000000'],
    ['PATCH', '/api/v1/repositories/00000000-0000-4000-8000-000000000000'],
    ['DELETE', '/api/v1/repositories/00000000-0000-4000-8000-000000000000'],
    ['GET', '/api/v1/repositories/00000000-0000-4000-8000-000000000000/tags'],
    ['GET', '/api/v1/builds'],
    ['POST', '/api/v1/builds'],
    ['GET', '/api/v1/builds/00000000-0000-4000-8000-000000000000'],
    ['GET', '/api/v1/builds/00000000-0000-4000-8000-000000000000/logs'],
    ['POST', '/api/v1/builds/00000000-0000-4000-8000-000000000000/cancel'],
    ['GET', '/api/v1/no-such-route'],
  ];

  it.each(protectedRoutes)('%s %s without a token → 401 with a Bearer challenge', async (method, path) => {
    const res = await h.call(path, { method, token: null, json: method === 'GET' || method === 'DELETE' ? undefined : buildBody() });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('unauthorized');
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it.each([
    ['a wrong token', { authorization: 'Bearer wrong-token-wrong-token' }],
    ['the token with a suffix', { authorization: `Bearer ${TOKEN}x` }],
    ['a token prefix', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
    ['another scheme', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
    ['an empty bearer', { authorization: 'Bearer ' }],
    ['the token without a scheme', { authorization: TOKEN }],
  ])('%s → 401 invalid_token, nothing created', async (_name, headers) => {
    const before = await h.counts();
    const res = await h.call('/api/v1/builds', { token: null, headers, json: buildBody({ repository: 'auth/web' }) });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('invalid_token');
    expect(await h.counts()).toEqual(before);
    expect(h.starter.starts).toEqual([]);
  });

  it('accepts the token with any case of the scheme', async () => {
    const res = await h.call('/api/v1/namespaces', { token: null, headers: { authorization: `bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
  });

  it('a namespace-scoped principal gets 403 outside its namespace', async () => {
    const scoped: Record<string, Principal> = { 'team-a-token-0123456789': { kind: 'namespace', namespace: 'team-a' } };
    const app = makeApp(h.handle, new FakeBuildStarter(), { authenticate: (t) => scoped[t] ?? (t === TOKEN ? { kind: 'admin' } : null) });
    const other = await request(app, '/api/v1/repositories', { json: { namespace: 'team-b', name: 'web' } });
    const mine = await request(app, '/api/v1/repositories', { json: { namespace: 'team-b', name: 'web' }, token: 'team-a-token-0123456789' });
    expect(other.status).toBe(201);
    expect(mine.status).toBe(403);
    expect(mine.body.error.code).toBe('forbidden');
    const get = await request(app, `/api/v1/repositories/${other.body.id}`, { token: 'team-a-token-0123456789' });
    expect(get.status).toBe(403);
    const build = await request(app, '/api/v1/builds', { json: buildBody({ repository: 'team-b/web' }), token: 'team-a-token-0123456789' });
    expect(build.status).toBe(403);
    const ns = await request(app, '/api/v1/namespaces', { json: { name: 'team-c' }, token: 'team-a-token-0123456789' });
    expect(ns.status).toBe(403);
    const own = await request(app, '/api/v1/builds', { json: buildBody({ repository: 'team-a/web' }), token: 'team-a-token-0123456789' });
    expect(own.status).toBe(202);
  });
});

describe('body limit', () => {
  it('413 for a body over maxBodyBytes, with or without Content-Length, nothing created', async () => {
    const before = await h.counts();
    const huge = JSON.stringify(buildBody({ repository: 'big/web', dockerfile: `FROM x\n${'#'.repeat(1024 * 1024)}` }));
    const plain = await h.call('/api/v1/builds', { body: huge, headers: { 'content-type': 'application/json' } });
    expect(plain.status).toBe(413);
    expect(plain.body.error).toMatchObject({ code: 'payload_too_large', details: { maxBodyBytes: 1024 * 1024 } });
    const declared = await h.call('/api/v1/builds', {
      body: huge,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(huge)) },
    });
    expect(declared.status).toBe(413);
    expect(await h.counts()).toEqual(before);
  });

  it('honours a smaller configured limit', async () => {
    const app = makeApp(h.handle, new FakeBuildStarter(), { config: { maxBodyBytes: 100 } });
    const res = await request(app, '/api/v1/builds', { json: buildBody({ repository: 'small/web' }) });
    expect(res.status).toBe(413);
  });
});

describe('OpenAPI document and docs', () => {
  it('is public, OpenAPI 3.1, lists every route and the bearer scheme', async () => {
    const res = await h.call('/api/v1/openapi.json', { token: null });
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    const ops = Object.entries(doc.paths).flatMap(([p, item]: [string, any]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`));
    expect(ops.sort()).toEqual(
      [
        'GET /healthz',
        'GET /readyz',
        'GET /metrics',
        'POST /api/v1/namespaces',
        'GET /api/v1/namespaces',
        'POST /api/v1/repositories',
        'GET /api/v1/repositories',
        'GET /api/v1/repositories/{id}',
        'PATCH /api/v1/repositories/{id}',
        'DELETE /api/v1/repositories/{id}',
        'GET /api/v1/repositories/{id}/tags',
        'POST /api/v1/builds',
        'GET /api/v1/builds',
        'GET /api/v1/builds/{id}',
        'GET /api/v1/builds/{id}/logs',
        'POST /api/v1/builds/{id}/cancel',
        'POST /api/v1/repositories/{id}/rules',
        'GET /api/v1/repositories/{id}/rules',
        'GET /api/v1/rules/{id}',
        'PATCH /api/v1/rules/{id}',
        'DELETE /api/v1/rules/{id}',
        'POST /api/v1/rules/{id}/builds',
        'POST /api/v1/imagebuilds',
        'POST /api/v1/contexts',
        'POST /api/v1/builds/{id}/rebuild',
        'POST /api/v1/repositories/{id}/source/rotate',
        'GET /api/v1/repositories/{id}/deliveries',
        'POST /api/v1/repositories/{id}/rules/preview',
        'GET /api/v1/imagebuilds/{id}',
        'POST /api/v1/rules/{id}/schedule/pause',
        'POST /api/v1/rules/{id}/schedule/unpause',
        'POST /api/v1/namespaces/{name}/subscriptions',
        'GET /api/v1/namespaces/{name}/subscriptions',
        'GET /api/v1/subscriptions/{id}',
        'PATCH /api/v1/subscriptions/{id}',
        'DELETE /api/v1/subscriptions/{id}',
        'GET /api/v1/subscriptions/{id}/deliveries',
        'POST /api/v1/subscriptions/{id}/deliveries/{deliveryId}/redeliver',
        'POST /webhooks/registry',
        'GET /registry/token',
        'POST /registry/token',
        'POST /webhooks/{provider}',
        'PATCH /api/v1/namespaces/{name}',
        'POST /api/v1/namespaces/{name}/tokens',
        'GET /api/v1/namespaces/{name}/tokens',
        'DELETE /api/v1/namespaces/{name}/tokens/{id}',
      ].sort(),
    );
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    // The request schema is the validating one.
    const submit = doc.components.schemas.BuildSubmit;
    expect(submit.required.sort()).toEqual(['platforms', 'repository', 'tags']);
    expect(submit.properties.context).toBeDefined();
    expect(submit.properties.platforms.items.enum).toEqual(['linux/amd64', 'linux/arm64']);
    expect(submit.properties.tags.maxItems).toBe(5);
    expect(submit.properties.buildArgs.maxProperties).toBe(20);
    expect(doc.paths['/api/v1/builds'].post.responses['202']).toBeDefined();
    expect(doc.components.schemas.Error).toBeDefined();
    expect(JSON.stringify(doc.components.schemas.Repository)).not.toMatch(/token"|webhookSecret/i);
  });

  it('serves Swagger UI at /docs pointing at the document', async () => {
    const res = await h.call('/docs', { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.text).toContain('/api/v1/openapi.json');
  });

  it('serves the Swagger UI assets itself, so /docs works without internet', async () => {
    const page = await h.call('/docs', { token: null });
    const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThanOrEqual(2);
    for (const url of assets) {
      expect(url.startsWith('/')).toBe(true); // no CDN
      const res = await h.call(url, { token: null });
      expect(res.status).toBe(200);
      expect(res.text.length).toBeGreaterThan(1000);
    }
    expect((await h.call('/docs/assets/swagger-ui-dist/package.json', { token: null })).status).toBe(404);
  });
});

describe('health, readiness, metrics', () => {
  it('healthz → ok without a token', async () => {
    const res = await h.call('/healthz', { token: null });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('readyz → 200 when every check passes', async () => {
    const app = makeApp(h.handle, new FakeBuildStarter(), {
      readiness: { temporal: async () => {}, registry: async () => {} },
    });
    const res = await request(app, '/readyz', { token: null });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready', checks: { database: { ok: true }, temporal: { ok: true }, registry: { ok: true } } });
  });

  it("readyz → 503 naming each failing check's message", async () => {
    const app = makeApp(h.handle, new FakeBuildStarter(), {
      readiness: {
        temporal: async () => {
          throw new Error('connect ECONNREFUSED 127.0.0.1:7233');
        },
        'buildkit-linux-arm64': async () => {
          throw new Error('buildkitd not answering');
        },
        registry: async () => {},
      },
    });
    const res = await request(app, '/readyz', { token: null });
    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      status: 'not_ready',
      checks: {
        database: { ok: true },
        temporal: { ok: false, error: 'connect ECONNREFUSED 127.0.0.1:7233' },
        'buildkit-linux-arm64': { ok: false, error: 'buildkitd not answering' },
        registry: { ok: true },
      },
    });
  });

  it('metrics → Prometheus text with request counts by route pattern and builds by status', async () => {
    const app = makeApp(h.handle, new FakeBuildStarter());
    const sub = await request(app, '/api/v1/builds', { json: buildBody({ repository: 'metrics/web' }) });
    await request(app, `/api/v1/builds/${sub.body.buildId}`);
    await request(app, '/api/v1/builds/00000000-0000-4000-8000-000000000000');
    await request(app, '/api/v1/builds', { token: null });
    const res = await request(app, '/metrics', { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(res.text).toContain('# TYPE kiln_http_requests_total counter');
    expect(res.text).toContain('kiln_http_requests_total{method="POST",route="/api/v1/builds",status="202"} 1');
    expect(res.text).toContain('kiln_http_requests_total{method="GET",route="/api/v1/builds/:id",status="200"} 1');
    expect(res.text).toContain('kiln_http_requests_total{method="GET",route="/api/v1/builds/:id",status="404"} 1');
    expect(res.text).not.toContain(sub.body.buildId);
    const queued = /kiln_builds_total\{status="queued"\} (\d+)/.exec(res.text);
    expect(Number(queued?.[1])).toBeGreaterThanOrEqual(1);
    expect(res.text).toMatch(/kiln_builds_total\{status="timed_out"\} \d+/);
  });

  it('unknown routes → 404 in the error shape', async () => {
    const res = await h.call('/nope', { token: null });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });

  it('an unexpected failure → 500 internal without internals', async () => {
    const app = createApp({
      db: h.db,
      logSignals: h.handle.logSignals,
      builds: new FakeBuildStarter(),
      config: {
        apiToken: TOKEN,
        maxBodyBytes: 1024,
        temporalUiUrl: null,
        temporalNamespace: 'default',
        registry: 'r',
        secretKey: 'k',
        publicUrl: 'http://x',
      },
      authenticate: () => {
        throw new Error('database password is hunter2');
      },
    });
    const original = console.error;
    console.error = () => {};
    try {
      const res = await request(app, '/api/v1/namespaces');
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ error: { code: 'internal', message: 'Internal server error', details: null, requestId: expect.any(String) } });
    } finally {
      console.error = original;
    }
  });
});

describe('namespaces', () => {
  it('creates, lists, and refuses duplicates and bad names', async () => {
    const res = await h.call('/api/v1/namespaces', {
      json: { name: 'ns.one', defaultVisibility: 'public', defaultImmutableTags: true, autoCreateRepository: false },
    });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.any(String),
      name: 'ns.one',
      defaultVisibility: 'public',
      defaultImmutableTags: true,
      defaultAcceleratedImages: false,
      autoCreateRepository: false,
      buildPool: null,
      // The quotas in force: the deployment's defaults until an admin sets them.
      maxConcurrentBuilds: 4,
      maxTimeoutMinutes: 1440,
      maxRepositories: 1000,
      maxRules: 1000,
      createdAt: expect.any(String),
    });
    expect((await h.call('/api/v1/namespaces', { json: { name: 'ns.one' } })).status).toBe(409);
    for (const name of ['UPPER', 'a..b', '-a', 'a-', 'x'.repeat(65), '', 'a/b']) {
      const bad = await h.call('/api/v1/namespaces', { json: { name } });
      expect(bad.status, name).toBe(400);
    }
    const list = await h.call('/api/v1/namespaces');
    expect(list.status).toBe(200);
    expect(list.body.nextCursor).toBeNull();
    expect(list.body.items.map((n: any) => n.name)).toContain('ns.one');
  });
});
