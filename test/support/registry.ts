// Reads images back through the registry's own HTTP API (never through Kiln's records) and
// unpacks them to run their files.
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

export interface FetchedManifest {
  contentType: string;
  digest: string;
  json: any;
}

export async function fetchManifest(registry: string, repo: string, ref: string): Promise<FetchedManifest | null> {
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${ref}`, { headers: { accept: MANIFEST_ACCEPT } });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`GET manifest ${repo}:${ref}: ${res.status} ${await res.text()}`);
  return {
    contentType: res.headers.get('content-type') ?? '',
    digest: res.headers.get('docker-content-digest') ?? '',
    json: await res.json(),
  };
}

export async function fetchBlob(registry: string, repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`http://${registry}/v2/${repo}/blobs/${digest}`);
  if (!res.ok) throw new Error(`GET blob ${repo}@${digest}: ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

export async function listTags(registry: string, repo: string): Promise<string[]> {
  const res = await fetch(`http://${registry}/v2/${repo}/tags/list`);
  if (res.status === 404) return [];
  return ((await res.json()) as { tags: string[] | null }).tags ?? [];
}

/** Unpacks every layer of one platform image into a fresh directory (a root file system). */
export async function unpackImage(registry: string, repo: string, manifestDigest: string): Promise<{ rootfs: string; config: any; manifest: any }> {
  const manifest = (await fetchManifest(registry, repo, manifestDigest))!.json;
  const config = JSON.parse((await fetchBlob(registry, repo, manifest.config.digest)).toString('utf8'));
  const rootfs = await mkdtemp(path.join(tmpdir(), 'kiln-rootfs-'));
  for (const layer of manifest.layers as { digest: string }[]) {
    const file = path.join(rootfs, '..', `${path.basename(rootfs)}-${layer.digest.slice(7, 19)}.tar.gz`);
    await writeFile(file, await fetchBlob(registry, repo, layer.digest));
    await run('tar', ['-xzf', file, '-C', rootfs]);
  }
  return { rootfs, config, manifest };
}

/** Runs the image's command in its unpacked root (chroot; arm64 binaries run through QEMU binfmt). */
export async function runInRootfs(rootfs: string, argv: string[]): Promise<string> {
  const { stdout } = await run('chroot', [rootfs, ...argv], { timeout: 30_000 });
  return stdout;
}

/**
 * The platform images of an index, as a pull chooses among them: without BuildKit's provenance
 * attestation manifests (platform unknown/unknown, `vnd.docker.reference.type: attestation-manifest`).
 */
export function platformEntries(index: { manifests: any[] }): any[] {
  return index.manifests.filter((m) => m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
}
