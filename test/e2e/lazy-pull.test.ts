// Accelerated images are lazily pulled by a real stargz snapshotter: the amd64 image of a
// two-platform Kiln build's `_accelerated` index, pulled with `ctr-remote image rpull` into a private
// containerd (infra/lazy-pull.ts), is mounted layer by layer from the registry (remote snapshots,
// one FUSE mount per layer, no layer blob in containerd's content store) and prints what the plain
// image prints when run from containerd's overlayfs snapshotter. Not timed: see `npm run bench -- lazy`.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REMOTE_SNAPSHOT_LABEL, startLazyPullRuntime, type LazyPullRuntime } from '../../infra/lazy-pull';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { fetchManifest, platformEntries } from '../support/registry';

const TOC = 'containerd.io/snapshot/stargz/toc.digest';
let kiln: TestKiln;
let rt: LazyPullRuntime;
let rtDir: string;

beforeAll(async () => {
  kiln = await startTestKiln();
  rtDir = mkdtempSync(path.join(tmpdir(), 'kiln-lazy-'));
  rt = await startLazyPullRuntime({ dir: rtDir, registry: kiln.registry });
});
afterAll(async () => {
  await rt?.stop();
  if (rtDir) rmSync(rtDir, { recursive: true, force: true });
  await kiln?.close();
});

describe('lazy pull of an accelerated image', () => {
  it('runs the amd64 image of a two-platform build from remote snapshots, with the plain image\'s output', async () => {
    const repo = `lazy/app-${randomBytes(3).toString('hex')}`;
    const submit = await kiln.api('/api/v1/builds', {
      json: {
        repository: repo,
        dockerfile: [
          `FROM ${kiln.registry}/base/busybox`,
          'RUN echo "lazy $(uname -m)" > /greeting',
          // Random: equal output from both images means equal files, not merely the same Dockerfile.
          'RUN head -c 16 /dev/urandom | od -An -tx1 > /nonce',
          'CMD ["sh","-c","cat /greeting /nonce"]',
        ].join('\n'),
        platforms: ['linux/amd64', 'linux/arm64'],
        tags: ['v1'],
        accelerated: true,
      },
    });
    expect(submit.status).toBe(202);
    const build = await waitForBuild(kiln, (await submit.json()).buildId, 300_000);
    expect(build.status).toBe('succeeded');

    const index = (await fetchManifest(kiln.registry, repo, 'v1_accelerated'))!;
    expect(platformEntries(index.json).map((m: any) => m.platform.architecture).sort()).toEqual(['amd64', 'arm64']);
    const amd64 = index.json.manifests.find((m: any) => m.platform.architecture === 'amd64');
    const manifest = (await fetchManifest(kiln.registry, repo, amd64.digest))!.json;
    const layers: string[] = manifest.layers.map((l: any) => l.digest);
    expect(manifest.layers.every((l: any) => l.annotations?.[TOC])).toBe(true);

    // Lazy pull: every layer becomes a remote snapshot mounted through FUSE; no layer is fetched
    // into containerd's content store (only the index, the manifest and the config are).
    await rt.pull(`${kiln.registry}/${repo}:v1_accelerated`, 'stargz');
    const snapshots = await rt.snapshots('stargz');
    expect(snapshots).toHaveLength(layers.length);
    for (const s of snapshots) expect(s.labels[REMOTE_SNAPSHOT_LABEL], `snapshot ${s.key}`).toBe('remote snapshot');
    expect(snapshots.map((s) => s.labels['containerd.io/snapshot/remote/stargz.digest']).sort()).toEqual([...layers].sort());
    expect(rt.stargzMounts()).toHaveLength(layers.length);
    const content = await rt.content();
    expect(content).toEqual(expect.arrayContaining([index.digest, amd64.digest, manifest.config.digest]));
    for (const layer of layers) expect(content).not.toContain(layer);

    const lazy = await rt.run(`${kiln.registry}/${repo}:v1_accelerated`, 'stargz');
    expect(lazy.firstLine).toBe('lazy x86_64');
    expect(lazy.output.split('\n')[1]).toMatch(/^( [0-9a-f]{2}){16}$/);
    // The container has a network namespace of its own with nothing but loopback.
    const netdev = await rt.run(`${kiln.registry}/${repo}:v1_accelerated`, 'stargz', ['cat', '/proc/net/dev']);
    expect(netdev.output.split('\n').slice(2).filter(Boolean).map((l) => l.trim().split(':')[0])).toEqual(['lo']);

    // The plain image, fully pulled and unpacked by the overlayfs snapshotter, prints the same.
    await rt.pull(`${kiln.registry}/${repo}:v1`, 'overlayfs');
    const overlay = await rt.snapshots('overlayfs');
    expect(overlay.length).toBeGreaterThan(0);
    expect(overlay.some((s) => s.labels[REMOTE_SNAPSHOT_LABEL])).toBe(false);
    const plain = await rt.run(`${kiln.registry}/${repo}:v1`, 'overlayfs');
    expect(plain.output).toBe(lazy.output);
  }, 360_000);
});
