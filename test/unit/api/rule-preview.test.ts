import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count } from 'drizzle-orm';
import { builds } from '../../../db/schema';
import { createHarness, DB_TIMEOUT, type Harness } from './harness';

let h: Harness;
let repoId: string;
let otherRepoId: string;
let savedRuleId: string;
const commit = 'd4ef3dc3b77a011a5779eec7efdd45aa00112233';

beforeAll(async () => {
  h = await createHarness();
  const source = { provider: 'github', url: 'https://github.com/acme/pv.git', webhookSecret: 'a'.repeat(32) };
  repoId = (await h.call('/api/v1/repositories', { json: { namespace: 'pv', name: 'app', source } })).body.id;
  otherRepoId = (await h.call('/api/v1/repositories', { json: { namespace: 'pv2', name: 'app', source } })).body.id;
  savedRuleId = (
    await h.call(`/api/v1/repositories/${repoId}/rules`, {
      json: { type: 'tag', match: 'v1.2.3', platforms: ['linux/amd64'], tags: [{ template: '${tag}' }], semver: true },
    })
  ).body.id;
}, DB_TIMEOUT);
afterAll(() => h?.close());

const preview = (body: unknown, id = repoId, token?: string) =>
  h.call(`/api/v1/repositories/${id}/rules/preview`, { json: body, ...(token ? { token } : {}) });

const regexRule = {
  type: 'branch',
  match: 'release-(?<imageTag>\\w*)',
  tags: [{ template: '${imageTag}', buildTime: 'yyyyMMddHHmm', commitIdLength: 30 }],
};

describe('POST /repositories/:id/rules/preview', () => {
  it('renders the anchors example: match, groups and the tag a push would get (UTC+8)', async () => {
    const res = await preview({ rule: regexRule, ref: 'release-v1', commit, time: '2020-10-15T08:25:00Z' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      matches: true,
      ref: { type: 'branch', name: 'release-v1' },
      groups: { imageTag: 'v1' },
      tags: ['v1-202010151625-d4ef3dc3b77a011a5779eec7efdd45'],
      reason: null,
      problems: [],
    });
  });

  it('says why not: no match, other ref type, an invalid tag for this ref, path filters, an invalid rule', async () => {
    const noMatch = await preview({ rule: regexRule, ref: 'main' });
    expect(noMatch.body).toMatchObject({ matches: false, tags: [] });
    expect(noMatch.body.reason).toMatch(/"main" does not match the pattern/);

    const tagRef = await preview({ rule: regexRule, ref: 'refs/tags/release-v1' });
    expect(tagRef.body.reason).toMatch(/builds branches; release-v1 is a tag/);

    // `${branch}` of a branch starting with "." cannot be a tag: known only for that ref.
    const bad = await preview({ rule: { type: 'branch', match: '.*', tags: [{ template: '${branch}' }] }, ref: '.hidden' });
    expect(bad.body.matches).toBe(false);
    expect(bad.body.reason).toMatch(/would fail/);

    const paths = await preview({
      rule: { type: 'branch', match: 'main', tags: [{ template: 'latest' }], paths: ['svc/**'] },
      ref: 'main',
      changedFiles: ['docs/readme.md'],
    });
    expect(paths.body).toMatchObject({ matches: false, tags: ['latest'] });
    expect(paths.body.reason).toMatch(/path filters/);

    const invalid = await preview({ rule: { type: 'branch', match: 'release-(', tags: [{ template: 'x' }] }, ref: 'main' });
    expect(invalid.status).toBe(200);
    expect(invalid.body.matches).toBe(false);
    expect(invalid.body.problems.length).toBeGreaterThan(0);
  });

  it('previews a saved rule by id (semver expansion) and creates nothing', async () => {
    const before = Number((await h.db.select({ n: count() }).from(builds))[0]!.n);
    const res = await preview({ rule: savedRuleId, ref: 'v1.2.3' });
    expect(res.body).toMatchObject({ matches: true, ref: { type: 'tag', name: 'v1.2.3' }, tags: ['v1.2.3', '1.2.3', '1.2', '1'] });
    expect(Number((await h.db.select({ n: count() }).from(builds))[0]!.n)).toBe(before);
    expect((await preview({ rule: savedRuleId, ref: 'v1.2.3' }, otherRepoId)).status).toBe(404);
  });

  it('refuses malformed requests and other namespaces', async () => {
    expect((await preview({ rule: regexRule })).status).toBe(400);
    expect((await preview({ rule: regexRule, ref: 'main', commit: 'not hex' })).status).toBe(400);
    const created = await h.call('/api/v1/namespaces/pv2/tokens', { json: { name: 'ci' } });
    expect(created.status).toBe(201);
    expect((await preview({ rule: regexRule, ref: 'main' }, repoId, created.body.token)).status).toBe(403);
  });
});
