// The served OpenAPI document and the checks derived from it: what schemathesis and a security
// review found (a 500 for a NUL, a null webhook body, a cursor with year 0000, a deeply nested PAI
// Resource; undocumented methods) answers a documented 4xx now, and the document says so.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count } from 'drizzle-orm';
import { builds, namespaces } from '../../../db/schema';
import { buildBody, createHarness, DB_TIMEOUT, type Harness } from './harness';

let h: Harness;
let doc: any;

beforeAll(async () => {
  h = await createHarness();
  doc = (await h.call('/api/v1/openapi.json', { token: null })).body;
}, DB_TIMEOUT);
afterAll(() => h?.close());

const buildCount = async () => Number((await h.db.select({ n: count() }).from(builds))[0]!.n);

describe('NUL characters', () => {
  it('are refused with 400 in a body, a path and a query, and the document states it', async () => {
    const before = await buildCount();
    const res = await h.call('/api/v1/builds', { json: buildBody({ dockerfile: 'FROM x\u0000\n' }) });
    expect(res.status).toBe(400);
    expect(res.body.error.details[0].message).toMatch(/NUL/);
    expect(await buildCount()).toBe(before);
    expect((await h.call('/api/v1/builds', { json: buildBody({ labels: { 'a\u0000': 'b' } }) })).status).toBe(400);
    expect((await h.call('/api/v1/namespaces/team%00a/tokens', { json: { name: 'ci' } })).status).toBe(400);
    expect((await h.call('/api/v1/namespaces/team-a/tokens', { json: { name: 'c\u0000i' } })).status).toBe(400);
    expect((await h.call('/api/v1/repositories?namespace=a%00b')).status).toBe(400);
    expect(doc.components.schemas.BuildSubmit.properties.dockerfile.pattern).toBe('^[^\\u0000]*$');
    expect(doc.components.schemas.BuildSubmit.properties.labels.propertyNames.pattern).toBe('^[^\\u0000]*$');
  });

  it('namespace names with NUL are a 400, not a 500', async () => {
    const res = await h.call('/api/v1/namespaces', { json: { name: 'a\u0000b' } });
    expect(res.status).toBe(400);
    expect(await h.db.select().from(namespaces)).toEqual([]);
  });
});

describe('cursors', () => {
  it('a cursor outside the documented form (e.g. year 0000) is a 400; every documented one pages', async () => {
    const year0 = Buffer.from('0000-01-01T00:00:00.000Z|00000000-0000-4000-8000-000000000000').toString('base64url');
    expect((await h.call(`/api/v1/builds?cursor=${year0}`)).status).toBe(400);
    expect(doc.paths['/api/v1/builds'].get.parameters.find((p: any) => p.name === 'cursor').schema.pattern).toMatch(/^\^/);
    for (const ms of ['0', '99999999999999']) {
      const res = await h.call(`/api/v1/builds?cursor=${ms}_00000000-0000-4000-8000-000000000000`);
      expect(res.status).toBe(200);
    }
  });

  it('repository and repositoryId together filter by both', async () => {
    const res = await h.call('/api/v1/builds?repository=a/b&repositoryId=00000000-0000-4000-8000-000000000000');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ items: [], nextCursor: null });
  });
});

describe('PAI Resource', () => {
  it('a deeply nested Resource is a 400 (Resource is flat), not a 500', async () => {
    const depth = 100_000;
    const nested = `${'{"a":'.repeat(depth)}"x"${'}'.repeat(depth)}`;
    const res = await h.call('/api/v1/imagebuilds', {
      body: `{"Image":{"Uri":"team/trainer:v1"},"BuildConfig":{"Dockerfile":"FROM x"},"Resource":{"Deep":${nested}}}`,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(400);
  });
});

describe('webhooks', () => {
  it.each(['null', '[]', '"text"', '42'])('a %s body is a 400', async (body) => {
    const res = await h.call('/webhooks/github', {
      body,
      token: null,
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': 'd1' },
    });
    expect(res.status).toBe(400);
  });

  it('are documented with their providers and signature schemes', () => {
    const op = doc.paths['/webhooks/{provider}'].post;
    expect(op.parameters.find((p: any) => p.in === 'path' && p.name === 'provider').schema.enum).toEqual(['github', 'gitlab', 'gitee', 'bitbucket', 'gitea', 'forgejo']);
    expect(op.security.map((s: any) => Object.keys(s)[0]).sort()).toEqual(['bitbucketSignature', 'forgejoSignature', 'giteaSignature', 'giteeSignature', 'githubSignature', 'gitlabToken']);
    expect(op.responses['202'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/WebhookResult' });
  });
});

describe('methods and bodies', () => {
  it('a documented path with an undocumented method is a 405 with Allow', async () => {
    const res = await h.call('/api/v1/builds', { method: 'PUT' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, POST');
    expect((await h.call('/api/v1/nothing-here')).status).toBe(404);
  });

  it('a required body that is missing is a 400, not an empty object', async () => {
    const repo = await h.call('/api/v1/repositories', { json: { namespace: 'docs', name: 'web' } });
    const res = await h.call(`/api/v1/repositories/${repo.body.id}`, { method: 'PATCH' });
    expect(res.status).toBe(400);
    expect(res.body.error.details[0].message).toMatch(/body is required/);
  });

  it('a nullable object renders as anyOf, so null validates', () => {
    expect(doc.components.schemas.Repository.properties.source.anyOf).toEqual([{ $ref: '#/components/schemas/Source' }, { type: 'null' }]);
  });
});
