/**
 * The base image test Dockerfiles start FROM: no Docker Hub is reachable, so a multi-arch busybox
 * image is made from Debian's static busybox binaries (amd64 and arm64) and pushed to our registry
 * as base/busybox:latest. The Dockerfile has no RUN, so making it needs no emulation.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RegistryClient, type RegistryCredentials } from '../activities/registry.js';
import { writeDockerConfig } from '../activities/registry-auth.js';

export const BASE_IMAGE_REPO = 'base/busybox';
export const BASE_IMAGE_TAG = 'latest';
const PLATFORMS = ['linux/amd64', 'linux/arm64'] as const;


export interface BaseImageOptions {
  /** host:port of the registry (plain HTTP). */
  registry: string;
  buildctl: string;
  buildkitAddr: string;
  busybox: { amd64: string; arm64: string };
  /** Scratch dir for the build context (recreated). */
  workDir: string;
  /** Registry is plain HTTP but not on loopback. */
  insecure?: boolean;
  /** A login for a registry with auth (Kiln's own: its system credential). */
  credentials?: RegistryCredentials;
  log?: (msg: string) => void;
}

interface IndexManifest {
  mediaType?: string;
  manifests?: Array<{ digest: string; platform?: { os?: string; architecture?: string } }>;
}

/** The platforms (os/arch) of <registry>/<repo>:<tag>'s index, or null if it does not exist. */
export async function indexPlatforms(
  registry: string,
  repo = BASE_IMAGE_REPO,
  tag = BASE_IMAGE_TAG,
  credentials?: RegistryCredentials,
): Promise<string[] | null> {
  const manifest = await new RegistryClient(registry, credentials).getManifest(repo, tag);
  if (!manifest) return null;
  const body = manifest.json as IndexManifest;
  if (!Array.isArray(body.manifests)) return []; // a single-platform manifest, not an index
  return body.manifests.flatMap((m) => (m.platform?.os && m.platform.architecture ? [`${m.platform.os}/${m.platform.architecture}`] : []));
}

function runCapture(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, out: out + err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Lays out the build context: rootfs-<arch>/ with busybox, every applet as a symlink, /etc, /tmp. */
export async function writeBaseImageContext(dir: string, busybox: { amd64: string; arm64: string }): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  // The applet list comes from the amd64 binary (it runs natively); both are the same Debian build.
  const list = await runCapture(busybox.amd64, ['--list'], 10_000);
  if (list.code !== 0) throw new Error(`${busybox.amd64} --list failed: ${list.out}`);
  const applets = list.out.split('\n').map((s) => s.trim()).filter((s) => /^[\w.[\]-]+$/.test(s) && s !== 'busybox');
  for (const must of ['sh', 'echo', 'cat', 'ls', 'uname']) {
    if (!applets.includes(must)) throw new Error(`busybox has no ${must} applet`);
  }
  for (const arch of ['amd64', 'arm64'] as const) {
    const root = join(dir, `rootfs-${arch}`);
    for (const d of ['bin', 'usr/bin', 'etc', 'root']) mkdirSync(join(root, d), { recursive: true });
    mkdirSync(join(root, 'tmp'));
    chmodSync(join(root, 'tmp'), 0o1777);
    copyFileSync(busybox[arch], join(root, 'bin', 'busybox'));
    chmodSync(join(root, 'bin', 'busybox'), 0o755);
    for (const a of applets) symlinkSync('busybox', join(root, 'bin', a));
    // `#!/usr/bin/env sh` scripts are common.
    symlinkSync('../../bin/busybox', join(root, 'usr', 'bin', 'env'));
    // So `id`, `USER nobody` and `whoami` behave.
    writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  }
  writeFileSync(join(dir, 'Dockerfile'), 'FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\nCMD ["sh"]\n');
}

/** Pushes <registry>/base/busybox:latest (linux/amd64 + linux/arm64) unless it is already there. */
export async function ensureBaseImage(o: BaseImageOptions): Promise<{ built: boolean; platforms: string[] }> {
  const log = o.log ?? (() => {});
  const have = await indexPlatforms(o.registry, BASE_IMAGE_REPO, BASE_IMAGE_TAG, o.credentials);
  if (have && PLATFORMS.every((p) => have.includes(p))) return { built: false, platforms: have };

  log(`building ${o.registry}/${BASE_IMAGE_REPO}:${BASE_IMAGE_TAG} for ${PLATFORMS.join(', ')}`);
  const ctx = join(o.workDir, 'context');
  await writeBaseImageContext(ctx, o.busybox);
  const output = [
    'type=image',
    `name=${o.registry}/${BASE_IMAGE_REPO}:${BASE_IMAGE_TAG}`,
    'push=true',
    'oci-mediatypes=true',
    // With SOURCE_DATE_EPOCH below: the same binaries give the same digest on every machine.
    'rewrite-timestamp=true',
    ...(o.insecure ? ['registry.insecure=true'] : []),
  ].join(',');
  // A registry with auth gets the login through a private DOCKER_CONFIG, removed right after.
  const dockerConfig = join(o.workDir, 'docker-config');
  const env = o.credentials
    ? {
        ...process.env,
        DOCKER_CONFIG: await writeDockerConfig(dockerConfig, {
          [o.registry]: { auth: Buffer.from(`${o.credentials.username}:${o.credentials.password}`).toString('base64') },
        }),
      }
    : undefined;
  const r = await runCapture(
    o.buildctl,
    [
      '--addr', o.buildkitAddr,
      'build',
      '--frontend', 'dockerfile.v0',
      '--local', `context=${ctx}`,
      '--local', `dockerfile=${ctx}`,
      '--opt', `platform=${PLATFORMS.join(',')}`,
      '--opt', 'build-arg:SOURCE_DATE_EPOCH=0',
      '--output', output,
      '--progress', 'plain',
    ],
    10 * 60_000,
    env,
  ).finally(() => rmSync(dockerConfig, { recursive: true, force: true }));
  if (r.code !== 0) {
    throw new Error(`building the base image failed (buildctl exit ${r.code}):\n${r.out.split('\n').slice(-30).join('\n')}`);
  }
  const now = await indexPlatforms(o.registry, BASE_IMAGE_REPO, BASE_IMAGE_TAG, o.credentials);
  const missing = PLATFORMS.filter((p) => !now?.includes(p));
  if (missing.length) throw new Error(`base image pushed but its index lacks ${missing.join(', ')} (has: ${now?.join(', ') ?? 'nothing'})`);
  log(`base image ready: ${o.registry}/${BASE_IMAGE_REPO}:${BASE_IMAGE_TAG} (${now!.join(', ')})`);
  return { built: true, platforms: now! };
}
