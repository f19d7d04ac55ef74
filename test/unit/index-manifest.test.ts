import { describe, expect, it } from 'vitest';
import { assembleIndexManifest } from '../../activities/publish';
import { redactLine } from '../../activities/log-sink';

describe('assembleIndexManifest', () => {
  it('makes an OCI index with one entry per platform, in a stable order', () => {
    const images = [
      { platform: 'linux/arm64' as const, digest: 'sha256:b', mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 2, cacheHits: 0 },
      { platform: 'linux/amd64' as const, digest: 'sha256:a', mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, cacheHits: 0 },
    ];
    const index = assembleIndexManifest(images);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests.map((m) => m.platform)).toEqual([
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ]);
    expect(JSON.stringify(assembleIndexManifest([...images].reverse()))).toBe(JSON.stringify(index));
  });
});

describe('redactLine', () => {
  it('hides credentials in URLs', () => {
    expect(redactLine('fetching https://oauth2:s3cr3t@git.example.com/a.git')).toBe('fetching https://***@git.example.com/a.git');
    expect(redactLine('plain line')).toBe('plain line');
  });
});
