import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokens, builds } from '../../../db/schema';
import { buildBody, createHarness, DB_TIMEOUT, type Harness } from './harness';

let h: Harness;
let token: string;
let otherRepoId: string;

beforeAll(async () => {
  h = await createHarness();
  await h.call('/api/v1/namespaces', { json: { name: 'team-a' } });
  await h.call('/api/v1/namespaces', { json: { name: 'team-b' } });
  otherRepoId = (await h.call('/api/v1/repositories', { json: { namespace: 'team-b', name: 'secret' } })).body.id;
  const created = await h.call('/api/v1/namespaces/team-a/tokens', { json: { name: 'ci' } });
  expect(created.status).toBe(201);
  token = created.body.token;
}, DB_TIMEOUT);
afterAll(() => h?.close());

describe('namespace tokens', () => {
  it('are shown once and stored only as a hash', async () => {
    const rows = await h.db.select().from(apiTokens);
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(token);
    const list = await h.call('/api/v1/namespaces/team-a/tokens');
    expect(list.body.items).toEqual([expect.objectContaining({ name: 'ci', namespace: 'team-a' })]);
    expect(list.text).not.toContain(token);
  });

  it('act within their namespace', async () => {
    const res = await h.call('/api/v1/builds', { json: buildBody({ repository: 'team-a/web' }), token });
    expect(res.status).toBe(202);
    expect((await h.call('/api/v1/repositories', { token })).body.items.map((r: any) => r.namespace)).toEqual(['team-a']);
  });

  it('get 403 in another namespace and for admin operations, and change nothing', async () => {
    const before = await h.counts();
    expect((await h.call('/api/v1/builds', { json: buildBody({ repository: 'team-b/web' }), token })).status).toBe(403);
    expect((await h.call(`/api/v1/repositories/${otherRepoId}`, { token })).status).toBe(403);
    expect((await h.call('/api/v1/namespaces', { json: { name: 'team-c' }, token })).status).toBe(403);
    expect((await h.call('/api/v1/namespaces/team-b/tokens', { json: { name: 'steal' }, token })).status).toBe(403);
    expect(await h.counts()).toEqual(before);
  });

  it('an unknown token is 401', async () => {
    expect((await h.call('/api/v1/repositories', { token: `${token}x` })).status).toBe(401);
  });
});

describe('token expiry and last use', () => {
  it('a new token shows no use; a use is recorded and listed', async () => {
    const created = await h.call('/api/v1/namespaces/team-a/tokens', { json: { name: 'audit' } });
    expect(created.body).toMatchObject({ name: 'audit', expiresAt: null, lastUsedAt: null, expired: false });
    expect((await h.call('/api/v1/repositories', { token: created.body.token })).status).toBe(200);
    const listed = (await h.call('/api/v1/namespaces/team-a/tokens')).body.items.find((t: any) => t.id === created.body.id);
    expect(Date.now() - Date.parse(listed.lastUsedAt)).toBeLessThan(60_000);
  });

  it('a token with an expiry works until then and is refused after, shown as expired', async () => {
    const created = await h.call('/api/v1/namespaces/team-a/tokens', { json: { name: 'short', expiresInDays: 1 } });
    expect(created.status).toBe(201);
    const days = (Date.parse(created.body.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(0.99);
    expect(days).toBeLessThanOrEqual(1);
    expect((await h.call('/api/v1/repositories', { token: created.body.token })).status).toBe(200);

    await h.db.update(apiTokens).set({ expiresAt: new Date(Date.now() - 1000) }).where(eq(apiTokens.id, created.body.id));
    const refused = await h.call('/api/v1/repositories', { token: created.body.token });
    expect(refused.status).toBe(401);
    const listed = (await h.call('/api/v1/namespaces/team-a/tokens')).body.items.find((t: any) => t.id === created.body.id);
    expect(listed.expired).toBe(true);
  });

  it.each([0, -1, 3651, 1.5, '30'])('expiresInDays %j is a 400 and creates nothing', async (expiresInDays) => {
    const before = (await h.db.select().from(apiTokens)).length;
    const res = await h.call('/api/v1/namespaces/team-a/tokens', { json: { name: 'bad', expiresInDays } });
    expect(res.status).toBe(400);
    expect((await h.db.select().from(apiTokens)).length).toBe(before);
  });

  it('a revoked token is refused at once', async () => {
    const created = await h.call('/api/v1/namespaces/team-a/tokens', { json: { name: 'gone' } });
    expect((await h.call(`/api/v1/namespaces/team-a/tokens/${created.body.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await h.call('/api/v1/repositories', { token: created.body.token })).status).toBe(401);
  });
});

describe('clientToken', () => {
  it('is unique per namespace: the same token in two namespaces makes two builds, a retry in one the same build', async () => {
    const body = (repository: string) => buildBody({ repository, clientToken: 'shared-token-1' });
    const a = await h.call('/api/v1/builds', { json: body('ct-a/web') });
    const b = await h.call('/api/v1/builds', { json: body('ct-b/web') });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.buildId).not.toBe(a.body.buildId);
    const retry = await h.call('/api/v1/builds', { json: body('ct-a/web') });
    expect(retry.body.buildId).toBe(a.body.buildId);
    // Another repository of the same namespace: the token is taken there for a different request.
    const clash = await h.call('/api/v1/builds', { json: body('ct-a/api') });
    expect(clash.status).toBe(409);
    expect((await h.db.select().from(builds).where(eq(builds.clientToken, 'shared-token-1'))).length).toBe(2);
  });
});
