// POST /webhooks/gitea and /webhooks/forgejo with deliveries captured from a real Gitea v1.26.0.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createHmac } from 'node:crypto';
import { count } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { builds, webhookDeliveries } from '../../../db/schema';
import { createHarness, DB_TIMEOUT, type Harness } from './harness';

interface Captured {
  secret: string;
  headers: Record<string, string>;
  body: string;
}
const fixture = (name: string): Captured =>
  JSON.parse(readFileSync(path.join(import.meta.dirname, '../../fixtures/gitea', `${name}.json`), 'utf8')) as Captured;
const branch = fixture('push-branch');
const tag = fixture('push-tag');
// The clone URL the captured payloads name.
const CLONE_URL = JSON.parse(branch.body).repository.clone_url as string;

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
  for (const provider of ['gitea', 'forgejo']) {
    const repo = await h.call('/api/v1/repositories', {
      json: { namespace: provider, name: 'app', source: { provider, url: CLONE_URL, webhookSecret: branch.secret, token: 'gitea-token-123' } },
    });
    expect(repo.status).toBe(201);
    expect(repo.body.source.provider).toBe(provider);
    await h.call(`/api/v1/repositories/${repo.body.id}/rules`, { json: { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'latest' }] } });
    await h.call(`/api/v1/repositories/${repo.body.id}/rules`, { json: { type: 'tag', match: 'v.*', platforms: ['linux/amd64'], tags: [{ template: '${tag}' }] } });
  }
}, DB_TIMEOUT);
afterAll(() => h?.close());
beforeEach(() => h.starter.reset());

const send = (provider: string, headers: Record<string, string>, body: string) => h.call(`/webhooks/${provider}`, { body, headers, token: null });
const recorded = async () => ({
  builds: Number((await h.db.select({ n: count() }).from(builds))[0]!.n),
  deliveries: Number((await h.db.select({ n: count() }).from(webhookDeliveries))[0]!.n),
});

describe('POST /webhooks/gitea', () => {
  it('refuses a wrong or missing X-Gitea-Signature with 401 and records nothing', async () => {
    const before = await recorded();
    const wrong = { ...branch.headers, 'x-gitea-signature': createHmac('sha256', 'not-the-secret-0123456789').update(branch.body).digest('hex') };
    expect((await send('gitea', wrong, branch.body)).status).toBe(401);
    const { 'x-gitea-signature': _dropped, ...missing } = branch.headers;
    const res = await send('gitea', missing, branch.body);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('unauthorized');
    expect(await recorded()).toEqual(before);
    expect(h.starter.starts).toEqual([]);
  });

  it('a branch push Gitea sent starts the branch rule build of the pushed commit', async () => {
    const res = await send('gitea', branch.headers, branch.body);
    expect(res.status).toBe(202);
    expect(res.body.builds).toEqual([expect.objectContaining({ repository: 'gitea/app', ref: 'refs/heads/main', commit: JSON.parse(branch.body).after })]);
    expect(h.starter.starts.map((s) => s.trigger)).toEqual(['push']);
    // Gitea redelivers with the same X-Gitea-Delivery: nothing new starts.
    const again = await send('gitea', branch.headers, branch.body);
    expect(again.status).toBe(200);
    expect(again.body.duplicate).toBe(true);
    expect(h.starter.starts).toHaveLength(1);
  });

  it('an annotated tag push builds the tagged commit with the tag rule', async () => {
    const res = await send('gitea', tag.headers, tag.body);
    expect(res.status).toBe(202);
    expect(res.body.builds).toEqual([expect.objectContaining({ ref: 'refs/tags/v1.2.3', commit: JSON.parse(tag.body).head_commit.id })]);
    expect(h.starter.starts.map((s) => s.trigger)).toEqual(['tag']);
  });
});

describe('POST /webhooks/forgejo', () => {
  it('takes X-Forgejo-* headers and refuses a wrong signature', async () => {
    const headers = {
      'content-type': 'application/json',
      'x-forgejo-event': 'push',
      'x-forgejo-delivery': 'forgejo-delivery-1',
      'x-forgejo-signature': createHmac('sha256', branch.secret).update(branch.body).digest('hex'),
    };
    const before = await recorded();
    expect((await send('forgejo', { ...headers, 'x-forgejo-signature': 'ab'.repeat(32) }, branch.body)).status).toBe(401);
    expect(await recorded()).toEqual(before);
    const res = await send('forgejo', headers, branch.body);
    expect(res.status).toBe(202);
    expect(res.body.builds).toEqual([expect.objectContaining({ repository: 'forgejo/app' })]);
  });
});
