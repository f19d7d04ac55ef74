// Namespace quotas and the submission rate, per route: what an admin sets, what the namespace view
// shows, and refusals that name the limit and change nothing (happy, error and security cases).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { updateBuild } from '../../../db/queries/builds';
import { createSubmissionLimiter } from '../../../api/submission-limits';
import { buildBody, createHarness, DB_TIMEOUT, makeApp, request, type Harness } from './harness';

let h: Harness;
let nsToken: string;

const source = (name: string) => ({ provider: 'github', url: `https://github.com/acme/${name}.git`, webhookSecret: 'a'.repeat(32) });
const rule = (overrides: Record<string, unknown> = {}) => ({
  type: 'branch',
  match: 'main',
  platforms: ['linux/amd64'],
  tags: [{ template: 'latest' }],
  ...overrides,
});
const patch = (name: string, json: unknown, token?: string) => h.call(`/api/v1/namespaces/${name}`, { method: 'PATCH', json, token });

beforeAll(async () => {
  h = await createHarness();
  expect((await h.call('/api/v1/namespaces', { json: { name: 'quota' } })).status).toBe(201);
  expect((await h.call('/api/v1/namespaces', { json: { name: 'other' } })).status).toBe(201);
  nsToken = (await h.call('/api/v1/namespaces/quota/tokens', { json: { name: 'ci' } })).body.token;
}, DB_TIMEOUT);
afterAll(() => h?.close());
beforeEach(() => h.starter.reset());

describe('PATCH /namespaces/{name} quotas', () => {
  it('sets, shows and resets them; a changed concurrency reaches the scheduler', async () => {
    const calls = h.starter.limits;
    const res = await patch('quota', { maxConcurrentBuilds: 2, maxTimeoutMinutes: 30, maxRepositories: 2, maxRules: 1 });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ name: 'quota', maxConcurrentBuilds: 2, maxTimeoutMinutes: 30, maxRepositories: 2, maxRules: 1 });
    expect(calls).toEqual([['quota', 2]]);
    const shown = (await h.call('/api/v1/namespaces')).body.items.find((n: { name: string }) => n.name === 'quota');
    expect(shown).toMatchObject({ maxConcurrentBuilds: 2, maxTimeoutMinutes: 30, maxRepositories: 2, maxRules: 1 });
    // null: back to the deployment's default.
    const reset = await patch('quota', { maxConcurrentBuilds: null });
    expect(reset.body.maxConcurrentBuilds).toBe(4);
    expect(calls).toEqual([['quota', 2], ['quota', 4]]);
    await patch('quota', { maxConcurrentBuilds: 2 });
    expect(calls).toHaveLength(3);
    // Another setting leaves the scheduler alone.
    await patch('quota', { defaultVisibility: 'private' });
    expect(calls).toHaveLength(3);
  });

  it('refuses values out of range with 400 and changes nothing', async () => {
    const before = (await h.call('/api/v1/namespaces')).body;
    for (const bad of [{ maxConcurrentBuilds: 0 }, { maxTimeoutMinutes: 1441 }, { maxRepositories: -1 }, { maxRules: 1.5 }, { maxConcurrentBuilds: '2' }]) {
      const res = await patch('quota', bad);
      expect(res.status, JSON.stringify(bad)).toBe(400);
    }
    expect((await h.call('/api/v1/namespaces')).body).toEqual(before);
  });

  it("is admin only: the namespace's own token gets 403 and changes nothing", async () => {
    const res = await patch('quota', { maxConcurrentBuilds: 100 }, nsToken);
    expect(res.status).toBe(403);
    expect((await h.call('/api/v1/namespaces', { token: nsToken })).body.items[0].maxConcurrentBuilds).toBe(2);
  });
});

describe('quota refusals', () => {
  it('a build asking more than maxTimeoutMinutes is a 422 naming the limit; nothing is stored or started', async () => {
    const before = await h.counts();
    const res = await h.call('/api/v1/builds', { json: buildBody({ repository: 'quota/web', timeoutMinutes: 31 }) });
    expect(res.status).toBe(422);
    expect(res.body.error.message).toMatch(/maxTimeoutMinutes of 30/);
    expect(res.body.error.details).toEqual({ namespace: 'quota', quota: 'maxTimeoutMinutes', limit: 30 });
    expect(await h.counts()).toEqual(before);
    expect(h.starter.starts).toHaveLength(0);
    const ok = await h.call('/api/v1/builds', { json: buildBody({ repository: 'quota/web', timeoutMinutes: 30 }) });
    expect(ok.status, ok.text).toBe(202);
  });

  it('one repository over maxRepositories is a 422, by POST /repositories and by a build that would create one', async () => {
    // quota/web exists (above); one more fits.
    expect((await h.call('/api/v1/repositories', { json: { namespace: 'quota', name: 'app', source: source('app') } })).status).toBe(201);
    const before = await h.counts();
    const res = await h.call('/api/v1/repositories', { json: { namespace: 'quota', name: 'third' } });
    expect(res.status).toBe(422);
    expect(res.body.error.details).toEqual({ namespace: 'quota', quota: 'maxRepositories', limit: 2 });
    const auto = await h.call('/api/v1/builds', { json: buildBody({ repository: 'quota/third', timeoutMinutes: 10 }) });
    expect(auto.status).toBe(422);
    expect(auto.body.error.message).toMatch(/maximum of 2 repositories/);
    expect(await h.counts()).toEqual(before);
    // Existing repositories still build; other namespaces are not affected.
    expect((await h.call('/api/v1/builds', { json: buildBody({ repository: 'quota/web', timeoutMinutes: 10 }) })).status).toBe(202);
    expect((await h.call('/api/v1/repositories', { json: { namespace: 'other', name: 'third' } })).status).toBe(201);
  });

  it('rules: one over maxRules and a timeout over maxTimeoutMinutes are 422s; nothing changes', async () => {
    const repoId = (await h.call('/api/v1/repositories?namespace=quota')).body.items.find((r: { name: string }) => r.name === 'app').id;
    const tooLong = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ timeoutMinutes: 45 }) });
    expect(tooLong.status).toBe(422);
    expect(tooLong.body.error.details).toMatchObject({ quota: 'maxTimeoutMinutes', limit: 30 });
    // No timeoutMinutes: the rule's default (60) is above 30 as well.
    expect((await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule() })).status).toBe(422);
    const first = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ timeoutMinutes: 20 }) });
    expect(first.status, first.text).toBe(201);
    const second = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'dev', timeoutMinutes: 20 }) });
    expect(second.status).toBe(422);
    expect(second.body.error.details).toEqual({ namespace: 'quota', quota: 'maxRules', limit: 1 });
    const raise = await h.call(`/api/v1/rules/${first.body.id}`, { method: 'PATCH', json: { timeoutMinutes: 31 } });
    expect(raise.status).toBe(422);
    expect((await h.call(`/api/v1/rules/${first.body.id}`)).body.timeoutMinutes).toBe(20);
    expect((await h.call(`/api/v1/repositories/${repoId}/rules`)).body.items).toHaveLength(1);
  });
});

describe('submission rate', () => {
  it('a token bucket per namespace: 429 with Retry-After beyond the burst, others unaffected, refills with time', () => {
    let now = 0;
    const limiter = createSubmissionLimiter({ perMinute: 6, burst: 2 }, () => now);
    limiter.take('a');
    limiter.take('a');
    let refused: unknown;
    try {
      limiter.take('a');
    } catch (err) {
      refused = err;
    }
    expect(refused).toMatchObject({ code: 'too_many_requests', headers: { 'Retry-After': '10' } });
    limiter.take('b'); // its own bucket
    now += 10_000; // one token back (6 per minute)
    limiter.take('a');
    expect(() => limiter.take('a')).toThrow(/more than 6 builds per minute/);
  });

  it('POST /builds over the rate is a 429 with Retry-After that stores and starts nothing; a clientToken retry is free', async () => {
    const app = makeApp(h.handle, h.starter, { config: { submissionRate: { perMinute: 1, burst: 2 } } });
    const call = (json: unknown) => request(app, '/api/v1/builds', { json });
    const first = await call(buildBody({ repository: 'other/rate', clientToken: 'rate-1' }));
    expect(first.status, first.text).toBe(202);
    expect((await call(buildBody({ repository: 'other/rate' }))).status).toBe(202);
    const before = await h.counts();
    const starts = h.starter.starts.length;
    const res = await call(buildBody({ repository: 'other/rate' }));
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(res.body.error.code).toBe('too_many_requests');
    expect(await h.counts()).toEqual(before);
    expect(h.starter.starts).toHaveLength(starts);
    // The same request again with its clientToken is a retry, not a new submission.
    const retry = await call(buildBody({ repository: 'other/rate', clientToken: 'rate-1' }));
    expect(retry.status).toBe(202);
    expect(retry.body.buildId).toBe(first.body.buildId);
    // Another namespace has its own bucket.
    expect((await call(buildBody({ repository: 'quota/web', timeoutMinutes: 10 }))).status).toBe(202);
  });
});

describe('queue position in the build view', () => {
  it("counts the namespace's builds waiting for a slot, in request order; null once it runs", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await h.call('/api/v1/builds', { json: buildBody({ repository: 'quota/web', timeoutMinutes: 10 }) });
      ids.push(res.body.buildId);
    }
    const t = Date.now();
    // As the scheduling activity records them when each build asks for a slot.
    for (const [i, id] of ids.entries()) await updateBuild(h.db, id, { slotRequestedAt: new Date(t + i) });
    const position = async (id: string) => (await h.call(`/api/v1/builds/${id}`)).body.queuePosition;
    expect(await Promise.all(ids.map(position))).toEqual([1, 2, 3]);
    await updateBuild(h.db, ids[0]!, { status: 'running' });
    await updateBuild(h.db, ids[1]!, { status: 'canceled' });
    expect(await Promise.all(ids.map(position))).toEqual([null, null, 1]);
    // The namespace token sees the same; the list carries it too.
    expect((await h.call(`/api/v1/builds/${ids[2]}`, { token: nsToken })).body.queuePosition).toBe(1);
    const list = await h.call('/api/v1/builds?namespace=quota&status=queued', { token: nsToken });
    expect(list.body.items.find((b: { id: string }) => b.id === ids[2]).queuePosition).toBe(1);
  });
});
