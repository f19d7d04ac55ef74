import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTokens } from '../../../db/schema';
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
