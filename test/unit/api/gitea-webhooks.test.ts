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
beforeEach(() => {
  h.starter.reset();
  h.pushes.reset();
});

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

  it('a branch push Gitea sent starts the push workflow for the pushed commit; a redelivery is a duplicate', async () => {
    const res = await send('gitea', branch.headers, branch.body);
    expect(res.status).toBe(202);
    const delivery = branch.headers['x-gitea-delivery'];
    expect(res.body).toEqual({ deliveryId: delivery, workflowId: expect.stringMatching(/^push-gitea-/), status: 'received' });
    expect(h.pushes.starts).toHaveLength(1);
    expect(h.pushes.starts[0]!.input).toMatchObject({
      provider: 'gitea',
      deliveryId: delivery,
      updates: [expect.objectContaining({ ref: { type: 'branch', name: 'main' }, after: JSON.parse(branch.body).after })],
    });
    // Gitea redelivers with the same X-Gitea-Delivery: Temporal refuses the second start.
    const again = await send('gitea', branch.headers, branch.body);
    expect(again.status).toBe(200);
    expect(again.body.duplicate).toBe(true);
    expect(h.starter.starts).toEqual([]);
  });

  it('an annotated tag push names the tagged commit, not the tag object', async () => {
    const res = await send('gitea', tag.headers, tag.body);
    expect(res.status).toBe(202);
    expect(h.pushes.starts[0]!.input.updates).toEqual([
      expect.objectContaining({ ref: { type: 'tag', name: 'v1.2.3' }, after: JSON.parse(tag.body).head_commit.id }),
    ]);
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
    expect(res.body).toMatchObject({ deliveryId: 'forgejo-delivery-1', status: 'received' });
    expect(h.pushes.starts.map((s) => s.input.provider)).toEqual(['forgejo']);
  });
});
