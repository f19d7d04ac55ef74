// Subscriptions, deliveries and rule schedules through the API: happy paths, bad input (400/422,
// nothing changed) and other namespaces. Temporal is faked (harness.ts); the e2e is
// test/e2e/notifications.test.ts.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptSecret } from '../../../db/crypto';
import { getDelivery, insertDelivery, recordDeliveryAttempt } from '../../../db/queries/notifications';
import { notificationSubscriptions } from '../../../db/schema';
import { CRON_RE, cronIssues } from '../../../domain/schedules';
import { changedTables, snapshotDatabase } from '../../support/db-snapshot';
import { createHarness, DB_TIMEOUT, SECRET_KEY, type Harness } from './harness';

let h: Harness;
let nsToken: string;
let otherToken: string;
let repoId: string;

beforeAll(async () => {
  h = await createHarness();
  for (const name of ['notes', 'elsewhere']) expect((await h.call('/api/v1/namespaces', { json: { name } })).status).toBe(201);
  nsToken = (await h.call('/api/v1/namespaces/notes/tokens', { json: { name: 't' } })).body.token;
  otherToken = (await h.call('/api/v1/namespaces/elsewhere/tokens', { json: { name: 't' } })).body.token;
  const repo = await h.call('/api/v1/repositories', {
    json: { namespace: 'notes', name: 'app', source: { provider: 'git', url: 'https://git.example.test/app.git' } },
  });
  expect(repo.status).toBe(201);
  repoId = repo.body.id;
}, DB_TIMEOUT);
afterAll(() => h?.close());

/** The call must be refused with `status` and change no table. */
async function unchanged(status: number, call: () => ReturnType<Harness['call']>) {
  const before = await snapshotDatabase(h.db);
  const scheduled = new Map(h.scheduler.schedules);
  const res = await call();
  expect(res.status, res.text).toBe(status);
  expect(changedTables(before, await snapshotDatabase(h.db))).toEqual([]);
  expect(h.scheduler.schedules).toEqual(scheduled);
  return res;
}

describe('subscriptions', () => {
  it('creates one with a secret shown once and stored encrypted; lists, changes and deletes it', async () => {
    const res = await h.call('/api/v1/namespaces/notes/subscriptions', {
      token: nsToken,
      json: { url: 'https://hooks.example.test/kiln', events: ['build.succeeded', 'image.pushed'], repository: 'app', description: 'ci' },
    });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ namespace: 'notes', repository: 'app', url: 'https://hooks.example.test/kiln', events: ['build.succeeded', 'image.pushed'], active: true });
    const secret = res.body.secret as string;
    expect(secret).toMatch(/^kiln_whsec_[A-Za-z0-9_-]{43}$/);
    const [row] = await h.db.select().from(notificationSubscriptions);
    expect(row!.secretEnc).not.toContain(secret);
    expect(decryptSecret(SECRET_KEY, row!.secretEnc)).toBe(secret);

    const list = await h.call('/api/v1/namespaces/notes/subscriptions', { token: nsToken });
    expect(list.body.items.map((s: any) => s.id)).toEqual([res.body.id]);
    expect(list.text).not.toContain(secret);
    const got = await h.call(`/api/v1/subscriptions/${res.body.id}`);
    expect(got.body).not.toHaveProperty('secret');

    const patched = await h.call(`/api/v1/subscriptions/${res.body.id}`, { method: 'PATCH', json: { active: false, events: ['build.failed'] } });
    expect(patched.body).toMatchObject({ active: false, events: ['build.failed'], repository: 'app' });
    expect((await h.call(`/api/v1/subscriptions/${res.body.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await h.call(`/api/v1/subscriptions/${res.body.id}`)).status).toBe(404);
  });

  it.each([
    ['an ftp URL', { url: 'ftp://hooks.example.test/x', events: ['build.failed'] }],
    ['a URL with credentials', { url: 'https://user:pw@hooks.example.test/x', events: ['build.failed'] }],
    ['an IPv6 literal', { url: 'http://[::1]:8080/x', events: ['build.failed'] }],
    ['a port out of range', { url: 'http://hooks.example.test:65536/x', events: ['build.failed'] }],
    ['a URL with a space', { url: 'https://hooks.example.test/a b', events: ['build.failed'] }],
    ['no URL', { events: ['build.failed'] }],
    ['an unknown event', { url: 'https://hooks.example.test/x', events: ['build.exploded'] }],
    ['no events', { url: 'https://hooks.example.test/x', events: [] }],
    ['a repeated event', { url: 'https://hooks.example.test/x', events: ['build.failed', 'build.failed'] }],
    ['an unknown field', { url: 'https://hooks.example.test/x', events: ['build.failed'], secret: 'mine' }],
  ])('400 for %s, nothing stored', async (_what, json) => {
    const res = await unchanged(400, () => h.call('/api/v1/namespaces/notes/subscriptions', { json }));
    expect(res.body.error.code).toBe('validation_failed');
  });

  it('422 for an unknown repository, 404 for an unknown namespace; 403 for another namespace, nothing stored', async () => {
    const json = { url: 'https://hooks.example.test/x', events: ['build.failed'] };
    await unchanged(422, () => h.call('/api/v1/namespaces/notes/subscriptions', { json: { ...json, repository: 'nope' } }));
    await unchanged(404, () => h.call('/api/v1/namespaces/nope/subscriptions', { json }));
    await unchanged(403, () => h.call('/api/v1/namespaces/notes/subscriptions', { json, token: otherToken }));
    await unchanged(403, () => h.call('/api/v1/namespaces/notes/subscriptions', { token: otherToken }));
    await unchanged(401, () => h.call('/api/v1/namespaces/notes/subscriptions', { json, token: null }));
  });

  it('a registry user push enqueues image.pushed per matching subscription once; deliveries list and redeliver', async () => {
    const sub = await h.call('/api/v1/namespaces/notes/subscriptions', { json: { url: 'http://127.0.0.1:9/hook', events: ['image.pushed'] } });
    const narrowed = await h.call('/api/v1/namespaces/notes/subscriptions', {
      json: { url: 'http://127.0.0.1:9/other', events: ['image.pushed'], repository: 'app' },
    });
    const silent = await h.call('/api/v1/namespaces/notes/subscriptions', { json: { url: 'http://127.0.0.1:9/b', events: ['build.failed'] } });
    h.deliveries.starts = [];
    const { registryNotificationToken } = await import('../../../api/routes/registry-events');
    const digest = `sha256:${'c'.repeat(64)}`;
    const push = () =>
      h.call('/webhooks/registry', {
        token: registryNotificationToken(SECRET_KEY),
        headers: { 'content-type': 'application/vnd.docker.distribution.events.v1+json' },
        body: JSON.stringify({
          events: [{ id: 'ev-1', action: 'push', target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, repository: 'notes/web', tag: 'v1' }, request: { useragent: 'docker/24' }, actor: {} }],
        }),
      });
    expect((await push()).status).toBe(200);
    expect(h.deliveries.starts).toHaveLength(1); // notes/web: the namespace-wide subscription only
    // The registry redelivers: no second delivery; the same one is only started again while it has
    // no attempt (its first start may have been lost; Temporal runs one workflow per delivery id).
    expect((await push()).status).toBe(200);
    expect(new Set(h.deliveries.starts).size).toBe(1);
    h.deliveries.starts = h.deliveries.starts.slice(0, 1);

    const list = await h.call(`/api/v1/subscriptions/${sub.body.id}/deliveries`);
    expect(list.status).toBe(200);
    expect(list.body.items).toHaveLength(1);
    const [d] = list.body.items;
    expect(d).toMatchObject({ id: h.deliveries.starts[0], event: 'image.pushed', status: 'pending', attempts: [], lastAttempt: null });
    expect(d.payload).toMatchObject({ id: d.id, event: 'image.pushed', namespace: 'notes', repository: 'notes/web', image: { digest, tags: ['v1'], creationMethod: 'user push' } });
    expect((await h.call(`/api/v1/subscriptions/${narrowed.body.id}/deliveries`)).body.items).toEqual([]);
    expect((await h.call(`/api/v1/subscriptions/${silent.body.id}/deliveries`)).body.items).toEqual([]);

    // Being retried: no redelivery yet.
    await recordDeliveryAttempt(h.db, d.id, { attempt: 1, at: new Date().toISOString(), statusCode: 500, durationMs: 3, error: 'the receiver answered 500' }, 'pending', 20);
    await unchanged(409, () => h.call(`/api/v1/subscriptions/${sub.body.id}/deliveries/${d.id}/redeliver`, { method: 'POST' }));
    await recordDeliveryAttempt(h.db, d.id, { attempt: 12, at: new Date().toISOString(), statusCode: 500, durationMs: 3, error: 'the receiver answered 500' }, 'failed', 20);
    const again = await h.call(`/api/v1/subscriptions/${sub.body.id}/deliveries/${d.id}/redeliver`, { method: 'POST' });
    expect(again.status, again.text).toBe(202);
    expect(again.body).toMatchObject({ id: d.id, status: 'pending', lastAttempt: { attempt: 12, statusCode: 500 } });
    expect(h.deliveries.starts.at(-1)).toBe(d.id);
    expect((await getDelivery(h.db, d.id))!.status).toBe('pending');

    // Another subscription's path, an unknown delivery, another namespace: refused, nothing started.
    const starts = h.deliveries.starts.length;
    await unchanged(404, () => h.call(`/api/v1/subscriptions/${narrowed.body.id}/deliveries/${d.id}/redeliver`, { method: 'POST' }));
    await unchanged(404, () => h.call(`/api/v1/subscriptions/${sub.body.id}/deliveries/${randomUUID()}/redeliver`, { method: 'POST' }));
    await unchanged(403, () => h.call(`/api/v1/subscriptions/${sub.body.id}/deliveries/${d.id}/redeliver`, { method: 'POST', token: otherToken }));
    await unchanged(403, () => h.call(`/api/v1/subscriptions/${sub.body.id}/deliveries`, { token: otherToken }));
    expect(h.deliveries.starts.length).toBe(starts);
  });

  it('an inactive subscription gets no deliveries', async () => {
    const sub = await h.call('/api/v1/namespaces/notes/subscriptions', { json: { url: 'http://127.0.0.1:9/off', events: ['image.pushed'], active: false } });
    const d = await insertDelivery(h.db, { id: randomUUID(), subscriptionId: sub.body.id, event: 'image.pushed', eventKey: 'manual', body: '{}' });
    expect(d.status).toBe('pending');
    const { findSubscribers } = await import('../../../db/queries/notifications');
    const subs = await findSubscribers(h.db, { namespaceId: sub.body.namespaceId ?? (await nsId()), repositoryId: repoId, event: 'image.pushed' });
    expect(subs.map((s) => s.id)).not.toContain(sub.body.id);
  });
});

async function nsId(): Promise<string> {
  const [row] = await h.db.select().from(notificationSubscriptions);
  return row!.namespaceId;
}

const RULE = { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'main' }] };

describe('rule schedules', () => {
  it('the cron pattern takes five numeric fields and what the document states', () => {
    for (const ok of ['0 3 * * *', '*/15 * * * *', '0 0-6/2 1,15 1-12 1-5', '59 23 31 12 6']) expect(CRON_RE.test(ok), ok).toBe(true);
    for (const bad of ['0 3 * *', '60 * * * *', '* 24 * * *', '* * 0 * *', '* * * 13 *', '* * * * 7', '@daily', '0 3 * * MON', '*/0 * * * *', '0  3 * * *'])
      expect(CRON_RE.test(bad), bad).toBe(false);
    expect(cronIssues('5-3 * * * *')).toEqual(['range 5-3 runs backwards']);
  });

  it('creates the Temporal schedules with the rule, updates, pauses, unpauses and deletes them with it', async () => {
    const res = await h.call(`/api/v1/repositories/${repoId}/rules`, {
      token: nsToken,
      json: { ...RULE, schedules: [{ cron: '0 3 * * *', timeZone: 'Europe/Berlin' }, { cron: '30 12 * * 1-5', timeZone: 'UTC' }] },
    });
    expect(res.status, res.text).toBe(201);
    const id = res.body.id;
    expect(res.body).toMatchObject({ schedulesPaused: false, schedules: [{ cron: '0 3 * * *', timeZone: 'Europe/Berlin' }, { cron: '30 12 * * 1-5', timeZone: 'UTC' }] });
    expect(h.scheduler.schedules.get(`rule-${id}-0`)).toEqual({ cron: '0 3 * * *', timeZone: 'Europe/Berlin', paused: false });
    expect(h.scheduler.schedules.get(`rule-${id}-1`)).toEqual({ cron: '30 12 * * 1-5', timeZone: 'UTC', paused: false });

    const paused = await h.call(`/api/v1/rules/${id}/schedule/pause`, { method: 'POST', token: nsToken });
    expect(paused.status).toBe(200);
    expect(paused.body.schedulesPaused).toBe(true);
    expect(h.scheduler.schedules.get(`rule-${id}-1`)!.paused).toBe(true);

    const patched = await h.call(`/api/v1/rules/${id}`, { method: 'PATCH', json: { schedules: [{ cron: '0 4 * * *', timeZone: 'Asia/Tokyo' }] } });
    expect(patched.status, patched.text).toBe(200);
    expect(h.scheduler.schedules.get(`rule-${id}-0`)).toEqual({ cron: '0 4 * * *', timeZone: 'Asia/Tokyo', paused: true });
    expect(h.scheduler.schedules.has(`rule-${id}-1`)).toBe(false);

    const unpaused = await h.call(`/api/v1/rules/${id}/schedule/unpause`, { method: 'POST' });
    expect(unpaused.body.schedulesPaused).toBe(false);
    expect(h.scheduler.schedules.get(`rule-${id}-0`)!.paused).toBe(false);

    expect((await h.call(`/api/v1/rules/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect([...h.scheduler.schedules.keys()].filter((k) => k.includes(id))).toEqual([]);
  });

  it.each([
    ['a bad cron line', 400, [{ cron: '0 3 * *', timeZone: 'UTC' }]],
    ['a named weekday', 400, [{ cron: '0 3 * * MON', timeZone: 'UTC' }]],
    ['an unknown time zone', 400, [{ cron: '0 3 * * *', timeZone: 'Mars/Olympus' }]],
    ['an offset instead of a zone', 400, [{ cron: '0 3 * * *', timeZone: 'UTC+8' }]],
    ['too many schedules', 400, Array.from({ length: 6 }, () => ({ cron: '0 3 * * *', timeZone: 'UTC' }))],
    ['a backwards range', 422, [{ cron: '0 5-3 * * *', timeZone: 'UTC' }]],
  ])('%s → %i, no rule and no schedule', async (_what, status, schedules) => {
    await unchanged(status, () => h.call(`/api/v1/repositories/${repoId}/rules`, { json: { ...RULE, schedules } }));
  });

  it('422 for a schedule on a pattern rule; 503 (nothing stored) when the schedule engine is unreachable', async () => {
    const res = await unchanged(422, () =>
      h.call(`/api/v1/repositories/${repoId}/rules`, {
        json: { ...RULE, match: 'release-(?<v>\\w+)', tags: [{ template: '${v}' }], schedules: [{ cron: '0 3 * * *', timeZone: 'UTC' }] },
      }),
    );
    expect(JSON.stringify(res.body.error.details)).toContain('literal');
    h.scheduler.failWith = new Error('connection refused');
    try {
      await unchanged(503, () => h.call(`/api/v1/repositories/${repoId}/rules`, { json: { ...RULE, schedules: [{ cron: '0 3 * * *', timeZone: 'UTC' }] } }));
    } finally {
      h.scheduler.failWith = null;
    }
  });

  it('a bad schedule in a change leaves the rule and its schedules as they were; another namespace may not pause', async () => {
    const rule = await h.call(`/api/v1/repositories/${repoId}/rules`, { json: { ...RULE, schedules: [{ cron: '0 3 * * *', timeZone: 'UTC' }] } });
    const id = rule.body.id;
    await unchanged(400, () => h.call(`/api/v1/rules/${id}`, { method: 'PATCH', json: { schedules: [{ cron: 'every day', timeZone: 'UTC' }] } }));
    await unchanged(400, () => h.call(`/api/v1/rules/${id}`, { method: 'PATCH', json: { schedules: [{ cron: '0 3 * * *', timeZone: 'Nowhere/City' }] } }));
    await unchanged(403, () => h.call(`/api/v1/rules/${id}/schedule/pause`, { method: 'POST', token: otherToken }));
    await unchanged(404, () => h.call(`/api/v1/rules/${randomUUID()}/schedule/pause`, { method: 'POST' }));
    await unchanged(401, () => h.call(`/api/v1/rules/${id}/schedule/unpause`, { method: 'POST', token: null }));
  });
});
