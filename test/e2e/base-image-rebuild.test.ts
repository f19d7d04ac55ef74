// Issue #11 point 5 on real parts: Kiln records the base images each build pulled (from BuildKit's
// own step records), and a rule with rebuildOnBaseChange builds its ref again when a newer image is
// pushed under that base tag in Kiln's registry, seen through the registry's notifications. A
// redelivered notification starts no second rebuild.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { registryNotificationToken } from '../../api/routes/registry-events';
import { startRegistry } from '../../infra/registry-server';
import type { ProcessHandle } from '../../infra/supervisor';
import { TEST_PORT_OFFSET } from '../support/global-setup';
import { startGitServer, type GitServer } from '../support/git-server';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { waitFor } from '../support/processes';
import { fetchManifest } from '../support/registry';

const PORT = 26_650 + TEST_PORT_OFFSET;
const nonce = randomBytes(3).toString('hex');
const BASES = `bases-${nonce}`;
const APPS = `apps-${nonce}`;

let kiln: TestKiln;
let registry: ProcessHandle;
let git: GitServer;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'kiln-base-rebuild-'));
  kiln = await startTestKiln({ db: 'postgres', registry: `127.0.0.1:${PORT}` });
  ({ handle: registry } = await startRegistry({
    dataDir,
    port: PORT,
    notifications: { url: `${kiln.url}/webhooks/registry`, token: registryNotificationToken(kiln.secretKey) },
  }));
  git = await startGitServer();
  for (const name of [BASES, APPS]) expect((await kiln.api('/api/v1/namespaces', { json: { name } })).status).toBe(201);
});

afterAll(async () => {
  await git?.close();
  await registry?.stop();
  await kiln?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** Builds `bases/runtime:v1` in Kiln (an inline build); the registry tells Kiln of the tag it pushes. */
async function buildBase(content: string): Promise<string> {
  const res = await kiln.api('/api/v1/builds', {
    json: {
      repository: `${BASES}/runtime`,
      dockerfile: `FROM ${inject('stack').registry}/base/busybox\nRUN echo ${content} > /base.txt\n`,
      platforms: ['linux/amd64'],
      tags: ['v1'],
    },
  });
  expect(res.status).toBe(202);
  const build = await waitForBuild(kiln, (await res.json()).buildId);
  expect(build.status, JSON.stringify(build.error)).toBe('succeeded');
  return build.manifestDigest as string;
}

const ruleBuilds = async (ruleId: string) =>
  ((await (await kiln.api(`/api/v1/builds?repository=${APPS}/web&limit=100`)).json()).items as any[]).filter((b) => b.ruleId === ruleId);

/** The registry's event for a Kiln push of bases/runtime:v1 at `digest`, as it would redeliver it. */
const redeliver = (digest: string) =>
  fetch(`${kiln.url}/webhooks/registry`, {
    method: 'POST',
    headers: { authorization: `Bearer ${registryNotificationToken(kiln.secretKey)}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      events: [{ action: 'push', actor: { name: 'kiln' }, target: { mediaType: 'application/vnd.oci.image.index.v1+json', digest, repository: `${BASES}/runtime`, tag: 'v1' } }],
    }),
  });

describe('rebuild when a base image changes', () => {
  it('records the base image, rebuilds the rule once when its tag moves, and not again for a redelivery', async () => {
    const base1 = await buildBase('one');
    const baseImage = `127.0.0.1:${PORT}/${BASES}/runtime:v1`;

    await git.createRepo('web');
    await git.commit('web', { branch: 'main', files: { Dockerfile: `FROM ${baseImage}\nRUN cat /base.txt > /app.txt\n` } });
    const repo = await kiln.api('/api/v1/repositories', { json: { namespace: APPS, name: 'web', source: { provider: 'git', url: git.url('web') } } });
    expect(repo.status).toBe(201);
    const repoId = (await repo.json()).id;
    const ruleRes = await kiln.api(`/api/v1/repositories/${repoId}/rules`, {
      json: { type: 'branch', match: 'main', platforms: ['linux/amd64'], tags: [{ template: 'main' }], rebuildOnBaseChange: true },
    });
    expect(ruleRes.status).toBe(201);
    const rule = await ruleRes.json();
    expect(rule.rebuildOnBaseChange).toBe(true);

    const first = await kiln.api(`/api/v1/rules/${rule.id}/builds`, { method: 'POST' });
    expect(first.status).toBe(202);
    const firstBuild = await waitForBuild(kiln, (await first.json()).buildId);
    expect(firstBuild.status, JSON.stringify(firstBuild.error)).toBe('succeeded');
    // BuildKit resolved the tag to the digest Kiln pushed it at.
    expect(firstBuild.platforms[0].baseImages).toEqual([{ image: baseImage, digest: base1 }]);
    expect(await (await kiln.api(`/api/v1/builds/${firstBuild.id}/logs`)).text()).toContain(`base images: ${baseImage}@${base1}`);

    // The base moves: a new build of bases/runtime:v1. Its push reaches Kiln as a notification.
    const base2 = await buildBase('two');
    expect(base2).not.toBe(base1);
    const rebuild = await waitFor('the rebuild of the rule', async () => (await ruleBuilds(rule.id)).find((b) => b.trigger === 'base_image'), 120_000, 500);
    // A redelivery while the rebuild runs names the same build and starts none.
    const during = (await (await redeliver(base2)).json()) as any;
    for (const r of during.rebuilds) expect(r).toEqual({ buildId: rebuild.id, ruleId: rule.id, ref: 'refs/heads/main', created: false });
    const done = await waitForBuild(kiln, rebuild.id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done).toMatchObject({ trigger: 'base_image', creationMethod: 'auto build', source: { ref: 'refs/heads/main' } });
    expect(done.platforms[0].baseImages).toEqual([{ image: baseImage, digest: base2 }]);
    expect((await fetchManifest(kiln.registry, `${APPS}/web`, 'main'))!.digest).toBe(done.manifestDigest);

    // The registry redelivers the same event: nothing new. (The rebuild's own push of apps/web:main
    // moved no base of this rule either.)
    const again = await redeliver(base2);
    expect(again.status).toBe(200);
    const body = (await again.json()) as any;
    // The latest build of the ref pulled base2 already: no dependent is stale.
    expect(body.rebuilds).toEqual([]);
    expect((await ruleBuilds(rule.id)).filter((b) => b.trigger === 'base_image')).toHaveLength(1);
  }, 400_000);
});
