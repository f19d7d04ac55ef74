// The registry build cache on real parts: a build exports its cache (mode=max) per repository and
// platform; a brand-new buildkitd (empty state directory, as on a freshly provisioned build host)
// rebuilding the same commit then hits the cache on every step and yields the very same image.
// `noCache` skips the import.
import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { startGitServer, type GitServer } from '../support/git-server';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { startBuildHost } from '../support/oci';
import { fetchManifest, listTags } from '../support/registry';

let kiln: TestKiln | undefined;
let git: GitServer | undefined;
let host: Awaited<ReturnType<typeof startBuildHost>> | undefined;

afterAll(async () => {
  await kiln?.close();
  await git?.close();
  await host?.handle.stop();
  if (host) await rm(host.dataDir, { recursive: true, force: true });
});

const NAMESPACE = 'cache';
const NAME = `svc-${Date.now().toString(36)}`;
const PLATFORMS = ['linux/amd64', 'linux/arm64'];

/** Binds the git repository and adds a rule building `main` (on each Kiln's own database). */
async function setUp(k: TestKiln, url: string): Promise<string> {
  const repo = await k.api('/api/v1/repositories', { json: { namespace: NAMESPACE, name: NAME, source: { provider: 'git', url } } });
  expect(repo.status).toBe(201);
  const rule = await k.api(`/api/v1/repositories/${(await repo.json()).id}/rules`, {
    json: { type: 'branch', match: 'main', platforms: PLATFORMS, tags: [{ template: 'main' }] },
  });
  const body = await rule.json();
  expect(rule.status, JSON.stringify(body)).toBe(201);
  return body.id;
}

async function buildRule(k: TestKiln, ruleId: string): Promise<any> {
  const res = await k.api(`/api/v1/rules/${ruleId}/builds`, { json: { ref: 'main' } });
  expect(res.status).toBe(202);
  const build = await waitForBuild(k, (await res.json()).buildId, 300_000);
  expect(build.error).toBeUndefined();
  expect(build.status).toBe('succeeded');
  return build;
}

/** The Dockerfile steps that do work (not FROM, not BuildKit's internal vertexes). */
const workSteps = (platform: any) => platform.steps.filter((s: any) => /^\[[^\]]*\d+\/\d+\] /.test(s.name) && !/\] FROM /.test(s.name));

describe('registry build cache', () => {
  it('gives a fresh build host a cache hit on every step of the same commit', async () => {
    const registry = inject('stack').registry;
    git = await startGitServer();
    await git.createRepo('svc');
    const commit = await git.commit('svc', {
      branch: 'main',
      files: {
        'Dockerfile': [
          `FROM ${registry}/base/busybox`,
          'COPY app.txt /app.txt',
          'RUN wc -c < /app.txt > /size',
          // Random content: a step run again instead of taken from the cache changes the image digest.
          'RUN head -c 16 /dev/urandom | od -An -tx1 > /nonce',
        ].join('\n'),
        'app.txt': 'the same commit on every host\n',
      },
    });
    const stack = await startTestKiln();
    kiln = stack;

    // 1. The shared build host: builds and exports the cache of each platform.
    const first = await buildRule(stack, await setUp(stack, git.url('svc')));
    expect(first.source.commit).toBe(commit);
    expect((await listTags(stack.registry, `${NAMESPACE}/${NAME}/buildcache`)).sort()).toEqual(['linux-amd64', 'linux-arm64']);
    expect(await listTags(stack.registry, `${NAMESPACE}/${NAME}`)).toEqual(['main']);
    await stack.close();
    kiln = undefined;

    // 2. A brand-new buildkitd on an empty root for both platforms, and a Kiln that uses only it.
    host = await startBuildHost();
    const fresh = await startTestKiln({ buildkit: { 'linux/amd64': host.address, 'linux/arm64': host.address } });
    kiln = fresh;
    const ruleId = await setUp(fresh, git.url('svc'));
    const second = await buildRule(fresh, ruleId);
    expect(second.source.commit).toBe(commit);
    for (const platform of second.platforms) {
      const steps = workSteps(platform);
      // (BuildKit announces cache hits in no particular order.)
      expect(steps.map((s: any) => s.name).sort()).toEqual([
        '[2/4] COPY app.txt /app.txt',
        '[3/4] RUN wc -c < /app.txt > /size',
        '[4/4] RUN head -c 16 /dev/urandom | od -An -tx1 > /nonce',
      ]);
      expect(steps.filter((s: any) => !s.cached), platform.platform).toEqual([]);
      expect(platform.cacheHits).toBe(steps.length);
      // The very same image: no step ran again.
      expect(platform.digest).toBe(first.platforms.find((p: any) => p.platform === platform.platform).digest);
    }
    // The index differs only in its provenance attestations (they record each build's own
    // invocation); its image entries are the very same.
    const imageEntries = async (digest: string) =>
      (await fetchManifest(stack.registry, `${NAMESPACE}/${NAME}`, digest))!.json.manifests
        .filter((m: any) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest')
        .map((m: any) => m.digest)
        .sort();
    expect(await imageEntries(second.manifestDigest)).toEqual(await imageEntries(first.manifestDigest));
    const logs = await (await fresh.api(`/api/v1/builds/${second.id}/logs`)).text();
    expect(logs).toMatch(/\[linux\/amd64\] #\d+ importing cache manifest from .*\/cache\/svc-[a-z0-9]+\/buildcache:linux-amd64/);

    // 3. noCache: nothing is imported, every step runs (a new nonce, a new image).
    const patched = await fresh.api(`/api/v1/rules/${ruleId}`, { method: 'PATCH', json: { noCache: true } });
    expect(patched.status).toBe(200);
    const third = await buildRule(fresh, ruleId);
    for (const platform of third.platforms) {
      expect(platform.cacheHits).toBe(0);
      expect(workSteps(platform).every((s: any) => !s.cached)).toBe(true);
      expect(platform.digest).not.toBe(first.platforms.find((p: any) => p.platform === platform.platform).digest);
    }
    const thirdLogs = await (await fresh.api(`/api/v1/builds/${third.id}/logs`)).text();
    expect(thirdLogs).not.toContain('importing cache manifest');
  });
});
