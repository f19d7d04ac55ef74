// Accelerated (eStargz, lazy-pull) images on the real stack: a build that asks for them also
// pushes `<tag>_accelerated` for every tag, checked through the registry's own API (stargz TOC
// annotation and stargz.index.json in every layer of every platform), run in an unpacked root
// (arm64 under QEMU), and made from the same BuildKit cache: no step of it runs twice.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { layerFiles } from '../support/oci';
import { fetchManifest, listTags, runInRootfs, unpackImage, platformEntries } from '../support/registry';

const TOC = 'containerd.io/snapshot/stargz/toc.digest';
let kiln: TestKiln;

beforeAll(async () => {
  kiln = await startTestKiln();
});
afterAll(async () => {
  await kiln?.close();
});

/** Log lines of one platform after `marker`, without the `[platform] ` prefix. */
function platformLogAfter(logs: string, platform: string, marker: string): string[] {
  const lines = logs.split('\n').filter((l) => l.startsWith(`[${platform}] `)).map((l) => l.slice(platform.length + 3));
  const at = lines.findIndex((l) => l.includes(marker));
  expect(at, `no "${marker}" in the ${platform} log`).toBeGreaterThan(-1);
  return lines.slice(at + 1);
}

describe('accelerated images', () => {
  const repo = `accel/app-${randomBytes(3).toString('hex')}`;

  it('pushes an eStargz index tagged <tag>_accelerated for every tag, from the same cache', async () => {
    const submit = await kiln.api('/api/v1/builds', {
      json: {
        repository: repo,
        dockerfile: [
          `FROM ${kiln.registry}/base/busybox`,
          'RUN echo "fast $(uname -m)" > /greeting',
          // Random content: were this step run again for the eStargz variant, its file would differ.
          'RUN head -c 16 /dev/urandom | od -An -tx1 > /nonce',
          'CMD ["cat","/greeting"]',
        ].join('\n'),
        platforms: ['linux/amd64', 'linux/arm64'],
        tags: ['v1', 'latest'],
        accelerated: true,
      },
    });
    expect(submit.status).toBe(202);
    const { buildId } = await submit.json();
    const build = await waitForBuild(kiln, buildId, 300_000);
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    expect(build.accelerated).toEqual({ tags: ['v1_accelerated', 'latest_accelerated'], digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });

    // The registry's own view: both indexes under their tags, and no cache tags among them.
    expect((await listTags(kiln.registry, repo)).sort()).toEqual(['latest', 'latest_accelerated', 'v1', 'v1_accelerated']);
    const anchor = (await fetchManifest(kiln.registry, repo, 'v1'))!;
    const accelerated = (await fetchManifest(kiln.registry, repo, 'v1_accelerated'))!;
    expect(anchor.digest).toBe(build.manifestDigest);
    expect(accelerated.digest).toBe(build.accelerated.digest);
    expect((await fetchManifest(kiln.registry, repo, 'latest_accelerated'))!.digest).toBe(accelerated.digest);
    expect(accelerated.json.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(platformEntries(accelerated.json).map((m: any) => `${m.platform.os}/${m.platform.architecture}`).sort()).toEqual(['linux/amd64', 'linux/arm64']);

    for (const entry of platformEntries(accelerated.json)) {
      const arch = entry.platform.architecture as string;
      const plain = anchor.json.manifests.find((m: any) => m.platform.architecture === arch);
      expect(entry.digest).not.toBe(plain.digest);
      expect(build.platforms.find((p: any) => p.platform === `linux/${arch}`).acceleratedDigest).toBe(entry.digest);
      const { rootfs, config, manifest } = await unpackImage(kiln.registry, repo, entry.digest);
      // Every layer is eStargz: the TOC digest annotation, and the TOC inside the layer.
      expect(manifest.layers.length).toBeGreaterThan(1);
      for (const layer of manifest.layers) {
        expect(layer.annotations?.[TOC], `layer ${layer.digest} of ${arch}`).toMatch(/^sha256:[0-9a-f]{64}$/);
        expect(await layerFiles(kiln.registry, repo, layer.digest)).toContain('stargz.index.json');
      }
      // The plain image is not: same build, ordinary gzip layers.
      const plainManifest = (await fetchManifest(kiln.registry, repo, plain.digest))!.json;
      expect(plainManifest.layers.some((l: any) => l.annotations?.[TOC])).toBe(false);
      // Same content as the plain image (the random step did not run again), and it runs.
      const { rootfs: plainRoot } = await unpackImage(kiln.registry, repo, plain.digest);
      expect(await runInRootfs(rootfs, ['cat', '/nonce'])).toBe(await runInRootfs(plainRoot, ['cat', '/nonce']));
      expect(config.architecture).toBe(arch);
      expect((await runInRootfs(rootfs, config.config.Cmd)).trim()).toBe(`fast ${arch === 'amd64' ? 'x86_64' : 'aarch64'}`);
    }

    // From the progress data: in each platform's eStargz pass every Dockerfile step that does
    // work was a cache hit of the build that preceded it.
    const logs = await (await kiln.api(`/api/v1/builds/${buildId}/logs`)).text();
    for (const platform of ['linux/amd64', 'linux/arm64']) {
      const pass = platformLogAfter(logs, platform, 'eStargz variant from the same BuildKit cache');
      const steps = pass.flatMap((l) => {
        const m = /^(#\d+) (\[[^\]]*\d+\/\d+\] (?!FROM).*)$/.exec(l);
        return m ? [{ n: m[1]!, name: m[2]! }] : [];
      });
      // (BuildKit announces cache hits in no particular order.)
      expect(steps.map((s) => s.name).sort()).toEqual([expect.stringMatching(/^\[2\/3\] RUN echo/), expect.stringMatching(/^\[3\/3\] RUN head/)]);
      for (const s of steps) {
        expect(pass, `${platform}: ${s.name}`).toContain(`${s.n} CACHED`);
        expect(pass.some((l) => l.startsWith(`${s.n} DONE`))).toBe(false);
      }
      expect(pass.some((l) => /eStargz variant pushed sha256:[0-9a-f]{64} \(2 of 2 steps from cache\)/.test(l))).toBe(true);
      expect(pass.some((l) => l.includes('re-ran'))).toBe(false);
    }
    expect(logs).toContain(`pushed accelerated index ${build.accelerated.digest}`);

    // Image versions: the accelerated tags are listed with the anchors.
    const repos = await (await kiln.api(`/api/v1/repositories?namespace=accel`)).json();
    const repoId = repos.items.find((r: any) => `${r.namespace}/${r.name}` === repo).id;
    const tags = await (await kiln.api(`/api/v1/repositories/${repoId}/tags`)).json();
    expect(tags.items.map((t: any) => [t.tag, t.digest])).toEqual([
      ['latest', anchor.digest],
      ['latest_accelerated', accelerated.digest],
      ['v1', anchor.digest],
      ['v1_accelerated', accelerated.digest],
    ]);
  });

  it('with immutable tags, a taken <tag>_accelerated fails the build before any tag is pushed', async () => {
    const name = `strict-${randomBytes(3).toString('hex')}`;
    const created = await kiln.api('/api/v1/repositories', { json: { namespace: 'accel', name, immutableTags: true, acceleratedImages: true } });
    expect(created.status).toBe(201);
    const path = `accel/${name}`;
    const dockerfile = (n: number) => `FROM ${kiln.registry}/base/busybox\nRUN echo ${n} > /n`;
    // v1 and v1_accelerated exist; a build of v2 pushes v2 and v2_accelerated.
    const first = await (await kiln.api('/api/v1/builds', { json: { repository: path, dockerfile: dockerfile(1), platforms: ['linux/amd64'], tags: ['v1'] } })).json();
    expect((await waitForBuild(kiln, first.buildId)).status).toBe('succeeded');
    // Someone moves v3_accelerated by hand (here: the accelerated index of v1, pushed as v3_accelerated).
    const v1acc = (await fetchManifest(kiln.registry, path, 'v1_accelerated'))!;
    const put = await fetch(`http://${kiln.registry}/v2/${path}/manifests/v3_accelerated`, {
      method: 'PUT',
      headers: { 'content-type': v1acc.contentType },
      body: JSON.stringify(v1acc.json),
    });
    expect(put.status).toBe(201);

    const second = await (await kiln.api('/api/v1/builds', { json: { repository: path, dockerfile: dockerfile(3), platforms: ['linux/amd64'], tags: ['v3'] } })).json();
    const build = await waitForBuild(kiln, second.buildId);
    expect(build.status).toBe('failed');
    expect(build.error.code).toBe('tag_immutable');
    expect(build.error.message).toContain('v3_accelerated');
    // Nothing half-pushed: not even the anchor tag.
    expect(await fetchManifest(kiln.registry, path, 'v3')).toBeNull();
  });
});
