import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BuildNotRunningError } from '../../../api/build-starter';
import { finishBuild, updateBuild, updateBuildPlatform } from '../../../db/queries/builds';
import { insertNamespace } from '../../../db/queries/namespaces';
import { upsertImageTags } from '../../../db/queries/tags';
import { builds } from '../../../db/schema';
import { buildBody, createHarness, DB_TIMEOUT, DOCKERFILE, type Harness } from './harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, DB_TIMEOUT);
afterAll(() => h?.close());
beforeEach(() => h.starter.reset());

const submit = (body: unknown) => h.call('/api/v1/builds', { json: body });

describe('POST /builds — happy path', () => {
  it('answers 202, starts the workflow with only ids, and GET shows the build view', async () => {
    const before = await h.counts();
    const res = await submit(
      buildBody({
        repository: 'happy/web',
        buildArgs: { GREETING: 'hi', greeting: 'lower' },
        labels: { 'org.opencontainers.image.source': 'https://example.test/web' },
        tags: ['v1', 'latest'],
        target: 'final',
      }),
    );
    expect(res.status).toBe(202);
    const { buildId, workflowId } = res.body;
    expect(buildId).toMatch(/^[0-9a-f-]{36}$/);
    expect(workflowId).toBe(`build-${buildId}`);
    // The namespace and the repository were created on demand.
    expect(await h.counts()).toEqual({
      namespaces: before.namespaces + 1,
      repositories: before.repositories + 1,
      builds: before.builds + 1,
    });
    expect(h.starter.starts).toEqual([
      { buildId, workflowId, timeoutMinutes: 60, repository: 'happy/web', trigger: 'api' },
    ]);

    const view = await h.call(`/api/v1/builds/${buildId}`);
    expect(view.status).toBe(200);
    expect(view.body).toEqual({
      id: buildId,
      status: 'queued',
      phase: null,
      trigger: 'api',
      creationMethod: 'manual build',
      repository: 'happy/web',
      ruleId: null,
      platforms: [
        { platform: 'linux/amd64', status: 'queued', digest: null, acceleratedDigest: null, attestationDigest: null, cacheHits: 0, startedAt: null, finishedAt: null, steps: [], baseImages: [], progress: { completedSteps: 0, totalSteps: 0 } },
        { platform: 'linux/arm64', status: 'queued', digest: null, acceleratedDigest: null, attestationDigest: null, cacheHits: 0, startedAt: null, finishedAt: null, steps: [], baseImages: [], progress: { completedSteps: 0, totalSteps: 0 } },
      ],
      manifestDigest: null,
      tags: ['v1', 'latest'],
      pushedTags: [],
      provenance: 'min',
      logIncomplete: false,
      queuePosition: null, // it has not asked the scheduler for a slot yet
      workflowId,
      temporalUiUrl: `http://temporal-ui.test:8233/namespaces/default/workflows/${workflowId}`,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      startedAt: null,
      finishedAt: null,
    });
    expect(view.body).not.toHaveProperty('source');
    expect(view.body).not.toHaveProperty('accelerated');
    expect(view.body).not.toHaveProperty('error');

    // What was stored is what was asked for, case-sensitive build args included.
    const [row] = await h.db.select().from(builds).where(eq(builds.id, buildId));
    expect(row).toMatchObject({
      dockerfile: DOCKERFILE,
      buildArgs: { GREETING: 'hi', greeting: 'lower' },
      labels: { 'org.opencontainers.image.source': 'https://example.test/web' },
      target: 'final',
      noCache: false,
      accelerated: false,
      timeoutMinutes: 60,
    });
  });

  it('shows results, errors, source and the accelerated variant once the workflow records them', async () => {
    const res = await submit(buildBody({ repository: 'happy/acc', accelerated: true, tags: ['v2'], timeoutMinutes: 5 }));
    expect(res.status).toBe(202);
    const id = res.body.buildId;
    expect(h.starter.starts[0]!.timeoutMinutes).toBe(5);
    const started = new Date('2026-01-02T03:04:05.000Z');
    await updateBuild(h.db, id, {
      status: 'running',
      phase: 'accelerating',
      startedAt: started,
      sourceUrl: 'https://git.example.test/acc.git',
      sourceRef: 'refs/heads/main',
      sourceCommit: 'd4ef3dc3b77a011a5779eec7efdd45',
      manifestDigest: `sha256:${'a'.repeat(64)}`,
      pushedTags: ['v2'],
      acceleratedTags: ['v2_accelerated'],
    });
    await updateBuildPlatform(h.db, id, 'linux/amd64', {
      status: 'succeeded',
      digest: `sha256:${'b'.repeat(64)}`,
      cacheHits: 3,
      steps: [
        { name: '[1/2] FROM busybox', cached: true, startedAt: null, completedAt: null },
        { name: '[2/2] RUN make', cached: false, startedAt: '2026-01-02T03:04:05.000Z', completedAt: '2026-01-02T03:04:06.250Z', logBytes: 1234, logLines: 56 },
        { name: 'exporting to image', cached: false, startedAt: '2026-01-02T03:04:06.300Z', completedAt: null },
      ],
      startedAt: started,
      finishedAt: started,
    });
    await finishBuild(h.db, id, { status: 'failed', errorCode: 'step_failed', errorMessage: 'RUN at Dockerfile:2 exited with code 3' });

    const view = (await h.call(`/api/v1/builds/${id}`)).body;
    expect(view.status).toBe('failed');
    expect(view.source).toEqual({ url: 'https://git.example.test/acc.git', ref: 'refs/heads/main', commit: 'd4ef3dc3b77a011a5779eec7efdd45' });
    expect(view.accelerated).toEqual({ tags: ['v2_accelerated'], digest: null });
    expect(view.error).toEqual({ code: 'step_failed', message: 'RUN at Dockerfile:2 exited with code 3' });
    expect(view.pushedTags).toEqual(['v2']);
    expect(view.startedAt).toBe('2026-01-02T03:04:05.000Z');
    expect(view.finishedAt).toMatch(/^\d{4}-/);
    expect(view.platforms[0]).toMatchObject({ platform: 'linux/amd64', status: 'succeeded', cacheHits: 3, startedAt: '2026-01-02T03:04:05.000Z' });
    expect(view.platforms[0].steps).toEqual([
      // Steps recorded before per-step log counts existed show 0.
      { name: '[1/2] FROM busybox', cached: true, startedAt: null, completedAt: null, durationMs: null, logBytes: 0, logLines: 0 },
      { name: '[2/2] RUN make', cached: false, startedAt: '2026-01-02T03:04:05.000Z', completedAt: '2026-01-02T03:04:06.250Z', durationMs: 1250, logBytes: 1234, logLines: 56 },
      { name: 'exporting to image', cached: false, startedAt: '2026-01-02T03:04:06.300Z', completedAt: null, durationMs: null, logBytes: 0, logLines: 0 },
    ]);
    expect(view.platforms[0].progress).toEqual({ completedSteps: 2, totalSteps: 3 });
  });

  it("defaults accelerated and noCache to the repository's settings", async () => {
    const repo = await h.call('/api/v1/repositories', {
      json: { namespace: 'defaults', name: 'fast', acceleratedImages: true, buildSettings: { noCache: true } },
    });
    expect(repo.status).toBe(201);
    const res = await submit(buildBody({ repository: 'defaults/fast' }));
    const [row] = await h.db.select().from(builds).where(eq(builds.id, res.body.buildId));
    expect(row).toMatchObject({ accelerated: true, noCache: true });
    const explicit = await submit(buildBody({ repository: 'defaults/fast', accelerated: false, noCache: false }));
    const [row2] = await h.db.select().from(builds).where(eq(builds.id, explicit.body.buildId));
    expect(row2).toMatchObject({ accelerated: false, noCache: false });
  });
});

describe('POST /builds — clientToken', () => {
  it('returns the same build for a retry, and a 409 for a different request with the same token', async () => {
    const body = buildBody({ repository: 'idem/web', clientToken: 'retry-me.1' });
    const first = await submit(body);
    expect(first.status).toBe(202);
    // Key order does not matter: the request hash is over canonical JSON.
    const reordered = Object.fromEntries(Object.entries(body).reverse());
    const second = await submit(reordered);
    expect(second.status).toBe(202);
    expect(second.body).toEqual(first.body);
    // The retry starts again (idempotent in Temporal) in case the first start was lost.
    expect(h.starter.starts.map((s) => s.workflowId)).toEqual([first.body.workflowId, first.body.workflowId]);

    const before = await h.counts();
    const other = await submit({ ...body, tags: ['v2'] });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('conflict');
    // Tokens are unique per namespace: another repository of the same namespace is the same token.
    const elsewhere = await submit({ ...body, repository: 'idem/api' });
    expect(elsewhere.status).toBe(409);
    expect(await h.counts()).toEqual(before);

    const rows = await h.db.select().from(builds).where(eq(builds.clientToken, 'retry-me.1'));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.id).toBe(first.body.buildId);
  });

  it('concurrent submissions with one token make one build', async () => {
    const body = buildBody({ repository: 'idem-race/web', clientToken: 'race-1' });
    const results = await Promise.all(Array.from({ length: 5 }, () => submit(body)));
    expect(results.map((r) => r.status)).toEqual([202, 202, 202, 202, 202]);
    expect(new Set(results.map((r) => r.body.buildId)).size).toBe(1);
    expect(await h.db.select().from(builds).where(eq(builds.clientToken, 'race-1'))).toHaveLength(1);

    const mixed = await Promise.all([
      submit(buildBody({ repository: 'idem-race/web', clientToken: 'race-2', tags: ['a'] })),
      submit(buildBody({ repository: 'idem-race/web', clientToken: 'race-2', tags: ['b'] })),
    ]);
    expect(mixed.map((r) => r.status).sort()).toEqual([202, 409]);
    expect(await h.db.select().from(builds).where(eq(builds.clientToken, 'race-2'))).toHaveLength(1);
  });

  it('does not start a retried build again once it has left the queue', async () => {
    const body = buildBody({ repository: 'idem/web', clientToken: 'retry-me.2' });
    const first = await submit(body);
    await updateBuild(h.db, first.body.buildId, { status: 'running' });
    h.starter.reset();
    const again = await submit(body);
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(h.starter.starts).toEqual([]);
  });
});

describe('POST /builds — bad input creates nothing', () => {
  const tooMany = (n: number, f: (i: number) => [string, string]) => Object.fromEntries(Array.from({ length: n }, (_, i) => f(i)));
  const cases: [string, unknown, RegExp?][] = [
    ['unknown platform', buildBody({ platforms: ['linux/s390x'] }), /platforms/],
    ['no platform', buildBody({ platforms: [] })],
    ['duplicate platform', buildBody({ platforms: ['linux/amd64', 'linux/amd64'] })],
    ['21 build args', buildBody({ buildArgs: tooMany(21, (i) => [`ARG_${i}`, 'x']) }), /at most 20 build args/],
    ['invalid build arg name', buildBody({ buildArgs: { '1BAD': 'x' } })],
    ['6 tags', buildBody({ tags: ['a', 'b', 'c', 'd', 'e', 'f'] }), /tags/],
    ['no tags', buildBody({ tags: [] })],
    ['invalid tag', buildBody({ tags: ['-starts-with-dash'] }), /not a valid OCI tag/],
    ['tag with a colon', buildBody({ tags: ['v1:latest'] })],
    ['tag too long', buildBody({ tags: ['a'.repeat(129)] })],
    ['duplicate tags', buildBody({ tags: ['v1', 'v1'] })],
    ['51 labels', buildBody({ labels: tooMany(51, (i) => [`l${i}`, 'x']) })],
    ['empty dockerfile', buildBody({ dockerfile: '' })],
    ['dockerfile over 256 Ki characters', buildBody({ dockerfile: `FROM x\n${'#'.repeat(256 * 1024)}` }), /262144/],
    ['missing dockerfile', { repository: 'bad/web', platforms: ['linux/amd64'], tags: ['v1'] }],
    ['bad repository path', buildBody({ repository: 'Bad/Web' })],
    ['repository without namespace', buildBody({ repository: 'web' })],
    ['repository with three parts', buildBody({ repository: 'a/b/c' })],
    ['platforms as a string', buildBody({ platforms: 'linux/amd64' })],
    ['tags as a string', buildBody({ tags: 'v1' })],
    ['timeout as a string', buildBody({ timeoutMinutes: '60' })],
    ['timeout over a day', buildBody({ timeoutMinutes: 1441 })],
    ['timeout zero', buildBody({ timeoutMinutes: 0 })],
    ['build arg value not a string', buildBody({ buildArgs: { A: 1 } })],
    ['clientToken too long', buildBody({ clientToken: 'x'.repeat(65) })],
    ['clientToken with spaces', buildBody({ clientToken: 'a b' })],
    ['unknown field', buildBody({ platfrom: 'linux/amd64' })],
    ['array body', [buildBody()]],
  ];

  it.each(cases)('%s → 400 validation_failed', async (_name, body, detail) => {
    const before = await h.counts();
    const res = await submit(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(res.body.error.message).toBeTruthy();
    expect(Array.isArray(res.body.error.details)).toBe(true);
    for (const d of res.body.error.details) expect(d).toMatchObject({ in: 'json', path: expect.any(Array), message: expect.any(String) });
    if (detail) expect(JSON.stringify(res.body.error.details)).toMatch(detail);
    expect(await h.counts()).toEqual(before);
    expect(h.starter.starts).toEqual([]);
  });

  it('malformed JSON → 400 invalid_json', async () => {
    const before = await h.counts();
    const res = await h.call('/api/v1/builds', { body: '{"repository": "bad/web",', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: { code: 'invalid_json', message: expect.any(String), details: null, requestId: expect.any(String) } });
    expect(await h.counts()).toEqual(before);
  });

  it('a JSON body sent as a form, as `curl -d` sends it, is read as JSON', async () => {
    const res = await h.call('/api/v1/builds', {
      body: JSON.stringify(buildBody({ repository: 'curl/web' })),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.status).toBe(202);
    expect(res.body.buildId).toEqual(expect.any(String));
  });

  it('a real form body is still refused with 415 and creates nothing', async () => {
    const before = await h.counts();
    const res = await h.call('/api/v1/builds', { body: 'repository=bad/web', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(415);
    expect(await h.counts()).toEqual(before);
  });

  it('a body that is not JSON → 415', async () => {
    const before = await h.counts();
    const res = await h.call('/api/v1/builds', { body: 'repository=bad/web', headers: { 'content-type': 'text/plain' } });
    expect(res.status).toBe(415);
    expect(res.body.error.code).toBe('unsupported_media_type');
    expect(await h.counts()).toEqual(before);
  });

  it('a namespace that does not create repositories on demand → 404, nothing created', async () => {
    await insertNamespace(h.db, { name: 'closed', autoCreateRepository: false });
    const before = await h.counts();
    const res = await submit(buildBody({ repository: 'closed/web' }));
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    expect(await h.counts()).toEqual(before);
  });

  it('an existing tag of an immutable repository → 409 before any build; latest stays writable', async () => {
    const repo = await h.call('/api/v1/repositories', { json: { namespace: 'frozen', name: 'web', immutableTags: true } });
    await upsertImageTags(h.db, {
      repositoryId: repo.body.id,
      tags: ['v1', 'latest'],
      digest: `sha256:${'c'.repeat(64)}`,
      buildId: null,
      creationMethod: 'user push',
    });
    const before = await h.counts();
    const res = await submit(buildBody({ repository: 'frozen/web', tags: ['v1', 'v9'] }));
    expect(res.status).toBe(409);
    expect(res.body.error.details).toEqual({ tags: ['v1'] });
    expect(await h.counts()).toEqual(before);
    expect((await submit(buildBody({ repository: 'frozen/web', tags: ['latest', 'v9'] }))).status).toBe(202);
  });
});

describe('POST /builds — the engine is down', () => {
  it('answers 503 and records the build as failed with engine_unavailable', async () => {
    h.starter.startError = new Error('connect ECONNREFUSED 127.0.0.1:7233');
    const res = await submit(buildBody({ repository: 'down/web' }));
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('service_unavailable');
    const buildId = res.body.error.details.buildId;
    const view = (await h.call(`/api/v1/builds/${buildId}`)).body;
    expect(view.status).toBe('failed');
    expect(view.error.code).toBe('engine_unavailable');
    expect(view.error.message).toContain('ECONNREFUSED');
    expect(view.finishedAt).not.toBeNull();
  });
});

describe('GET /builds', () => {
  it('pages 25 builds by 10 into 3 pages, newest first, without duplicates or gaps', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      const res = await submit(buildBody({ repository: 'paging/web', platforms: ['linux/amd64'], tags: [`t${i}`] }));
      expect(res.status).toBe(202);
      ids.push(res.body.buildId);
    }
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q = new URLSearchParams({ repository: 'paging/web', limit: '10', ...(cursor ? { cursor } : {}) });
      const res = await h.call(`/api/v1/builds?${q}`);
      expect(res.status).toBe(200);
      sizes.push(res.body.items.length);
      seen.push(...res.body.items.map((b: any) => b.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(sizes).toEqual([10, 10, 5]);
    expect(new Set(seen).size).toBe(25);
    expect([...seen].sort()).toEqual([...ids].sort());
    // Newest first: the last submitted is on top.
    expect(seen[0]).toBe(ids[24]);
  });

  it('pages correctly when builds were created within the same millisecond', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await submit(buildBody({ repository: 'paging/same-ms' }))).body.buildId);
    // Postgres keeps microseconds while a JS Date (and so a cursor) keeps milliseconds.
    await h.db.execute(sql`
      update builds b set created_at = timestamptz '2026-03-04 05:06:07.123' + (o.n * interval '1 microsecond')
      from (select id, row_number() over (order by created_at) as n from builds) o
      where b.id = o.id and b.id in ${ids}`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q = new URLSearchParams({ repository: 'paging/same-ms', limit: '5', ...(cursor ? { cursor } : {}) });
      const res = await h.call(`/api/v1/builds?${q}`);
      seen.push(...res.body.items.map((b: any) => b.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(seen).toEqual([...ids].reverse());
  });

  it('filters by repositoryId and status', async () => {
    const repo = await h.call('/api/v1/repositories', { json: { namespace: 'filter', name: 'web' } });
    const a = await submit(buildBody({ repository: 'filter/web' }));
    const b = await submit(buildBody({ repository: 'filter/web' }));
    await finishBuild(h.db, a.body.buildId, { status: 'succeeded' });
    const all = await h.call(`/api/v1/builds?repositoryId=${repo.body.id}`);
    expect(all.body.items.map((x: any) => x.id)).toEqual([b.body.buildId, a.body.buildId]);
    const ok = await h.call(`/api/v1/builds?repositoryId=${repo.body.id}&status=succeeded`);
    expect(ok.body.items.map((x: any) => x.id)).toEqual([a.body.buildId]);
    expect((await h.call('/api/v1/builds?repository=filter/none')).body).toEqual({ items: [], nextCursor: null });
  });

  it('rejects bad filters and cursors with 400', async () => {
    for (const q of ['status=done', 'limit=0', 'limit=101', 'limit=x', 'repositoryId=nope', 'repository=NOPE', 'cursor=garbage']) {
      const res = await h.call(`/api/v1/builds?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error.code, q).toMatch(/^(validation_failed|bad_request)$/);
    }
  });
});

describe('GET /builds/:id', () => {
  it('404 for an unknown id and for a non-UUID id', async () => {
    const unknown = await h.call('/api/v1/builds/00000000-0000-4000-8000-000000000000');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
    for (const bad of ['not-a-uuid', '1', "1'%20or%201=1", '00000000-0000-4000-8000-00000000000g']) {
      const res = await h.call(`/api/v1/builds/${bad}`);
      expect(res.status, bad).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
  });
});

describe('POST /builds/:id/cancel', () => {
  it('202 for a queued or running build, twice, and again once canceled; 409 once it has ended otherwise', async () => {
    const { body } = await submit(buildBody({ repository: 'cancel/web' }));
    const first = await h.call(`/api/v1/builds/${body.buildId}/cancel`, { method: 'POST' });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ buildId: body.buildId, status: 'queued' });
    await updateBuild(h.db, body.buildId, { status: 'running' });
    const second = await h.call(`/api/v1/builds/${body.buildId}/cancel`, { method: 'POST' });
    expect(second.status).toBe(202);
    expect(second.body.status).toBe('running');
    expect(h.starter.cancels).toEqual([body.workflowId, body.workflowId]);

    await finishBuild(h.db, body.buildId, { status: 'canceled' });
    const again = await h.call(`/api/v1/builds/${body.buildId}/cancel`, { method: 'POST' });
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ buildId: body.buildId, status: 'canceled' });
    expect(h.starter.cancels).toHaveLength(2);

    const done = await submit(buildBody({ repository: 'cancel/web' }));
    await finishBuild(h.db, done.body.buildId, { status: 'succeeded' });
    const late = await h.call(`/api/v1/builds/${done.body.buildId}/cancel`, { method: 'POST' });
    expect(late.status).toBe(409);
    expect(late.body.error).toMatchObject({ code: 'conflict', details: { status: 'succeeded' } });
    expect(h.starter.cancels).toHaveLength(2);
  });

  it('records the cancellation itself when the engine never had the workflow', async () => {
    const { body } = await submit(buildBody({ repository: 'cancel/web' }));
    h.starter.cancelError = new BuildNotRunningError(body.workflowId);
    const res = await h.call(`/api/v1/builds/${body.buildId}/cancel`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect(res.body.status).toBe('canceled');
    expect((await h.call(`/api/v1/builds/${body.buildId}`)).body.status).toBe('canceled');
  });

  it('503 when the engine cannot be reached; 404 for unknown builds', async () => {
    const { body } = await submit(buildBody({ repository: 'cancel/web' }));
    h.starter.cancelError = new Error('UNAVAILABLE');
    const res = await h.call(`/api/v1/builds/${body.buildId}/cancel`, { method: 'POST' });
    expect(res.status).toBe(503);
    expect((await h.call(`/api/v1/builds/${body.buildId}`)).body.status).toBe('queued');
    expect((await h.call('/api/v1/builds/nope/cancel', { method: 'POST' })).status).toBe(404);
  });
});
