// Issue #11 points 3 and 4 on real parts: signed notifications delivered by Temporal to a local
// HTTP receiver (loopback), and rule cron schedules as real Temporal Schedules building from git.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ScheduleNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registryNotificationToken } from '../../api/routes/registry-events';
import { startGitServer, type GitServer } from '../support/git-server';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { waitFor } from '../support/processes';

interface Received {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: any;
}

const nonce = randomBytes(3).toString('hex');
const ns = `hooks-${nonce}`;
let kiln: TestKiln;
let git: GitServer;
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];
/** Per path: answers still to give before 200 (the flaky receiver). */
const failuresLeft = new Map<string, number>();

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '';
      received.push({ method: req.method ?? '', path, headers: req.headers, body, json: JSON.parse(body) });
      const left = failuresLeft.get(path) ?? 0;
      if (left > 0) failuresLeft.set(path, left - 1);
      res.writeHead(left > 0 ? 503 : 200).end(left > 0 ? 'not now' : 'ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  kiln = await startTestKiln();
  git = await startGitServer();
  expect((await kiln.api('/api/v1/namespaces', { json: { name: ns } })).status).toBe(201);
});

afterAll(async () => {
  await kiln?.close();
  await git?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

async function subscribe(body: Record<string, unknown>): Promise<{ id: string; secret: string }> {
  const res = await kiln.api(`/api/v1/namespaces/${ns}/subscriptions`, { json: body });
  const json = await res.json();
  expect(res.status, JSON.stringify(json)).toBe(201);
  expect(json.secret).toMatch(/^kiln_whsec_/);
  return json;
}

/** Checks one notification as a receiver would: method, path, headers, signature, body. */
function verify(r: Received, secret: string, path: string, event: string): any {
  expect(r.method).toBe('POST');
  expect(r.path).toBe(path);
  expect(r.headers['content-type']).toBe('application/json');
  expect(r.headers['x-kiln-event']).toBe(event);
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(r.body).digest('hex')}`);
  const given = Buffer.from(String(r.headers['x-kiln-signature-256']));
  expect(given.length === expected.length && timingSafeEqual(given, expected), 'signature').toBe(true);
  expect(r.json.id).toBe(r.headers['x-kiln-delivery']);
  expect(r.json.event).toBe(event);
  expect(r.json.namespace).toBe(ns);
  // The secret travels in no delivery.
  expect(r.body).not.toContain(secret);
  return r.json;
}

const waitForReceived = (what: string, pred: (r: Received) => boolean, count = 1) =>
  waitFor(what, async () => (received.filter(pred).length >= count ? received.filter(pred) : undefined), 90_000, 200);

async function submit(repository: string, dockerfile: string, tags: string[]): Promise<string> {
  const res = await kiln.api('/api/v1/builds', { json: { repository, dockerfile, platforms: ['linux/amd64'], tags } });
  expect(res.status).toBe(202);
  return (await res.json()).buildId;
}

/** A user push as the registry reports it (CNCF Distribution's envelope), as `docker push` makes it. */
async function reportUserPush(repository: string, tag: string, digest: string, eventId: string) {
  const res = await fetch(`${kiln.url}/webhooks/registry`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${registryNotificationToken(kiln.secretKey)}`,
      'content-type': 'application/vnd.docker.distribution.events.v1+json',
    },
    body: JSON.stringify({
      events: [
        {
          id: eventId,
          timestamp: new Date().toISOString(),
          action: 'push',
          target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 512, length: 512, repository, tag },
          request: { id: 'r1', addr: '127.0.0.1:40000', host: kiln.registry, method: 'PUT', useragent: 'docker/24.0.7 go/go1.20.10' },
          actor: {},
          source: { addr: 'host:5000', instanceID: 'i1' },
        },
      ],
    }),
  });
  expect(res.status).toBe(200);
}

describe('outbound notifications', () => {
  let all: { id: string; secret: string };

  it('a succeeded and a failed build notify a namespace subscription, signed, with their events', async () => {
    all = await subscribe({ url: `${receiverUrl}/all?via=kiln`, events: ['build.started', 'build.succeeded', 'build.failed', 'image.pushed'] });
    const ok = await submit(`${ns}/app`, `FROM ${kiln.registry}/base/busybox\nRUN echo ${nonce} > /n\n`, ['v1']);
    const bad = await submit(`${ns}/app`, `FROM ${kiln.registry}/base/busybox\nRUN exit 3\n`, ['broken']);
    const [built, failed] = await Promise.all([waitForBuild(kiln, ok), waitForBuild(kiln, bad)]);
    expect(built.status).toBe('succeeded');
    expect(failed.status).toBe('failed');

    const path = '/all?via=kiln';
    const of = (id: string, event: string) => (r: Received) => r.path === path && r.json.event === event && (r.json.build?.id ?? r.json.image?.buildId) === id;
    const [started] = await waitForReceived('build.started', of(ok, 'build.started'));
    expect(verify(started!, all.secret, path, 'build.started').build).toMatchObject({ id: ok, trigger: 'api', source: null });
    const [succeeded] = await waitForReceived('build.succeeded', of(ok, 'build.succeeded'));
    expect(verify(succeeded!, all.secret, path, 'build.succeeded')).toMatchObject({
      repository: `${ns}/app`,
      build: { id: ok, status: 'succeeded', tags: ['v1'], manifestDigest: built.manifestDigest, error: null },
    });
    const [pushed] = await waitForReceived('image.pushed', of(ok, 'image.pushed'));
    expect(verify(pushed!, all.secret, path, 'image.pushed').image).toEqual({
      repository: `${ns}/app`,
      tags: ['v1'],
      digest: built.manifestDigest,
      reference: `${kiln.registry}/${ns}/app@${built.manifestDigest}`,
      creationMethod: 'manual build',
      buildId: ok,
    });
    const [failure] = await waitForReceived('build.failed', of(bad, 'build.failed'));
    expect(verify(failure!, all.secret, path, 'build.failed').build).toMatchObject({ id: bad, status: 'failed', error: { code: failed.error.code } });
    expect(received.filter(of(bad, 'image.pushed'))).toEqual([]);
    // Each delivery has its own id.
    const ids = received.filter((r) => r.path === path).map((r) => r.json.id);
    expect(new Set(ids).size).toBe(ids.length);

    const list = await (await kiln.api(`/api/v1/subscriptions/${all.id}/deliveries`)).json();
    const mine = list.items.find((d: any) => d.id === succeeded!.json.id);
    expect(mine).toMatchObject({ event: 'build.succeeded', status: 'delivered', lastAttempt: { attempt: 1, statusCode: 200, error: null } });
    expect(JSON.stringify(list)).not.toContain(all.secret);
  });

  it('a user push seen by registry notifications is announced as image.pushed', async () => {
    const digest = `sha256:${randomBytes(32).toString('hex')}`;
    await reportUserPush(`${ns}/app`, 'by-hand', digest, `evt-${nonce}-1`);
    const path = '/all?via=kiln';
    const [r] = await waitForReceived('user push', (x) => x.path === path && x.json.image?.digest === digest);
    expect(verify(r!, all.secret, path, 'image.pushed').image).toEqual({
      repository: `${ns}/app`,
      tags: ['by-hand'],
      digest,
      reference: `${kiln.registry}/${ns}/app@${digest}`,
      creationMethod: 'user push',
      buildId: null,
    });
    // The registry redelivering the same event notifies nobody twice.
    await reportUserPush(`${ns}/app`, 'by-hand', digest, `evt-${nonce}-1`);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(received.filter((x) => x.path === path && x.json.image?.digest === digest)).toHaveLength(1);
  });

  it('a receiver that fails twice gets the delivery on the third attempt; a redelivery sends it again', async () => {
    expect((await kiln.api('/api/v1/repositories', { json: { namespace: ns, name: 'other' } })).status).toBe(201);
    const flaky = await subscribe({ url: `${receiverUrl}/flaky`, events: ['image.pushed'], repository: 'other' });
    failuresLeft.set('/flaky', 2);
    const digest = `sha256:${randomBytes(32).toString('hex')}`;
    await reportUserPush(`${ns}/other`, 'v2', digest, `evt-${nonce}-2`);
    const tries = await waitForReceived('three attempts', (x) => x.path === '/flaky', 3);
    for (const t of tries) verify(t, flaky.secret, '/flaky', 'image.pushed');
    expect(new Set(tries.map((t) => t.body)).size).toBe(1); // the same body (and id) every time
    const deliveryId = tries[0]!.json.id;
    const delivered = await waitFor(
      'the delivery to be recorded as delivered',
      async () => {
        const list = await (await kiln.api(`/api/v1/subscriptions/${flaky.id}/deliveries`)).json();
        const d = list.items.find((x: any) => x.id === deliveryId);
        return d?.status === 'delivered' ? d : undefined;
      },
      30_000,
      200,
    );
    expect(delivered.attempts.map((a: any) => [a.attempt, a.statusCode, a.error])).toEqual([
      [1, 503, 'the receiver answered 503'],
      [2, 503, 'the receiver answered 503'],
      [3, 200, null],
    ]);
    // The namespace-wide subscription got it too, the repository-narrowed one nothing of app.
    expect(received.filter((x) => x.path === '/flaky' && x.json.repository !== `${ns}/other`)).toEqual([]);

    const res = await kiln.api(`/api/v1/subscriptions/${flaky.id}/deliveries/${deliveryId}/redeliver`, { method: 'POST' });
    expect(res.status).toBe(202);
    const again = await waitForReceived('the redelivery', (x) => x.path === '/flaky', 4);
    expect(verify(again[3]!, flaky.secret, '/flaky', 'image.pushed').id).toBe(deliveryId);
    expect(again[3]!.body).toBe(tries[0]!.body);
    await waitFor(
      'the redelivery to be recorded',
      async () => {
        const list = await (await kiln.api(`/api/v1/subscriptions/${flaky.id}/deliveries`)).json();
        const d = list.items.find((x: any) => x.id === deliveryId);
        return d?.status === 'delivered' && d.attempts.length === 4 ? d : undefined;
      },
      30_000,
      200,
    );
  });
});

describe('scheduled builds', () => {
  it('a rule schedule is a Temporal Schedule: pausable, triggered it builds with trigger `schedule`, deleted with the rule', async () => {
    await git.createRepo('nightly');
    const commit = await git.commit('nightly', {
      branch: 'main',
      files: { Dockerfile: `FROM ${kiln.registry}/base/busybox\nCOPY hello.txt /hello.txt\n`, 'hello.txt': 'nightly\n' },
    });
    const repo = await kiln.api('/api/v1/repositories', { json: { namespace: ns, name: 'nightly', source: { provider: 'git', url: git.url('nightly') } } });
    expect(repo.status).toBe(201);
    const repoId = (await repo.json()).id;
    const created = await kiln.api(`/api/v1/repositories/${repoId}/rules`, {
      json: {
        type: 'branch',
        match: 'main',
        platforms: ['linux/amd64'],
        tags: [{ template: 'nightly' }],
        schedules: [{ cron: '0 3 * * *', timeZone: 'Europe/Berlin' }],
      },
    });
    const rule = await created.json();
    expect(created.status, JSON.stringify(rule)).toBe(201);
    expect(rule).toMatchObject({ schedules: [{ cron: '0 3 * * *', timeZone: 'Europe/Berlin' }], schedulesPaused: false });

    const handle = kiln.client.schedule.getHandle(`rule-${rule.id}-0`);
    const described = await handle.describe();
    expect(described.spec.timezone).toBe('Europe/Berlin');
    expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: 'ScheduledRuleBuildWorkflow', taskQueue: 'kiln-control' });
    expect(described.state.paused).toBe(false);

    const paused = await kiln.api(`/api/v1/rules/${rule.id}/schedule/pause`, { method: 'POST' });
    expect(paused.status).toBe(200);
    expect((await paused.json()).schedulesPaused).toBe(true);
    expect((await handle.describe()).state.paused).toBe(true);
    const unpaused = await kiln.api(`/api/v1/rules/${rule.id}/schedule/unpause`, { method: 'POST' });
    expect((await unpaused.json()).schedulesPaused).toBe(false);
    expect((await handle.describe()).state.paused).toBe(false);

    await handle.trigger();
    const build = await waitFor(
      'the scheduled build',
      async () => (await (await kiln.api(`/api/v1/builds?repositoryId=${repoId}`)).json()).items.find((b: any) => b.trigger === 'schedule'),
      60_000,
      500,
    );
    const done = await waitForBuild(kiln, build.id);
    expect(done).toMatchObject({ status: 'succeeded', trigger: 'schedule', tags: ['nightly'] });
    expect(done.source).toEqual({ url: git.url('nightly'), ref: 'refs/heads/main', commit });

    expect((await kiln.api(`/api/v1/rules/${rule.id}`, { method: 'DELETE' })).status).toBe(204);
    await expect(handle.describe()).rejects.toBeInstanceOf(ScheduleNotFoundError);
  });
});
