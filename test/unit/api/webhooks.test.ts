import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { count } from 'drizzle-orm';
import { builds, webhookDeliveries } from '../../../db/schema';
import { githubPush, gitlabPush, type SignedDelivery } from '../../support/webhooks';
import { createHarness, DB_TIMEOUT, type Harness } from './harness';

const SECRET = 'unit-webhook-secret-0123456789';
const URL_A = 'https://github.com/acme/hooks.git';
const SHA = 'a'.repeat(40);
let h: Harness;
let repoId: string;

beforeAll(async () => {
  h = await createHarness();
  repoId = (await h.call('/api/v1/repositories', { json: { namespace: 'hooks', name: 'app', source: { provider: 'github', url: URL_A, webhookSecret: SECRET } } })).body.id;
  await h.call(`/api/v1/repositories/${repoId}/rules`, { json: { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'main' }] } });
  await h.call(`/api/v1/repositories/${repoId}/rules`, {
    json: { type: 'branch', match: 'main', platforms: ['linux/amd64'], paths: ['docs/**'], tags: [{ template: 'docs' }] },
  });
}, DB_TIMEOUT);
afterAll(() => h?.close());
beforeEach(() => h.starter.reset());

const send = (provider: string, d: SignedDelivery) => h.call(`/webhooks/${provider}`, { body: d.body, headers: d.headers, token: null });
const buildCount = async () => Number((await h.db.select({ n: count() }).from(builds))[0]!.n);
const push = (over: Partial<Parameters<typeof githubPush>[0]> = {}) =>
  githubPush({ repoUrl: URL_A, ref: 'refs/heads/main', after: SHA, secret: SECRET, files: { modified: ['src/x.ts'] }, ...over });

describe('POST /webhooks/github', () => {
  it('starts one build per matching rule, skipping rules whose path filter matches no changed file', async () => {
    const res = await send('github', push());
    expect(res.status).toBe(202);
    expect(res.body.builds).toHaveLength(1);
    expect(res.body.builds[0]).toMatchObject({ repository: 'hooks/app', ref: 'refs/heads/main', commit: SHA, status: 'queued' });
    expect(res.body.skipped).toEqual([expect.objectContaining({ reason: expect.stringContaining('docs/**') })]);
    expect(h.starter.starts.map((s) => s.trigger)).toEqual(['push']);
    const build = await h.call(`/api/v1/builds/${res.body.builds[0].buildId}`);
    expect(build.body).toMatchObject({ trigger: 'push', creationMethod: 'auto build', source: { commit: SHA } });
  });

  it('answers a redelivery with the first builds and starts nothing', async () => {
    const d = push();
    const first = await send('github', d);
    const again = await send('github', d);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ duplicate: true, builds: first.body.builds.map((b: any) => ({ buildId: b.buildId })) });
    expect(h.starter.starts).toHaveLength(1);
  });

  it('refuses bad or missing signatures with 401 and records nothing', async () => {
    const before = await buildCount();
    const deliveries = Number((await h.db.select({ n: count() }).from(webhookDeliveries))[0]!.n);
    expect((await send('github', push({ secret: 'wrong-secret-wrong-secret-00' }))).status).toBe(401);
    const unsigned = push();
    delete unsigned.headers['x-hub-signature-256'];
    expect((await send('github', unsigned)).status).toBe(401);
    expect(await buildCount()).toBe(before);
    expect(Number((await h.db.select({ n: count() }).from(webhookDeliveries))[0]!.n)).toBe(deliveries);
  });

  it('answers pings, ignores other events and deletions', async () => {
    const ping = push();
    ping.headers['x-github-event'] = 'ping';
    expect((await send('github', ping)).body).toEqual({ pong: true });
    const issue = push();
    issue.headers['x-github-event'] = 'issues';
    expect((await send('github', issue)).body).toMatchObject({ ignored: expect.stringContaining('issues') });
    const deleted = await send('github', push({ before: SHA, after: null }));
    expect(deleted.body.builds).toEqual([]);
    expect(h.starter.starts).toEqual([]);
  });

  it('answers 404 for an unbound repository, 422 for a delivery without its headers, 400 for a body that is no JSON object, 404 for an unknown provider', async () => {
    expect((await send('github', push({ repoUrl: 'https://github.com/acme/other.git' }))).status).toBe(404);
    const noDelivery = push();
    delete noDelivery.headers['x-github-delivery'];
    expect((await send('github', noDelivery)).status).toBe(422);
    expect((await send('github', { ...push(), body: '{not json' })).status).toBe(400);
    expect((await send('sourceforge', push())).status).toBe(404);
  });

  it('does not cross providers: a GitLab delivery for a GitHub-bound URL finds no repository', async () => {
    expect((await send('gitlab', gitlabPush({ repoUrl: URL_A, ref: 'refs/heads/main', after: SHA, secret: SECRET }))).status).toBe(404);
  });
});
