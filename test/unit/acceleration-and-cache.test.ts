// The buildctl arguments of the image and eStargz passes, the registry cache ref, the accelerated
// index, the missing-cache progress line, and the mirror configuration (env → buildkitd.toml).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { acceleratedIndexBody, createAccelerateActivities } from '../../activities/accelerate';
import { buildctlArgs, dockerfileSteps, registryCacheRef } from '../../activities/build';
import { ProgressTracker } from '../../activities/progress';
import type { Db } from '../../db/client';
import { parseEnv } from '../../env';
import { buildkitdToml, parseMirror } from '../../infra/buildkitd';
import type { PlatformBuildRequest } from '../../activities/build-plan';
import type { PlatformImage } from '../../domain/images';

const req: PlatformBuildRequest = {
  buildId: 'b1',
  repository: 'demo/app',
  platform: 'linux/arm64',
  source: { kind: 'inline', dockerfile: 'FROM scratch' },
  buildArgs: { A: '1' },
  labels: {},
  target: null,
  noCache: false,
  accelerated: true,
};
const context = { contextDir: '/w/ctx', dockerfileDir: '/w/df', dockerfileName: 'Dockerfile' };
const deps = { buildkitAddr: 'unix:///bk.sock', registry: 'reg:5000' };

/** The values of every `flag` in args. */
const values = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

describe('buildctl arguments', () => {
  it('imports and exports the per-repository, per-platform registry cache (mode=max) on a normal build', () => {
    const args = buildctlArgs(req, context, deps, '/w/meta.json');
    expect(registryCacheRef('reg:5000', 'demo/app', 'linux/arm64')).toBe('reg:5000/demo/app/buildcache:linux-arm64');
    expect(values(args, '--import-cache')).toEqual(['type=registry,ref=reg:5000/demo/app/buildcache:linux-arm64']);
    expect(values(args, '--export-cache')).toEqual(['type=registry,ref=reg:5000/demo/app/buildcache:linux-arm64,mode=max,ignore-error=true']);
    expect(values(args, '--output')).toEqual(['type=image,name=reg:5000/demo/app,push=true,push-by-digest=true,oci-mediatypes=true']);
    expect(args).not.toContain('--no-cache');
  });

  it('with noCache: runs every step (--no-cache), imports nothing, still exports for the next build', () => {
    const args = buildctlArgs({ ...req, noCache: true }, context, deps, '/w/meta.json');
    expect(args).toContain('--no-cache');
    expect(values(args, '--import-cache')).toEqual([]);
    expect(values(args, '--export-cache')).toHaveLength(1);
  });

  it('the eStargz pass: same definition, forced eStargz output, no export, never --no-cache', () => {
    const image = buildctlArgs(req, context, deps, '/w/meta.json');
    const estargz = buildctlArgs(req, context, deps, '/w/meta-estargz.json', 'estargz');
    expect(values(estargz, '--output')).toEqual([
      'type=image,name=reg:5000/demo/app,push=true,push-by-digest=true,oci-mediatypes=true,compression=estargz,force-compression=true',
    ]);
    expect(values(estargz, '--opt')).toEqual(values(image, '--opt'));
    expect(values(estargz, '--local')).toEqual(values(image, '--local'));
    expect(values(estargz, '--export-cache')).toEqual([]);
    expect(values(estargz, '--import-cache')).toEqual(values(image, '--import-cache'));
    const noCache = buildctlArgs({ ...req, noCache: true }, context, deps, '/w/m.json', 'estargz');
    expect(noCache).not.toContain('--no-cache');
    expect(values(noCache, '--import-cache')).toEqual([]);
  });

  it('counts Dockerfile steps that do work, not FROM and not internal vertexes', () => {
    const step = (name: string, cached = true) => ({ name, cached, startedAt: null, completedAt: null });
    const steps = [
      step('[internal] load build definition from Dockerfile'),
      step('[builder 1/3] FROM reg/base@sha256:abc', false),
      step('[builder 2/3] RUN make'),
      step('[stage-1 2/2] COPY --from=builder /out /out'),
      step('exporting to image', false),
    ];
    expect(dockerfileSteps(steps).map((s) => s.name)).toEqual(['[builder 2/3] RUN make', '[stage-1 2/2] COPY --from=builder /out /out']);
  });
});

/** The tracker's output as lines (each ends in a newline). */
const linesOf = (b: Buffer) => b.toString('utf8').split('\n').slice(0, -1);

describe('progress of a build whose registry cache does not exist yet', () => {
  const fixture = readFileSync(new URL('../fixtures/buildctl-cache-import-miss.stderr', import.meta.url), 'utf8').split('\n');
  const tracker = new ProgressTracker({ firstIndex: 20 });
  const lines = linesOf(Buffer.concat([...fixture.map((l) => tracker.push(l)), tracker.flush()]));

  it('reports the missing cache as news, not as an error', () => {
    const at = lines.findIndex((l) => /^#\d+ importing cache manifest from .*buildcache:linux-amd64$/.test(l));
    expect(at).toBeGreaterThan(-1);
    const n = lines[at]!.split(' ')[0];
    expect(lines).toContain(`${n} no cache there yet`);
    expect(lines.filter((l) => l.startsWith(`${n} importing`))).toHaveLength(1);
    expect(lines.some((l) => /ERROR/.test(l))).toBe(false);
    expect(tracker.errors()).toEqual([]);
    expect(tracker.steps().some((s) => s.error)).toBe(false);
  });

  it('numbers steps from firstIndex, so a second solve continues the first one', () => {
    expect(lines[0]).toMatch(/^#20 /);
    expect(tracker.nextIndex).toBeGreaterThan(20);
  });
});

describe('the accelerated index', () => {
  const img = (platform: 'linux/amd64' | 'linux/arm64', n: number, accelerated = true): PlatformImage => ({
    platform,
    digest: `sha256:${String(n).repeat(64)}`,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 500 + n,
    cacheHits: 2,
    ...(accelerated
      ? { accelerated: { digest: `sha256:${String(n + 5).repeat(64)}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 900 + n, steps: 2, cacheHits: 2 } }
      : {}),
  });

  it('lists the eStargz variant of every platform', () => {
    const index = JSON.parse(acceleratedIndexBody([img('linux/arm64', 2), img('linux/amd64', 1)]).toString());
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests).toEqual([
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'6'.repeat(64)}`, size: 901, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'7'.repeat(64)}`, size: 902, platform: { architecture: 'arm64', os: 'linux' } },
    ]);
    expect(() => acceleratedIndexBody([img('linux/amd64', 1, false)])).toThrow(/no eStargz variant/);
  });

  it('refuses, before anything is pushed, an anchor tag too long for its _accelerated tag', async () => {
    const { prepareAcceleratedIndex } = createAccelerateActivities({ db: {} as Db, registry: {} as never });
    const input = { buildId: 'b', repository: 'demo/app', images: [img('linux/amd64', 1)], immutableTags: false };
    await expect(prepareAcceleratedIndex({ ...input, tags: ['x'.repeat(120)] })).rejects.toMatchObject({ type: 'invalid_tag' });
    await expect(prepareAcceleratedIndex({ ...input, tags: ['v1', 'latest'] })).resolves.toMatchObject({
      tags: ['v1_accelerated', 'latest_accelerated'],
      digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
    });
  });
});

describe('registry mirrors', () => {
  it('parses KILN_REGISTRY_MIRRORS into mirrors per registry, in order', () => {
    const env = parseEnv({ KILN_REGISTRY_MIRRORS: 'docker.io=127.0.0.1:5001, docker.io=http://mirror.lan:5000,ghcr.io=mirror.lan:5002' });
    expect(env.KILN_REGISTRY_MIRRORS).toEqual({ 'docker.io': ['127.0.0.1:5001', 'http://mirror.lan:5000'], 'ghcr.io': ['mirror.lan:5002'] });
    expect(parseEnv({}).KILN_REGISTRY_MIRRORS).toEqual({});
    expect(() => parseEnv({ KILN_REGISTRY_MIRRORS: 'docker.io' })).toThrow(/registry=mirror/);
    expect(() => parseEnv({ KILN_REGISTRY_MIRRORS: 'docker.io=ftp://x' })).toThrow(/registry=mirror/);
  });

  it('writes one [registry] table per host, with mirrors and plain HTTP where needed', () => {
    const toml = buildkitdToml(['registry.lan:5000'], {
      'docker.io': ['127.0.0.1:5001', 'http://mirror.lan:5000'],
      'registry.lan:5000': ['https://mirror.lan:5003'],
    });
    expect(toml).toContain('[registry."docker.io"]\n  mirrors = ["127.0.0.1:5001", "mirror.lan:5000"]\n');
    // A plain-HTTP mirror off loopback gets `http = true`; loopback is plain HTTP by itself.
    expect(toml).toContain('[registry."mirror.lan:5000"]\n  http = true\n');
    expect(toml).not.toContain('[registry."127.0.0.1:5001"]');
    // A registry that is both plain HTTP and mirrored keeps one table (TOML forbids two).
    expect(toml.match(/\[registry\."registry\.lan:5000"\]/g)).toHaveLength(1);
    expect(toml).toContain('[registry."registry.lan:5000"]\n  mirrors = ["mirror.lan:5003"]\n  http = true\n');
    expect(parseMirror('http://[::1]:5000/')).toEqual({ host: '[::1]:5000', plainHttp: true });
  });
});
