// Provenance attestations: the buildctl options that ask BuildKit for them, taking apart the
// per-platform index a push by digest makes, and putting the attestations back into the
// multi-arch index (and the eStargz one) in BuildKit's own layout.
import { describe, expect, it } from 'vitest';
import { acceleratedIndexBody } from '../../activities/accelerate';
import { attestationEntries, isAttestationEntry, splitPlatformPush } from '../../activities/attestations';
import { buildctlArgs, provenanceArgs } from '../../activities/build';
import { assembleIndexManifest } from '../../activities/publish';
import type { PlatformBuildRequest } from '../../activities/build-plan';
import type { PlatformImage } from '../../domain/images';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const d = (c: string) => `sha256:${c.repeat(64)}`;

const req: PlatformBuildRequest = {
  buildId: 'b1',
  repository: 'demo/app',
  platform: 'linux/amd64',
  source: { kind: 'inline', dockerfile: 'FROM scratch' },
  buildArgs: { TOKENLESS: 'x' },
  labels: {},
  target: null,
  noCache: false,
};
const values = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

describe('provenance options', () => {
  it('asks for mode=min by default and mode=max when the build says so, in both passes', () => {
    const context = { contextDir: '/w/c', dockerfileDir: '/w/d', dockerfileName: 'Dockerfile' };
    const deps = { buildkitAddr: 'unix:///bk.sock', registry: 'reg:5000' };
    expect(values(buildctlArgs(req, context, deps, '/m.json'), '--opt')).toContain('attest:provenance=mode=min');
    expect(values(buildctlArgs({ ...req, provenance: 'max' }, context, deps, '/m.json', 'estargz'), '--opt')).toContain('attest:provenance=mode=max');
    expect(values(buildctlArgs(req, context, deps, '/m.json'), '--opt').filter((o) => o.startsWith('vcs:'))).toEqual([]);
  });

  it('records the repository and commit of a git build as BuildKit vcs metadata', () => {
    const git = {
      ...req,
      source: { kind: 'git' as const, url: 'http://127.0.0.1:9/acme/web.git', commit: 'c0ffee'.padEnd(40, '0'), repositoryId: 'r', contextDir: '/svc/', dockerfilePath: 'Dockerfile' },
    };
    expect(values(provenanceArgs(git), '--opt')).toEqual([
      'attest:provenance=mode=min',
      'vcs:source=http://127.0.0.1:9/acme/web.git',
      `vcs:revision=${'c0ffee'.padEnd(40, '0')}`,
      'vcs:localdir:context=svc',
    ]);
  });
});

describe('splitPlatformPush', () => {
  const image = { mediaType: OCI_MANIFEST, digest: d('a'), size: 480, platform: { architecture: 'amd64', os: 'linux' } };
  const attestation = {
    mediaType: OCI_MANIFEST,
    digest: d('b'),
    size: 566,
    annotations: { 'vnd.docker.reference.digest': d('a'), 'vnd.docker.reference.type': 'attestation-manifest' },
    platform: { architecture: 'unknown', os: 'unknown' },
  };
  const pushed = { mediaType: OCI_INDEX, digest: d('c'), size: 900 };

  it('takes the image and its attestation out of the index BuildKit pushed', () => {
    expect(splitPlatformPush(pushed, { manifests: [image, attestation] })).toEqual({
      image: { mediaType: OCI_MANIFEST, digest: d('a'), size: 480 },
      attestation: { mediaType: OCI_MANIFEST, digest: d('b'), size: 566 },
    });
  });

  it('a plain manifest is the image itself', () => {
    const plain = { mediaType: OCI_MANIFEST, digest: d('a'), size: 480 };
    expect(splitPlatformPush(plain, null)).toEqual({ image: plain });
  });

  it('refuses an index that is not one image and the attestation of that image', () => {
    expect(() => splitPlatformPush(pushed, { manifests: [image, { ...image, digest: d('e') }] })).toThrow(/2 images/);
    const foreign = { ...attestation, annotations: { ...attestation.annotations, 'vnd.docker.reference.digest': d('f') } };
    expect(() => splitPlatformPush(pushed, { manifests: [image, foreign] })).toThrow(/refers to/);
  });
});

describe('the assembled index keeps the attestations', () => {
  const images: PlatformImage[] = [
    { platform: 'linux/arm64', mediaType: OCI_MANIFEST, digest: d('2'), size: 2, cacheHits: 0, attestation: { mediaType: OCI_MANIFEST, digest: d('4'), size: 4 } },
    { platform: 'linux/amd64', mediaType: OCI_MANIFEST, digest: d('1'), size: 1, cacheHits: 0, attestation: { mediaType: OCI_MANIFEST, digest: d('3'), size: 3 } },
  ];

  it('images first, then one attestation-manifest entry per image (unknown/unknown, annotated with its digest)', () => {
    const index = assembleIndexManifest(images);
    expect(index.manifests).toEqual([
      { mediaType: OCI_MANIFEST, digest: d('1'), size: 1, platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: OCI_MANIFEST, digest: d('2'), size: 2, platform: { architecture: 'arm64', os: 'linux' } },
      {
        mediaType: OCI_MANIFEST,
        digest: d('3'),
        size: 3,
        annotations: { 'vnd.docker.reference.digest': d('1'), 'vnd.docker.reference.type': 'attestation-manifest' },
        platform: { architecture: 'unknown', os: 'unknown' },
      },
      {
        mediaType: OCI_MANIFEST,
        digest: d('4'),
        size: 4,
        annotations: { 'vnd.docker.reference.digest': d('2'), 'vnd.docker.reference.type': 'attestation-manifest' },
        platform: { architecture: 'unknown', os: 'unknown' },
      },
    ]);
    expect(index.manifests.filter(isAttestationEntry)).toHaveLength(2);
    expect(attestationEntries(images.map((i) => ({ ...i, attestation: undefined })))).toEqual([]);
  });

  it('the eStargz index carries the eStargz images\' own attestations, never the plain ones', () => {
    const accelerated = images.map((img, i) => ({
      ...img,
      accelerated: { mediaType: OCI_MANIFEST, digest: d(String(5 + i)), size: 5, steps: 1, cacheHits: 1, attestation: { mediaType: OCI_MANIFEST, digest: d(String(7 + i)), size: 7 } },
    }));
    const index = JSON.parse(acceleratedIndexBody(accelerated).toString('utf8'));
    const refs = index.manifests.filter(isAttestationEntry).map((m: any) => [m.digest, m.annotations['vnd.docker.reference.digest']]);
    expect(refs).toEqual([[d('8'), d('6')], [d('7'), d('5')]]);
    // An eStargz variant without an attestation gets none (not the plain image's).
    const bare = images.map((img) => ({ ...img, accelerated: { mediaType: OCI_MANIFEST, digest: d('9'), size: 9, steps: 1, cacheHits: 1 } }));
    expect(JSON.parse(acceleratedIndexBody(bare).toString('utf8')).manifests.filter(isAttestationEntry)).toEqual([]);
  });
});
