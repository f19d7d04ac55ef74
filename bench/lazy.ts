// Lazy-pull row of `npm run bench`: does an `_accelerated` (eStargz) image start faster than its
// plain twin? Both come from one Kiln build (`accelerated: true`) in Kiln's registry; each run
// starts from an empty content store and empty snapshotter state (infra/lazy-pull.ts reset()).
// Plain: `ctr image pull` (overlayfs, every layer fetched and unpacked) then `ctr run`;
// accelerated: `ctr-remote image rpull` (stargz snapshotter, layers mounted from the registry,
// files fetched on first read) then `ctr run`. Timed from the pull to the first line printed.
import path from 'node:path';
import { REMOTE_SNAPSHOT_LABEL, startLazyPullRuntime, type LazyPullRuntime, type Snapshotter } from '../infra/lazy-pull';
import { kilnBuild, type BuildCtx, type Side } from './builds';
import { median } from './stats';

export interface LazyImageResult {
  plain: Side;
  accelerated: Side;
  /** Compressed bytes of the plain image's layers (amd64). */
  layerBytes: number;
}

export interface LazyResult {
  large: LazyImageResult;
  small: LazyImageResult;
  versions: Awaited<ReturnType<LazyPullRuntime['versions']>>;
}

/** ~500 MB of incompressible files in one layer; the command reads one small file. */
const LARGE_FILES = 50;
const LARGE_FILE_BYTES = 10_000_000;

async function layerBytes(registry: string, repository: string, tag: string): Promise<number> {
  const accept = 'application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json';
  const index = (await (await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, { headers: { accept } })).json()) as any;
  const amd64 = index.manifests.find((m: any) => m.platform?.architecture === 'amd64');
  const manifest = (await (await fetch(`http://${registry}/v2/${repository}/manifests/${amd64.digest}`, { headers: { accept } })).json()) as any;
  return manifest.layers.reduce((n: number, l: any) => n + l.size, 0);
}

async function measure(ctx: BuildCtx, rt: LazyPullRuntime, repository: string, dockerfile: string, expected: string, log: (m: string) => void): Promise<LazyImageResult> {
  const build = await kilnBuild(ctx, { repository, dockerfile, platforms: ['linux/amd64'], tags: ['v1'], accelerated: true });
  if (!build.accelerated?.tags?.includes('v1_accelerated')) throw new Error(`${repository}: the build pushed no v1_accelerated`);
  const image = `${ctx.stack.registry}/${repository}`;
  const sides: Record<'plain' | 'accelerated', number[]> = { plain: [], accelerated: [] };
  const once = async (which: 'plain' | 'accelerated') => {
    const [ref, snapshotter]: [string, Snapshotter] = which === 'plain' ? [`${image}:v1`, 'overlayfs'] : [`${image}:v1_accelerated`, 'stargz'];
    await rt.reset();
    const r = await rt.coldStart(ref, snapshotter);
    if (r.firstLine !== expected) throw new Error(`${ref}: first line ${JSON.stringify(r.firstLine)}, expected ${JSON.stringify(expected)}`);
    if (which === 'accelerated') {
      // A figure for a lazy start only counts if the layers really were mounted remotely (ctr-remote
      // falls back to a full pull when the snapshotter cannot).
      const snaps = await rt.snapshots('stargz');
      if (snaps.length === 0 || snaps.some((s) => !s.labels[REMOTE_SNAPSHOT_LABEL])) throw new Error(`${ref}: not every layer is a remote snapshot`);
    }
    sides[which].push(r.ms);
    log(`  ${repository} ${which}: ${r.ms.toFixed(0)} ms (pull ${r.pullMs.toFixed(0)} ms)`);
  };
  for (let i = 0; i < ctx.runs; i++) {
    // Interleaved, and alternating which side goes first.
    const order: Array<'plain' | 'accelerated'> = i % 2 ? ['accelerated', 'plain'] : ['plain', 'accelerated'];
    for (const which of order) await once(which);
  }
  return {
    plain: { median: median(sides.plain), samples: sides.plain },
    accelerated: { median: median(sides.accelerated), samples: sides.accelerated },
    layerBytes: await layerBytes(ctx.stack.registry, repository, 'v1'),
  };
}

/** 6. Cold start of a plain image vs its `_accelerated` twin, for a large image and a small one. */
export async function benchLazyPull(ctx: BuildCtx, log: (m: string) => void): Promise<LazyResult> {
  const base = `${ctx.stack.registry}/base/busybox`;
  const rt = await startLazyPullRuntime({ dir: path.join(ctx.workDir, 'lazy-pull'), registry: ctx.stack.registry });
  try {
    const versions = await rt.versions();
    log(`  containerd ${versions.containerd}, containerd-stargz-grpc ${versions.stargzSnapshotter}, ctr-remote ${versions.ctrRemote}`);
    const large = await measure(
      ctx,
      rt,
      'bench/lazy-large',
      [
        `FROM ${base}`,
        `RUN mkdir /data && for i in $(seq 1 ${LARGE_FILES}); do head -c ${LARGE_FILE_BYTES} /dev/urandom > /data/blob-$i; done && echo lazy-large > /data/hello.txt`,
        'CMD ["cat","/data/hello.txt"]',
      ].join('\n'),
      'lazy-large',
      log,
    );
    const small = await measure(ctx, rt, 'bench/lazy-small', [`FROM ${base}`, 'RUN echo lazy-small > /hello.txt', 'CMD ["cat","/hello.txt"]'].join('\n'), 'lazy-small', log);
    return { large, small, versions };
  } finally {
    await rt.stop();
  }
}
