// Request ids (X-Request-Id in, echoed out, in every API log line and error body) and the metrics token.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { metricsOnlyApp } from '../../../observability/metrics-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, DB_TIMEOUT, FakeBuildStarter, makeApp, request, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());

/** An app whose logger writes JSON lines into `lines`, at debug so every request logs one. */
function appWithLog(overrides: Parameters<typeof makeApp>[2] = {}) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const app = makeApp(h.handle, new FakeBuildStarter(), { logger: pino({ level: 'debug' }, sink), ...overrides });
  return { app, lines };
}

describe('request id', () => {
  it('echoes a given X-Request-Id and names it in the log line and the error body', async () => {
    const { app, lines } = appWithLog();
    const res = await request(app, '/api/v1/builds/00000000-0000-4000-8000-000000000000', { headers: { 'x-request-id': 'ci-run-42_a' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-request-id')).toBe('ci-run-42_a');
    expect(res.body.error).toMatchObject({ code: 'not_found', requestId: 'ci-run-42_a' });
    const logged = lines.filter((l) => l.requestId === 'ci-run-42_a');
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ component: 'api', route: '/api/v1/builds/:id', status: 404, method: 'GET' });
  });

  it('generates a UUID when none (or an unsafe one) is given, distinct per request', async () => {
    const { app } = appWithLog();
    const a = await request(app, '/healthz', { token: null });
    const b = await request(app, '/healthz', { token: null, headers: { 'x-request-id': 'has spaces\tand "quotes"' } });
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(a.headers.get('x-request-id')).toMatch(uuid);
    expect(b.headers.get('x-request-id')).toMatch(uuid);
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
  });

  it('is in validation, auth and unknown-route errors, and in the 500 log line with the error', async () => {
    const { app } = appWithLog();
    const invalid = await request(app, '/api/v1/builds', { json: { repository: 'NOT VALID' }, headers: { 'x-request-id': 'r1' } });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.requestId).toBe('r1');
    const unauth = await request(app, '/api/v1/builds', { token: null, headers: { 'x-request-id': 'r2' } });
    expect(unauth.status).toBe(401);
    expect(unauth.body.error.requestId).toBe('r2');
    const nowhere = await request(app, '/nope', { token: null, headers: { 'x-request-id': 'r3' } });
    expect(nowhere.status).toBe(404);
    expect(nowhere.body.error.requestId).toBe('r3');

    const failing = appWithLog({
      authenticate: () => {
        throw new Error('boom in the authenticator');
      },
    });
    const res = await request(failing.app, '/api/v1/namespaces', { headers: { 'x-request-id': 'r4' } });
    expect(res.status).toBe(500);
    expect(res.body.error).toEqual({ code: 'internal', message: 'Internal server error', details: null, requestId: 'r4' });
    const errorLine = failing.lines.find((l) => l.level === 50);
    expect(errorLine).toMatchObject({ requestId: 'r4', err: { message: 'boom in the authenticator' } });
  });

  it('is documented in the OpenAPI Error schema', async () => {
    const res = await request(makeApp(h.handle, new FakeBuildStarter()), '/api/v1/openapi.json', { token: null });
    expect(res.body.components.schemas.Error.properties.error.properties.requestId).toMatchObject({ type: 'string' });
  });
});

describe('metrics token', () => {
  const metricsToken = 'metrics-token-0123456789';

  it('GET /metrics needs the bearer token when KILN_METRICS_TOKEN is set', async () => {
    const app = makeApp(h.handle, new FakeBuildStarter(), { config: { metricsToken } });
    const none = await request(app, '/metrics', { token: null });
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('unauthorized');
    expect(none.text).not.toContain('kiln_http_requests_total');
    expect((await request(app, '/metrics', { token: 'test-admin-token-0123456789' })).status).toBe(401);
    const ok = await request(app, '/metrics', { token: metricsToken });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('# TYPE kiln_http_requests_total counter');
    // Default process metrics and the build metrics are exposed next to the HTTP ones.
    expect(ok.text).toContain('kiln_process_cpu_seconds_total');
    expect(ok.text).toContain('# TYPE kiln_build_duration_seconds histogram');
  });

  it('GET /metrics stays open without it', async () => {
    const res = await request(makeApp(h.handle, new FakeBuildStarter()), '/metrics', { token: null });
    expect(res.status).toBe(200);
  });
});

describe('metrics without the API (KILN_METRICS_PORT)', () => {
  it('serves the process and build metrics alone, behind the token when one is set', async () => {
    const app = metricsOnlyApp('metrics-token-0123456789');
    expect((await app.request('/metrics')).status).toBe(401);
    expect((await app.request('/metrics', { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
    const ok = await app.request('/metrics', { headers: { authorization: 'Bearer metrics-token-0123456789' } });
    expect(ok.status).toBe(200);
    const text = await ok.text();
    expect(text).toContain('# TYPE kiln_build_phase_duration_seconds histogram');
    expect(text).toContain('kiln_process_cpu_seconds_total');
    expect(text).not.toContain('kiln_http_requests_total');
    expect((await metricsOnlyApp().request('/metrics')).status).toBe(200);
  });
});
