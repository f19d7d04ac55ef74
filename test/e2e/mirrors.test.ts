// Base-image mirrors, offline: a local registry holds `library/busybox` (a byte-for-byte copy of
// the stack's base image) and a buildkitd is configured, as KILN_REGISTRY_MIRRORS configures the
// one Kiln starts, with it as the mirror of docker.io. `FROM busybox` then builds for both
// platforms on a machine that cannot reach Docker Hub, and the mirror's log shows it served it.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startRegistry } from '../../infra/registry-server';
import type { ProcessHandle } from '../../infra/supervisor';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { copyImage, freePort, startBuildHost } from '../support/oci';
import { fetchManifest, runInRootfs, unpackImage, platformEntries } from '../support/registry';

let kiln: TestKiln | undefined;
let mirror: { handle: ProcessHandle; address: string; dataDir: string } | undefined;
let host: Awaited<ReturnType<typeof startBuildHost>> | undefined;

beforeAll(async () => {
  const stack = inject('stack');
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kiln-mirror-'));
  mirror = { ...(await startRegistry({ dataDir, port: await freePort(), log: () => {} })), dataDir };
  await copyImage({ registry: stack.registry, repo: 'base/busybox', ref: 'latest' }, { registry: mirror.address, repo: 'library/busybox', tag: 'latest' });
  host = await startBuildHost({ registryMirrors: { 'docker.io': [mirror.address] } });
  kiln = await startTestKiln({ buildkit: { 'linux/amd64': host.address, 'linux/arm64': host.address } });
});

afterAll(async () => {
  await kiln?.close();
  await host?.handle.stop();
  await mirror?.handle.stop();
  for (const dir of [host?.dataDir, mirror?.dataDir]) if (dir) await rm(dir, { recursive: true, force: true });
});

describe('registry mirrors', () => {
  it('serves FROM busybox (docker.io/library/busybox) from the configured mirror', async () => {
    const repo = 'mirror/hub-base';
    const submit = await kiln!.api('/api/v1/builds', {
      json: {
        repository: repo,
        dockerfile: 'FROM busybox\nRUN echo "mirrored $(uname -m)" > /m\nCMD ["cat","/m"]',
        platforms: ['linux/amd64', 'linux/arm64'],
        tags: ['v1'],
      },
    });
    expect(submit.status).toBe(202);
    const build = await waitForBuild(kiln!, (await submit.json()).buildId, 300_000);
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    expect(build.platforms[0].steps.map((s: any) => s.name)).toContainEqual(expect.stringMatching(/^\[1\/2\] FROM docker\.io\/library\/busybox:latest@sha256:/));

    // The mirror served the manifests (the machine has no route to Docker Hub anyway).
    const log = await readFile(mirror!.handle.logFile, 'utf8');
    // (BuildKit asks a mirror with `?ns=docker.io`, naming the registry it stands in for.)
    expect(log).toMatch(/"(GET|HEAD) \/v2\/library\/busybox\/manifests\/latest\?ns=docker\.io HTTP\/1\.1" 200 .*"buildkit\//);
    expect(log).toMatch(/"GET \/v2\/library\/busybox\/blobs\/sha256:[0-9a-f]{64}\?ns=docker\.io HTTP\/1\.1" 200 .*"buildkit\//);

    // The image's base layer is the mirrored busybox, and it runs on both architectures.
    const index = (await fetchManifest(kiln!.registry, repo, 'v1'))!;
    const base = (await fetchManifest(mirror!.address, 'library/busybox', 'latest'))!;
    for (const entry of platformEntries(index.json)) {
      const arch = entry.platform.architecture as string;
      const { rootfs, config, manifest } = await unpackImage(kiln!.registry, repo, entry.digest);
      const baseEntry = base.json.manifests.find((m: any) => m.platform.architecture === arch);
      const baseManifest = (await fetchManifest(mirror!.address, 'library/busybox', baseEntry.digest))!.json;
      expect(manifest.layers[0].digest).toBe(baseManifest.layers[0].digest);
      expect((await runInRootfs(rootfs, config.config.Cmd)).trim()).toBe(`mirrored ${arch === 'amd64' ? 'x86_64' : 'aarch64'}`);
    }
  });
});
