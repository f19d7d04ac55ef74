import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { count, eq } from 'drizzle-orm';
import { MAX_INLINE_CHANGED_FILES } from '../../../api/webhooks/providers';
import { finishDelivery, getDelivery, recordDelivery } from '../../../db/queries/deliveries';
import { backfillSourceUrlKeys } from '../../../db/queries/repositories';
import { builds, repositories, webhookDeliveries } from '../../../db/schema';
import { githubPush, gitlabPush, type SignedDelivery } from '../../support/webhooks';
import { createHarness, DB_TIMEOUT, type Harness } from './harness';

const SECRET = 'unit-webhook-secret-0123456789';
const URL_A = 'https://github.com/acme/hooks.git';
const SHA = 'a'.repeat(40);
let h: Harness;
let repoId: string;

beforeAll(async () => {
  h = await createHarness();
  repoId = (await h.call('/api/v1/repositories', { json: { namespace: 'hooks', name: 'app', source: { provider: 'github', url: URL_A, webhookSecret: SECRET } } })).body.id;
  await h.call(`/api/v1/repositories/${repoId}/rules`, { json: { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'main' }] } });
}, DB_TIMEOUT);
afterAll(() => h?.close());
beforeEach(() => {
  h.starter.reset();
  h.pushes.reset();
});

const send = (provider: string, d: SignedDelivery) => h.call(`/webhooks/${provider}`, { body: d.body, headers: d.headers, token: null });
const rows = async (table: typeof builds | typeof webhookDeliveries) => Number((await h.db.select({ n: count() }).from(table))[0]!.n);
const push = (over: Partial<Parameters<typeof githubPush>[0]> = {}) =>
  githubPush({ repoUrl: URL_A, ref: 'refs/heads/main', after: SHA, secret: SECRET, files: { modified: ['src/x.ts'] }, ...over });

describe('POST /webhooks/github', () => {
  it('records the delivery with its PushWorkflow input, answers 202 and the outbox starts the workflow; no build is made in the request', async () => {
    const buildsBefore = await rows(builds);
    const d = push({ deliveryId: 'delivery-one' });
    const res = await send('github', d);
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ deliveryId: 'delivery-one', workflowId: 'push-github-delivery-one', status: 'received' });
    expect(h.pushes.starts).toEqual([
      {
        workflowId: 'push-github-delivery-one',
        input: {
          provider: 'github',
          deliveryId: 'delivery-one',
          repositoryIds: [repoId],
          updates: [{ ref: { type: 'branch', name: 'main' }, before: null, after: SHA, deleted: false, changedFiles: ['src/x.ts'] }],
        },
      },
    ]);
    expect(await rows(builds)).toBe(buildsBefore);
    expect(h.starter.starts).toEqual([]);
    expect(await getDelivery(h.db, 'github', 'delivery-one')).toMatchObject({ workflowId: 'push-github-delivery-one', repositoryIds: [repoId], status: 'received' });
    // Marked started (its input no longer kept), so no sweep starts it again.
    await h.pushDispatcher.idle();
    const row = await getDelivery(h.db, 'github', 'delivery-one');
    expect(row).toMatchObject({ pushInput: null, dispatchAfter: null });
    expect(row!.workflowStartedAt).toBeInstanceOf(Date);
    expect(await h.pushDispatcher.sweep()).toBe(0);
  });

  it('answers a redelivery 200 duplicate and starts no second workflow', async () => {
    const d = push();
    expect((await send('github', d)).status).toBe(202);
    const again = await send('github', d);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ duplicate: true, deliveryId: d.headers['x-github-delivery'], status: 'received', builds: [] });
    expect(h.pushes.starts).toHaveLength(1);
  });

  it('answers 202 while Temporal cannot be reached; the recorded delivery starts once it is back, with no redelivery', async () => {
    const d = push();
    const id = d.headers['x-github-delivery']!;
    h.pushes.startError = new Error('connection refused');
    const down = await send('github', d);
    expect(down.status).toBe(202);
    await h.pushDispatcher.idle();
    expect(h.pushes.starts).toEqual([]);
    expect(await getDelivery(h.db, 'github', id)).toMatchObject({ status: 'received', workflowStartedAt: null, pushInput: expect.objectContaining({ deliveryId: id }) });
    // Still down: a sweep claims it, the start fails again, it waits.
    expect(await h.pushDispatcher.sweep()).toBe(1);
    await h.pushDispatcher.idle();
    expect(h.pushes.starts).toEqual([]);
    h.pushes.startError = null;
    expect(await h.pushDispatcher.sweep()).toBe(1);
    await h.pushDispatcher.idle();
    expect(h.pushes.starts.map((s) => s.workflowId)).toEqual([`push-github-${id}`]);
    expect((await getDelivery(h.db, 'github', id))!.workflowStartedAt).toBeInstanceOf(Date);
    expect(await h.pushDispatcher.sweep()).toBe(0);
  });

  it('a delivery whose node died before starting it is started by another node once its hold runs out', async () => {
    const d = push();
    const id = d.headers['x-github-delivery']!;
    // Recorded as the route does, by a node that then vanished: nobody enqueued it.
    const input = { provider: 'github', deliveryId: id, repositoryIds: [repoId], updates: [] };
    expect(await recordDelivery(h.db, { provider: 'github', deliveryId: id, workflowId: `push-github-${id}`, repositoryIds: [repoId], pushInput: input, leaseMs: 60_000 })).toBe(true);
    expect(await h.pushDispatcher.sweep()).toBe(0); // still held by the vanished node
    await h.db.update(webhookDeliveries).set({ dispatchAfter: new Date(Date.now() - 1_000) }).where(eq(webhookDeliveries.deliveryId, id));
    expect(await h.pushDispatcher.sweep()).toBe(1);
    await h.pushDispatcher.idle();
    expect(h.pushes.starts).toEqual([{ workflowId: `push-github-${id}`, input }]);
    // The redelivery GitHub's "Redeliver" button sends is a duplicate now.
    expect((await send('github', d)).body).toMatchObject({ duplicate: true });
    expect(h.pushes.starts).toHaveLength(1);
  });

  it('refuses bad or missing signatures with 401 and records nothing', async () => {
    const deliveries = await rows(webhookDeliveries);
    expect((await send('github', push({ secret: 'wrong-secret-wrong-secret-00' }))).status).toBe(401);
    const unsigned = push();
    delete unsigned.headers['x-hub-signature-256'];
    expect((await send('github', unsigned)).status).toBe(401);
    expect(await rows(webhookDeliveries)).toBe(deliveries);
    expect(h.pushes.starts).toEqual([]);
  });

  it('answers pings and ignores other events without a workflow; a deletion goes to the workflow, which records it', async () => {
    const ping = push();
    ping.headers['x-github-event'] = 'ping';
    expect((await send('github', ping)).body).toEqual({ pong: true });
    const issue = push();
    issue.headers['x-github-event'] = 'issues';
    expect((await send('github', issue)).body).toMatchObject({ ignored: expect.stringContaining('issues'), builds: [] });
    expect(h.pushes.starts).toEqual([]);
    const deleted = await send('github', push({ before: SHA, after: null }));
    expect(deleted.status).toBe(202);
    expect(h.pushes.starts[0]!.input.updates).toEqual([expect.objectContaining({ deleted: true, after: null })]);
  });

  it('passes a file list of any length as "unknown" past the inline limit, so the workflow asks git', async () => {
    const many = Array.from({ length: MAX_INLINE_CHANGED_FILES + 1 }, (_, i) => `src/file-${i}.ts`);
    expect((await send('github', push({ files: { added: many } }))).status).toBe(202);
    expect(h.pushes.starts[0]!.input.updates[0]!.changedFiles).toBeNull();
  });

  it('finds the repository by its normalized clone URL, however the host spells it, and keys rows bound before the column', async () => {
    const spelled = (await h.call('/api/v1/repositories', {
      json: { namespace: 'hooks', name: 'spelled', source: { provider: 'github', url: 'https://GitHub.com/Acme/Spelled/', webhookSecret: SECRET } },
    })).body.id;
    expect((await send('github', push({ repoUrl: 'https://github.com/acme/spelled.git' }))).status).toBe(202);
    expect(h.pushes.starts.at(-1)!.input.repositoryIds).toEqual([spelled]);
    // A row written before source_url_key existed is found once start-up has filled its key.
    await h.db.update(repositories).set({ sourceUrlKey: null }).where(eq(repositories.id, spelled));
    expect((await send('github', push({ repoUrl: 'https://github.com/acme/spelled.git' }))).status).toBe(404);
    expect(await backfillSourceUrlKeys(h.db)).toBe(1);
    expect((await send('github', push({ repoUrl: 'https://github.com/acme/spelled.git' }))).status).toBe(202);
  });

  it('answers 404 for an unbound repository, 422 for a delivery without its headers, 400 for a body that is no JSON object, 404 for an unknown provider', async () => {
    expect((await send('github', push({ repoUrl: 'https://github.com/acme/other.git' }))).status).toBe(404);
    const noDelivery = push();
    delete noDelivery.headers['x-github-delivery'];
    expect((await send('github', noDelivery)).status).toBe(422);
    expect((await send('github', { ...push(), body: '{not json' })).status).toBe(400);
    expect((await send('github', { ...push(), body: 'null' })).status).toBe(400);
    expect((await send('sourceforge', push())).status).toBe(404);
    expect(h.pushes.starts).toEqual([]);
  });

  it('does not cross providers: a GitLab delivery for a GitHub-bound URL finds no repository', async () => {
    expect((await send('gitlab', gitlabPush({ repoUrl: URL_A, ref: 'refs/heads/main', after: SHA, secret: SECRET }))).status).toBe(404);
  });
});

describe('GET /api/v1/repositories/:id/deliveries', () => {
  it("lists the repository's deliveries with what the push workflow recorded, this repository's part only", async () => {
    const d = push({ deliveryId: 'listed-delivery' });
    await send('github', d);
    const other = '00000000-0000-4000-8000-000000000001';
    await finishDelivery(h.db, 'github', 'listed-delivery', {
      status: 'done',
      buildIds: [],
      results: [
        { repositoryId: repoId, repository: 'hooks/app', ref: 'refs/heads/main', ruleId: 'r1', outcome: 'skipped', code: 'stale', reason: 'stale: moved on' },
        { repositoryId: other, repository: 'other/app', ref: 'refs/heads/main', outcome: 'skipped', code: 'auto_build_off', reason: 'off' },
      ],
    });
    const res = await h.call(`/api/v1/repositories/${repoId}/deliveries?limit=100`);
    expect(res.status).toBe(200);
    const item = res.body.items.find((i: any) => i.deliveryId === 'listed-delivery');
    expect(item).toMatchObject({
      provider: 'github',
      workflowId: 'push-github-listed-delivery',
      status: 'done',
      buildIds: [],
      results: [{ repository: 'hooks/app', ref: 'refs/heads/main', outcome: 'skipped', code: 'stale', reason: 'stale: moved on' }],
    });
    expect(item.results).toHaveLength(1);
    expect(item.finishedAt).toEqual(expect.any(String));
    expect((await h.call(`/api/v1/repositories/${other}/deliveries`)).status).toBe(404);
  });
});
