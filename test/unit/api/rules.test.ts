import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { count } from 'drizzle-orm';
import { buildRules, builds } from '../../../db/schema';
import { createHarness, DB_TIMEOUT, type Harness } from './harness';

let h: Harness;
let repoId: string;
let bareRepoId: string;

beforeAll(async () => {
  h = await createHarness();
  const repo = await h.call('/api/v1/repositories', {
    json: { namespace: 'rules', name: 'app', source: { provider: 'github', url: 'https://github.com/acme/app.git', webhookSecret: 'a'.repeat(32) } },
  });
  repoId = repo.body.id;
  bareRepoId = (await h.call('/api/v1/repositories', { json: { namespace: 'rules', name: 'nosource' } })).body.id;
}, DB_TIMEOUT);
afterAll(() => h?.close());
beforeEach(() => h.starter.reset());

const rule = (overrides: Record<string, unknown> = {}) => ({
  type: 'branch',
  match: 'release-(?<imageTag>\\w*)',
  contextDir: 'svc',
  dockerfile: 'Dockerfile.release',
  platforms: ['linux/amd64', 'linux/arm64'],
  tags: [{ template: '${imageTag}', buildTime: 'yyyyMMddHHmm', commitIdLength: 30 }],
  ...overrides,
});
const ruleCount = async () => Number((await h.db.select({ n: count() }).from(buildRules))[0]!.n);
const buildCount = async () => Number((await h.db.select({ n: count() }).from(builds))[0]!.n);

describe('rules CRUD', () => {
  it('creates a rule with defaults and lists it', async () => {
    const res = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule() });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      repositoryId: repoId,
      type: 'branch',
      regex: true,
      contextDir: 'svc',
      dockerfile: 'Dockerfile.release',
      enabled: true,
      cancelSuperseded: true,
      semver: false,
      noCache: false,
      paths: [],
      timeoutMinutes: 60,
      buildArgs: {},
    });
    const list = await h.call(`/api/v1/repositories/${repoId}/rules`);
    expect(list.body.items.map((r: any) => r.id)).toContain(res.body.id);
    const literal = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'release/v1.2', tags: [{ template: 'stable' }] }) });
    expect(literal.body.regex).toBe(false);
  });

  it('patches a rule, re-validating the merged result, and deletes it', async () => {
    const id = (await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule() })).body.id;
    const ok = await h.call(`/api/v1/rules/${id}`, { method: 'PATCH', json: { enabled: false, paths: ['svc/**'] } });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ enabled: false, paths: ['svc/**'] });
    // The template references ${imageTag}; a literal match has no such group.
    const broken = await h.call(`/api/v1/rules/${id}`, { method: 'PATCH', json: { match: 'main' } });
    expect(broken.status).toBe(422);
    expect((await h.call(`/api/v1/rules/${id}`)).body.match).toBe('release-(?<imageTag>\\w*)');
    expect((await h.call(`/api/v1/rules/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await h.call(`/api/v1/rules/${id}`)).status).toBe(404);
  });

  // The document states these: 400 validation_failed.
  it.each([
    ['6 tag templates', { tags: Array.from({ length: 6 }, (_, i) => ({ template: `t${i}` })) }],
    ['no tag template', { tags: [] }],
    ['commitIdLength 41', { tags: [{ template: 'x', commitIdLength: 41 }] }],
    ['an unknown time zone', { tags: [{ template: 'x', buildTime: 'yyyyMMdd', timeZone: 'Mars/Olympus' }] }],
    ['a context dir leaving the repository', { contextDir: '../etc' }],
    ['a Dockerfile path leaving the repository', { dockerfile: 'svc/../../Dockerfile' }],
    ['an unknown platform', { platforms: ['linux/s390x'] }],
    ['no platform', { platforms: [] }],
    ['21 build args', { buildArgs: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`A${i}`, 'v'])) }],
    ['an unknown field', { colour: 'blue' }],
  ])('rejects %s with 400 and creates nothing', async (_name, overrides) => {
    const before = await ruleCount();
    const res = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule(overrides) });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(await ruleCount()).toBe(before);
  });

  // No JSON Schema can state these: the request matches the document and is refused as unprocessable.
  it.each([
    ['an invalid regex', { match: 'release-(unclosed' }],
    ['a backreference (not linear-time)', { match: '(a)\\1' }],
    ['an unknown template variable', { tags: [{ template: '${nope}' }] }],
    ['${tag} in a branch rule', { match: 'main', tags: [{ template: '${tag}' }] }],
    ['a template that can never be a valid tag', { tags: [{ template: 'bad tag!' }] }],
    ['semver on a branch rule', { semver: true }],
  ])('rejects %s with 422 and creates nothing', async (_name, overrides) => {
    const before = await ruleCount();
    const res = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule(overrides) });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('unprocessable');
    expect(await ruleCount()).toBe(before);
  });

  it('accepts a pattern that would backtrack catastrophically elsewhere, and matching stays fast', async () => {
    const res = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: '(a+)+$', tags: [{ template: 'x' }] }) });
    expect(res.status).toBe(201);
    // Matching is RE2 (linear time): a hostile ref name cannot hang the manual trigger.
    const trigger = await h.call(`/api/v1/rules/${res.body.id}/builds`, { json: { ref: `${'a'.repeat(200)}!` } });
    expect(trigger.status).toBe(422);
  });

  it('refuses rules on a repository without a code source', async () => {
    const res = await h.call(`/api/v1/repositories/${bareRepoId}/rules`, { json: rule() });
    expect(res.status).toBe(409);
    expect(res.body.error.message).toMatch(/no code source/);
  });

  it('answers 401 without a token and 404 for unknown ids', async () => {
    expect((await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule(), token: null })).status).toBe(401);
    expect((await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule(), token: 'wrong-token-wrong-token' })).status).toBe(401);
    expect((await h.call('/api/v1/rules/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await h.call('/api/v1/rules/not-a-uuid', { method: 'PATCH', json: { enabled: true } })).status).toBe(404);
  });
});

describe('rule provenance', () => {
  it('defaults to min; max is set per rule, changed by PATCH, carried into its builds; anything else is a 400', async () => {
    const plain = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'prov-min', tags: [{ template: 'a' }] }) });
    expect(plain.body.provenance).toBe('min');
    const max = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'prov-max', tags: [{ template: 'b' }], provenance: 'max' }) });
    expect(max.status).toBe(201);
    expect(max.body.provenance).toBe('max');
    const started = await h.call(`/api/v1/rules/${max.body.id}/builds`, { json: {} });
    expect((await h.call(`/api/v1/builds/${started.body.buildId}`)).body.provenance).toBe('max');
    expect((await h.call(`/api/v1/rules/${max.body.id}`, { method: 'PATCH', json: { provenance: 'min' } })).body.provenance).toBe('min');
    const before = await ruleCount();
    const bad = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'prov-bad', provenance: 'full' }) });
    expect(bad.status).toBe(400);
    expect(await ruleCount()).toBe(before);
  });
});

describe('POST /rules/:id/builds', () => {
  it('builds a literal rule on its own ref, pinned later by the workflow', async () => {
    const id = (await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'main', tags: [{ template: 'main' }] }) })).body.id;
    const res = await h.call(`/api/v1/rules/${id}/builds`, { json: {} });
    expect(res.status).toBe(202);
    expect(h.starter.starts).toHaveLength(1);
    expect(h.starter.starts[0]).toMatchObject({ buildId: res.body.buildId, trigger: 'manual', repository: 'rules/app' });
    const build = await h.call(`/api/v1/builds/${res.body.buildId}`);
    expect(build.body).toMatchObject({
      status: 'queued',
      trigger: 'manual',
      creationMethod: 'manual build',
      source: { url: 'https://github.com/acme/app.git', ref: 'refs/heads/main', commit: null },
    });
  });

  it('needs a matching ref for a regex rule and refuses a disabled rule', async () => {
    const id = (await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule() })).body.id;
    const before = await buildCount();
    expect((await h.call(`/api/v1/rules/${id}/builds`, { json: {} })).status).toBe(422);
    expect((await h.call(`/api/v1/rules/${id}/builds`, { json: { ref: 'main' } })).status).toBe(422);
    expect(await buildCount()).toBe(before);
    expect((await h.call(`/api/v1/rules/${id}/builds`, { json: { ref: 'release-v9' } })).status).toBe(202);
    await h.call(`/api/v1/rules/${id}`, { method: 'PATCH', json: { enabled: false } });
    expect((await h.call(`/api/v1/rules/${id}/builds`, { json: { ref: 'release-v9' } })).status).toBe(409);
  });

  it('cancels an older queued build of the same rule and ref, naming the newer build', async () => {
    const id = (await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'dev', tags: [{ template: 'dev' }] }) })).body.id;
    const first = await h.call(`/api/v1/rules/${id}/builds`, { json: {} });
    const second = await h.call(`/api/v1/rules/${id}/builds`, { json: {} });
    expect(h.starter.cancels).toEqual([first.body.workflowId]);
    expect(h.starter.cancelReasons[0]).toEqual({ code: 'superseded', message: expect.stringContaining(second.body.buildId) });
  });

  it('marks the build failed and answers 503 when the engine is down', async () => {
    const id = (await h.call(`/api/v1/repositories/${repoId}/rules`, { json: rule({ match: 'hotfix', tags: [{ template: 'hotfix' }] }) })).body.id;
    h.starter.startError = new Error('connection refused');
    const res = await h.call(`/api/v1/rules/${id}/builds`, { json: {} });
    expect(res.status).toBe(503);
    const build = await h.call(`/api/v1/builds/${res.body.error.details.buildId}`);
    expect(build.body).toMatchObject({ status: 'failed', error: { code: 'engine_unavailable' } });
  });
});
