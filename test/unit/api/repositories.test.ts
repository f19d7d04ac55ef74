import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptSecret } from '../../../db/crypto';
import { finishBuild } from '../../../db/queries/builds';
import { insertNamespace } from '../../../db/queries/namespaces';
import { upsertImageTags } from '../../../db/queries/tags';
import { repositories } from '../../../db/schema';
import { githubPush } from '../../support/webhooks';
import { buildBody, createHarness, DB_TIMEOUT, PUBLIC_URL, SECRET_KEY, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());

const create = (json: unknown) => h.call('/api/v1/repositories', { json });

describe('POST /repositories', () => {
  it('creates the repository and its namespace with defaults', async () => {
    const before = await h.counts();
    const res = await create({ namespace: 'acme', name: 'web', summary: 'The site', description: '# Web' });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      namespace: 'acme',
      name: 'web',
      path: 'acme/web',
      visibility: 'private',
      immutableTags: false,
      acceleratedImages: false,
      summary: 'The site',
      description: '# Web',
      source: null,
      buildSettings: { autoBuild: true, noCache: false },
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(await h.counts()).toMatchObject({ namespaces: before.namespaces + 1, repositories: before.repositories + 1 });
  });

  it('takes omitted visibility, immutableTags and acceleratedImages from the namespace', async () => {
    await insertNamespace(h.db, {
      name: 'strict',
      defaultVisibility: 'public',
      defaultImmutableTags: true,
      defaultAcceleratedImages: true,
    });
    const inherited = await create({ namespace: 'strict', name: 'a' });
    expect(inherited.body).toMatchObject({ visibility: 'public', immutableTags: true, acceleratedImages: true });
    const explicit = await create({ namespace: 'strict', name: 'b', visibility: 'private', immutableTags: false, acceleratedImages: false });
    expect(explicit.body).toMatchObject({ visibility: 'private', immutableTags: false, acceleratedImages: false });
  });

  it('409 for a duplicate namespace/name', async () => {
    await create({ namespace: 'dup', name: 'web' });
    const again = await create({ namespace: 'dup', name: 'web' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('conflict');
  });

  it.each([
    ['uppercase name', { namespace: 'acme', name: 'Web' }],
    ['slash in name', { namespace: 'acme', name: 'a/b' }],
    ['bad namespace', { namespace: '-acme', name: 'web' }],
    ['namespace too long', { namespace: 'a'.repeat(65), name: 'web' }],
    ['bad visibility', { namespace: 'acme', name: 'x1', visibility: 'secret' }],
    ['wrong type', { namespace: 'acme', name: 'x2', immutableTags: 'yes' }],
    ['unknown provider', { namespace: 'acme', name: 'x3', source: { provider: 'svn', url: 'https://example.test/r' } }],
    ['credentials in the URL', { namespace: 'acme', name: 'x4', source: { provider: 'github', url: 'https://u:p@github.com/a/b.git' } }],
    ['not a URL', { namespace: 'acme', name: 'x5', source: { provider: 'git', url: 'just words' } }],
    ['short webhook secret', { namespace: 'acme', name: 'x6', source: { provider: 'github', url: 'https://github.com/a/b', webhookSecret: 'short' } }],
    ['unknown field', { namespace: 'acme', name: 'x7', owner: 'me' }],
  ])('%s → 400, nothing created', async (_name, body) => {
    const before = await h.counts();
    const res = await create(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(await h.counts()).toEqual(before);
  });
});

describe('repository secrets', () => {
  const token = 'ghp_SuperSecretToken1234567890';

  it('generates a webhook secret, returns it once with the URL, stores everything encrypted', async () => {
    const res = await create({
      namespace: 'sec',
      name: 'gen',
      source: { provider: 'github', url: 'https://github.com/acme/gen.git', token },
    });
    expect(res.status).toBe(201);
    const secret = res.body.source.webhookSecret as string;
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(res.body.source).toEqual({
      provider: 'github',
      url: 'https://github.com/acme/gen.git',
      hasToken: true,
      webhookUrl: `${PUBLIC_URL}/webhooks/github`,
      webhookSecret: secret,
    });
    expect(res.text).not.toContain(token);

    const [row] = await h.db.select().from(repositories).where(eq(repositories.id, res.body.id));
    expect(row!.sourceTokenEnc).not.toBe(token);
    expect(row!.sourceTokenEnc).not.toContain(token);
    expect(row!.sourceTokenEnc).toMatch(/^v1:/);
    expect(row!.webhookSecretEnc).not.toContain(secret);
    expect(decryptSecret(SECRET_KEY, row!.sourceTokenEnc!)).toBe(token);
    expect(decryptSecret(SECRET_KEY, row!.webhookSecretEnc!)).toBe(secret);

    // Never again: not in get, list, patch or tags.
    const id = res.body.id;
    const later = [
      await h.call(`/api/v1/repositories/${id}`),
      await h.call('/api/v1/repositories?namespace=sec'),
      await h.call('/api/v1/repositories'),
      await h.call(`/api/v1/repositories/${id}`, { method: 'PATCH', json: { summary: 'changed' } }),
      await h.call(`/api/v1/repositories/${id}/tags`),
    ];
    for (const r of later) {
      expect(r.status).toBe(200);
      expect(r.text).not.toContain(token);
      expect(r.text).not.toContain(secret);
      expect(r.text).not.toContain('webhookSecret');
      expect(r.text).not.toContain(row!.sourceTokenEnc!);
    }
    expect(later[0]!.body.source).toEqual({
      provider: 'github',
      url: 'https://github.com/acme/gen.git',
      hasToken: true,
      webhookUrl: `${PUBLIC_URL}/webhooks/github`,
    });
  });

  it('keeps a given webhook secret without echoing it', async () => {
    const given = 'my-own-webhook-secret-0123456789';
    const res = await create({ namespace: 'sec', name: 'given', source: { provider: 'gitlab', url: 'https://gitlab.com/a/b.git', webhookSecret: given } });
    expect(res.status).toBe(201);
    expect(res.text).not.toContain(given);
    expect(res.body.source).toEqual({ provider: 'gitlab', url: 'https://gitlab.com/a/b.git', hasToken: false, webhookUrl: `${PUBLIC_URL}/webhooks/gitlab` });
    const [row] = await h.db.select().from(repositories).where(eq(repositories.id, res.body.id));
    expect(decryptSecret(SECRET_KEY, row!.webhookSecretEnc!)).toBe(given);
  });

  it('a plain git source has no webhook, so no secret is generated', async () => {
    const res = await create({ namespace: 'sec', name: 'plain', source: { provider: 'git', url: 'ssh://git@git.example.test/r.git' } });
    expect(res.status).toBe(201);
    expect(res.body.source).toEqual({ provider: 'git', url: 'ssh://git@git.example.test/r.git', hasToken: false, webhookUrl: null });
  });

  it('validation errors never echo a secret', async () => {
    const res = await create({ namespace: 'sec', name: 'BAD', source: { provider: 'github', url: 'https://github.com/a/b', token } });
    expect(res.status).toBe(400);
    expect(res.text).not.toContain(token);
  });
});

describe('GET /repositories', () => {
  it('pages with a cursor and filters by namespace', async () => {
    for (let i = 0; i < 7; i++) await create({ namespace: 'many', name: `r${i}` });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q = new URLSearchParams({ namespace: 'many', limit: '3', ...(cursor ? { cursor } : {}) });
      const res = await h.call(`/api/v1/repositories?${q}`);
      expect(res.status).toBe(200);
      for (const r of res.body.items) expect(r.namespace).toBe('many');
      seen.push(...res.body.items.map((r: any) => r.name));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual(['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    expect((await h.call('/api/v1/repositories?limit=20')).body.items.length).toBeGreaterThan(7);
  });

  it('400 for a bad cursor or limit', async () => {
    expect((await h.call('/api/v1/repositories?cursor=abc')).status).toBe(400);
    expect((await h.call('/api/v1/repositories?limit=500')).status).toBe(400);
  });
});

describe('GET|PATCH|DELETE /repositories/:id', () => {
  it('gets, patches and deletes', async () => {
    const { body } = await create({ namespace: 'crud', name: 'web' });
    expect((await h.call(`/api/v1/repositories/${body.id}`)).body).toEqual(body);

    const patched = await h.call(`/api/v1/repositories/${body.id}`, {
      method: 'PATCH',
      json: { visibility: 'public', immutableTags: true, summary: 's', buildSettings: { autoBuild: false } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      visibility: 'public',
      immutableTags: true,
      acceleratedImages: false,
      summary: 's',
      buildSettings: { autoBuild: false, noCache: false },
    });
    expect((await h.call(`/api/v1/repositories/${body.id}`, { method: 'PATCH', json: { name: 'renamed' } })).status).toBe(400);
    expect((await h.call(`/api/v1/repositories/${body.id}`, { method: 'PATCH', json: { visibility: 'hidden' } })).status).toBe(400);

    const del = await h.call(`/api/v1/repositories/${body.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect((await h.call(`/api/v1/repositories/${body.id}`)).status).toBe(404);
    expect((await h.call(`/api/v1/repositories/${body.id}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('refuses to delete while a build is in progress', async () => {
    const repo = await create({ namespace: 'crud', name: 'busy' });
    const build = await h.call('/api/v1/builds', { json: buildBody({ repository: 'crud/busy' }) });
    const del = await h.call(`/api/v1/repositories/${repo.body.id}`, { method: 'DELETE' });
    expect(del.status).toBe(409);
    await finishBuild(h.db, build.body.buildId, { status: 'succeeded' });
    expect((await h.call(`/api/v1/repositories/${repo.body.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await h.call(`/api/v1/builds/${build.body.buildId}`)).status).toBe(404);
  });

  it('404 for unknown and non-UUID ids on every verb', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'nope', '42']) {
      expect((await h.call(`/api/v1/repositories/${id}`)).status).toBe(404);
      expect((await h.call(`/api/v1/repositories/${id}`, { method: 'PATCH', json: { summary: 'x' } })).status).toBe(404);
      expect((await h.call(`/api/v1/repositories/${id}`, { method: 'DELETE' })).status).toBe(404);
      expect((await h.call(`/api/v1/repositories/${id}/tags`)).status).toBe(404);
    }
  });
});

describe('GET /repositories/:id/tags', () => {
  it('lists image versions with their creation method', async () => {
    const repo = await create({ namespace: 'tags', name: 'web' });
    const build = await h.call('/api/v1/builds', { json: buildBody({ repository: 'tags/web' }) });
    await upsertImageTags(h.db, {
      repositoryId: repo.body.id,
      tags: ['v1', 'latest'],
      digest: `sha256:${'d'.repeat(64)}`,
      buildId: build.body.buildId,
      creationMethod: 'manual build',
    });
    await upsertImageTags(h.db, {
      repositoryId: repo.body.id,
      tags: ['pushed'],
      digest: `sha256:${'e'.repeat(64)}`,
      buildId: null,
      creationMethod: 'user push',
    });
    const res = await h.call(`/api/v1/repositories/${repo.body.id}/tags`);
    expect(res.status).toBe(200);
    expect(res.body.nextCursor).toBeNull();
    expect(res.body.items).toEqual([
      { tag: 'latest', digest: `sha256:${'d'.repeat(64)}`, creationMethod: 'manual build', buildId: build.body.buildId, createdAt: expect.any(String), updatedAt: expect.any(String) },
      { tag: 'pushed', digest: `sha256:${'e'.repeat(64)}`, creationMethod: 'user push', buildId: null, createdAt: expect.any(String), updatedAt: expect.any(String) },
      { tag: 'v1', digest: `sha256:${'d'.repeat(64)}`, creationMethod: 'manual build', buildId: build.body.buildId, createdAt: expect.any(String), updatedAt: expect.any(String) },
    ]);
  });
});

describe('POST /repositories/:id/source/rotate', () => {
  const URL = 'https://github.com/acme/rotate.git';
  const OLD = 'old-webhook-secret-0123456789';
  const stored = async (id: string) => (await h.db.select().from(repositories).where(eq(repositories.id, id)))[0]!;
  const delivery = (secret: string) => {
    const d = githubPush({ repoUrl: URL, ref: 'refs/heads/main', after: 'b'.repeat(40), secret, files: { modified: ['x'] } });
    return h.call('/webhooks/github', { body: d.body, headers: d.headers, token: null });
  };

  it('replaces the webhook secret (generated, shown once) and the git token; the old secret is refused after', async () => {
    const created = await h.call('/api/v1/repositories', {
      json: { namespace: 'rotate', name: 'app', source: { provider: 'github', url: URL, token: 'ghp_old', webhookSecret: OLD } },
    });
    const id = created.body.id;
    expect((await delivery(OLD)).status).not.toBe(401);

    const res = await h.call(`/api/v1/repositories/${id}/source/rotate`, { json: { webhookSecret: 'generate', token: 'ghp_new' } });
    expect(res.status).toBe(200);
    const secret = res.body.source.webhookSecret as string;
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(res.text).not.toContain('ghp_new');
    const row = await stored(id);
    expect(decryptSecret(SECRET_KEY, row.webhookSecretEnc!)).toBe(secret);
    expect(decryptSecret(SECRET_KEY, row.sourceTokenEnc!)).toBe('ghp_new');
    // Shown once: a later read has no secret.
    expect((await h.call(`/api/v1/repositories/${id}`)).body.source.webhookSecret).toBeUndefined();

    expect((await delivery(OLD)).status).toBe(401);
    expect((await delivery(secret)).status).not.toBe(401);
  });

  it('sets a given secret without returning it, and null removes the token', async () => {
    const id = (await h.call('/api/v1/repositories', { json: { namespace: 'rotate', name: 'given', source: { provider: 'github', url: 'https://github.com/acme/given.git', token: 't0' } } })).body.id;
    const res = await h.call(`/api/v1/repositories/${id}/source/rotate`, { json: { webhookSecret: 'a-chosen-secret-of-32-characters', token: null } });
    expect(res.status).toBe(200);
    expect(res.body.source).toMatchObject({ hasToken: false });
    expect(res.body.source.webhookSecret).toBeUndefined();
    const row = await stored(id);
    expect(decryptSecret(SECRET_KEY, row.webhookSecretEnc!)).toBe('a-chosen-secret-of-32-characters');
    expect(row.sourceTokenEnc).toBeNull();
  });

  it('refuses bad input with 4xx and changes nothing', async () => {
    const id = (await h.call('/api/v1/repositories', { json: { namespace: 'rotate', name: 'bad', source: { provider: 'github', url: 'https://github.com/acme/bad.git', token: 't0' } } })).body.id;
    const plain = (await h.call('/api/v1/repositories', { json: { namespace: 'rotate', name: 'nosource' } })).body.id;
    const before = await stored(id);
    for (const json of [{}, { webhookSecret: 'short' }, { token: '' }, { other: 1 }]) {
      expect((await h.call(`/api/v1/repositories/${id}/source/rotate`, { json })).status).toBe(400);
    }
    expect((await h.call(`/api/v1/repositories/${plain}/source/rotate`, { json: { token: 'x' } })).status).toBe(409);
    expect(await stored(id)).toEqual(before);
  });
});
