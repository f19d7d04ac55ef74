// Registry plumbing for tests that need more than reading: copying an image between registries
// byte for byte (so digests stay the same), reading layer tar listings, finding a free port, and
// a build host of their own (a buildkitd on an empty root).
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BuildNetwork, NetworkAllowEntry } from '../../infra/build-network';
import { startBuildkitd, type RegistryMirrors } from '../../infra/buildkitd';
import type { ProcessHandle } from '../../infra/supervisor';
import { fetchBlob, MANIFEST_ACCEPT } from './registry';

const run = promisify(execFile);


async function getRaw(registry: string, repo: string, ref: string): Promise<{ body: Buffer; contentType: string }> {
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${ref}`, { headers: { accept: MANIFEST_ACCEPT } });
  if (!res.ok) throw new Error(`GET ${registry}/${repo}:${ref}: ${res.status}`);
  return { body: Buffer.from(await res.arrayBuffer()), contentType: res.headers.get('content-type') ?? '' };
}

async function putManifest(registry: string, repo: string, ref: string, m: { body: Buffer; contentType: string }): Promise<void> {
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${ref}`, { method: 'PUT', headers: { 'content-type': m.contentType }, body: m.body });
  if (!res.ok) throw new Error(`PUT ${registry}/${repo}:${ref}: ${res.status} ${await res.text()}`);
}

async function copyBlob(from: string, fromRepo: string, to: string, toRepo: string, digest: string): Promise<void> {
  if ((await fetch(`http://${to}/v2/${toRepo}/blobs/${digest}`, { method: 'HEAD' })).ok) return;
  const data = await fetchBlob(from, fromRepo, digest);
  const start = await fetch(`http://${to}/v2/${toRepo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`start upload to ${to}/${toRepo}: ${start.status}`);
  const location = new URL(start.headers.get('location')!, `http://${to}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
  if (put.status !== 201) throw new Error(`upload ${digest} to ${to}/${toRepo}: ${put.status} ${await put.text()}`);
}

/** Copies an image (an index and every platform of it, or one manifest) to another registry. */
export async function copyImage(from: { registry: string; repo: string; ref: string }, to: { registry: string; repo: string; tag: string }): Promise<void> {
  const top = await getRaw(from.registry, from.repo, from.ref);
  const json = JSON.parse(top.body.toString('utf8'));
  const manifests: { digest: string }[] = json.manifests ?? [];
  for (const child of manifests) {
    const m = await getRaw(from.registry, from.repo, child.digest);
    await copyManifestBlobs(from, to, JSON.parse(m.body.toString('utf8')));
    await putManifest(to.registry, to.repo, child.digest, m);
  }
  if (!json.manifests) await copyManifestBlobs(from, to, json);
  await putManifest(to.registry, to.repo, to.tag, top);
}

async function copyManifestBlobs(from: { registry: string; repo: string }, to: { registry: string; repo: string }, manifest: any): Promise<void> {
  for (const blob of [manifest.config, ...manifest.layers] as { digest: string }[]) {
    await copyBlob(from.registry, from.repo, to.registry, to.repo, blob.digest);
  }
}

/**
 * The paths in one (gzip or eStargz) layer blob. `--ignore-zeros`: an eStargz layer appends its
 * TOC entry (stargz.index.json) after the end-of-archive blocks of the files' tar stream.
 */
export async function layerFiles(registry: string, repo: string, digest: string): Promise<string[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-layer-'));
  const file = path.join(dir, 'layer.tar.gz');
  await writeFile(file, await fetchBlob(registry, repo, digest));
  const { stdout } = await run('tar', ['--ignore-zeros', '-tzf', file], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.split('\n').filter(Boolean);
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1' }, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A buildkitd of its own on an empty state directory, as on a freshly provisioned build host. */
export async function startBuildHost(
  opts: { registryMirrors?: RegistryMirrors; networkAllow?: NetworkAllowEntry[] } = {},
): Promise<{ address: string; dataDir: string; handle: ProcessHandle; network: BuildNetwork }> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kiln-buildhost-'));
  const { address, handle, network } = await startBuildkitd({ dataDir, registryMirrors: opts.registryMirrors, networkAllow: opts.networkAllow, log: () => {} });
  return { address, dataDir, handle, network };
}
