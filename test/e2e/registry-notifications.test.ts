// Direct pushes: a registry of its own whose notifications (CNCF Distribution
// `notifications.endpoints`) reach this Kiln's /webhooks/registry, as `npm start` wires it.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { registryNotificationToken } from '../../api/routes/registry-events';
import { startRegistry } from '../../infra/registry-server';
import type { ProcessHandle } from '../../infra/supervisor';
import { toolPaths } from '../../infra/tools';
import { TEST_PORT_OFFSET } from '../support/global-setup';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { waitFor } from '../support/processes';
import { fetchManifest } from '../support/registry';

const run = promisify(execFile);
const PORT = 26_600 + TEST_PORT_OFFSET;
const nonce = randomBytes(3).toString('hex');
const ns = `notif-${nonce}`;

let kiln: TestKiln;
let registry: ProcessHandle;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'kiln-notify-'));
  // Kiln first: the registry must know where to send its events.
  kiln = await startTestKiln({ db: 'postgres', registry: `127.0.0.1:${PORT}` });
  ({ handle: registry } = await startRegistry({
    dataDir,
    port: PORT,
    notifications: { url: `${kiln.url}/webhooks/registry`, token: registryNotificationToken(kiln.secretKey) },
  }));
  expect((await kiln.api('/api/v1/namespaces', { json: { name: ns } })).status).toBe(201);
});

afterAll(async () => {
  await registry?.stop();
  await kiln?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function repositoryId(name: string): Promise<string | undefined> {
  const items = (await (await kiln.api(`/api/v1/repositories?namespace=${ns}`)).json()).items as any[];
  return items.find((r) => r.name === name)?.id;
}

async function versions(name: string): Promise<any[]> {
  const id = await repositoryId(name);
  return id ? (await (await kiln.api(`/api/v1/repositories/${id}/tags`)).json()).items : [];
}

/** `docker push` by another name: buildctl builds a tiny image and pushes it under a tag. */
async function pushByHand(ref: string): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-hand-'));
  writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${inject('stack').registry}/base/busybox\nRUN echo "by hand ${ref}" > /hand\n`);
  await run(toolPaths().buildctl, [
    '--addr', inject('stack').buildkit['linux/amd64'],
    'build', '--frontend', 'dockerfile.v0', '--local', `context=${dir}`, '--local', `dockerfile=${dir}`,
    '--opt', 'platform=linux/amd64', '--output', `type=image,name=${ref},push=true`,
  ]);
  rmSync(dir, { recursive: true, force: true });
}

describe('registry notifications', () => {
  it('a tag pushed by hand is recorded with creation method `user push`', async () => {
    await pushByHand(`127.0.0.1:${PORT}/${ns}/app:hand`);
    const digest = (await fetchManifest(`127.0.0.1:${PORT}`, `${ns}/app`, 'hand'))!.digest;
    const v = await waitFor('the hand push to be recorded', async () => (await versions('app')).find((t) => t.tag === 'hand'), 15_000, 200);
    expect(v).toMatchObject({ tag: 'hand', digest, creationMethod: 'user push', buildId: null });
  });

  it("Kiln's own pushes stay `manual build`, not `user push`", async () => {
    const res = await kiln.api('/api/v1/builds', {
      json: {
        repository: `${ns}/app`,
        dockerfile: `FROM ${inject('stack').registry}/base/busybox\nRUN echo "kiln ${nonce}" > /k\n`,
        platforms: ['linux/amd64', 'linux/arm64'],
        tags: ['v1', 'latest'],
      },
    });
    const build = await waitForBuild(kiln, (await res.json()).buildId);
    expect(build.status).toBe('succeeded');
    // Tag a copy by hand afterwards, so its event is the last to arrive: when it is in, Kiln's are too.
    const src = (await fetchManifest(`127.0.0.1:${PORT}`, `${ns}/app`, 'v1'))!;
    const put = await fetch(`http://127.0.0.1:${PORT}/v2/${ns}/app/manifests/copied`, {
      method: 'PUT',
      headers: { 'content-type': src.contentType },
      body: JSON.stringify(src.json),
    });
    expect(put.status).toBe(201);
    await waitFor('the copy to be recorded', async () => (await versions('app')).find((t) => t.tag === 'copied'), 15_000, 200);
    const tags = Object.fromEntries((await versions('app')).map((t) => [t.tag, t]));
    expect(tags.v1).toMatchObject({ digest: build.manifestDigest, creationMethod: 'manual build', buildId: build.id });
    expect(tags.latest).toMatchObject({ digest: build.manifestDigest, creationMethod: 'manual build', buildId: build.id });
    expect(tags.copied).toMatchObject({ digest: build.manifestDigest, creationMethod: 'user push', buildId: null });
  });

  it('a hand-pushed tag in an immutable repository is known to Kiln: a build for it is refused at submit', async () => {
    expect((await kiln.api('/api/v1/repositories', { json: { namespace: ns, name: 'locked', immutableTags: true } })).status).toBe(201);
    await pushByHand(`127.0.0.1:${PORT}/${ns}/locked:v9`);
    await waitFor('the hand push to be recorded', async () => (await versions('locked')).find((t) => t.tag === 'v9'), 15_000, 200);
    const res = await kiln.api('/api/v1/builds', {
      json: { repository: `${ns}/locked`, dockerfile: `FROM ${inject('stack').registry}/base/busybox\n`, platforms: ['linux/amd64'], tags: ['v9'] },
    });
    expect(res.status).toBe(409);
    expect((await res.json()).error.details).toEqual({ tags: ['v9'] });
  });

  it('pushes into namespaces Kiln does not manage are not recorded', async () => {
    await pushByHand(`127.0.0.1:${PORT}/stranger-${nonce}/app:v1`);
    // Give the event time to arrive, then check nothing was made of it.
    await new Promise((r) => setTimeout(r, 1500));
    const namespaces = (await (await kiln.api('/api/v1/namespaces')).json()).items.map((n: any) => n.name);
    expect(namespaces).not.toContain(`stranger-${nonce}`);
  });

  it('the webhook refuses calls without the notification token', async () => {
    const body = JSON.stringify({ events: [] });
    expect((await fetch(`${kiln.url}/webhooks/registry`, { method: 'POST', body })).status).toBe(401);
    const withApiToken = await fetch(`${kiln.url}/webhooks/registry`, { method: 'POST', body, headers: { authorization: `Bearer ${kiln.token}` } });
    expect(withApiToken.status).toBe(401);
  });
});
