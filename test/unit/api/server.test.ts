import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveApi } from '../../../api/server';
import { buildBody, createHarness, DB_TIMEOUT, TOKEN, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());

describe('serveApi', () => {
  it('serves over HTTP on an ephemeral port and closes even with a log stream open', async () => {
    const server = await serveApi(h.app, { port: 0, host: '127.0.0.1' });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${server.url}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });

    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const submit = await fetch(`${server.url}/api/v1/builds`, { method: 'POST', headers, body: JSON.stringify(buildBody()) });
    expect(submit.status).toBe(202);
    const { buildId } = (await submit.json()) as { buildId: string };
    const stream = await fetch(`${server.url}/api/v1/builds/${buildId}/logs?follow=1`, { headers });
    expect(stream.headers.get('content-type')).toContain('text/event-stream');
    const reader = stream.body!.getReader();

    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(2000);
    await reader.read().catch(() => undefined);
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });
});
