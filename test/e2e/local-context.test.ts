// Local contexts (issue 12): a tar stream uploaded to POST /contexts lands as a blob in the
// repository of Kiln's registry, a build names it by digest, every build worker unpacks it, the
// context dir and Dockerfile may not leave it, and the retention sweep removes it.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepBuildContexts } from '../../activities/context';
import { RegistryClient } from '../../activities/registry';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { fetchManifest, unpackImage, platformEntries } from '../support/registry';
import { readFile } from 'node:fs/promises';

const LIMIT = 256 * 1024;

async function makeTar(files: Record<string, string>, links: Record<string, string> = {}, gzip = true): Promise<Buffer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-ctx-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  for (const [name, target] of Object.entries(links)) await symlink(target, path.join(dir, name));
  const chunks: Buffer[] = [];
  for await (const c of tar.c({ cwd: dir, gzip, portable: true }, [...Object.keys(files), ...Object.keys(links)].map((f) => f.split('/')[0]!)))
    chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

describe('local build contexts', () => {
  let kiln: TestKiln;
  const repo = 'ctx/app';

  beforeAll(async () => {
    kiln = await startTestKiln({ maxContextBytes: LIMIT });
  });
  afterAll(async () => {
    await kiln?.close();
  });

  const upload = (body: Buffer, type = 'application/gzip', repository = repo) =>
    kiln.api(`/api/v1/contexts?repository=${repository}`, { method: 'POST', body, headers: { 'content-type': type } });

  it('stores an uploaded tar.gz by digest, builds it for two platforms and shows the context on the build', async () => {
    const body = await makeTar({
      'Dockerfile': `FROM ${kiln.registry}/base/busybox\nCOPY app /app\nRUN cat /app/hello.txt > /copied\n`,
      'app/hello.txt': 'hello from a local dir\n',
    });
    const res = await upload(body);
    expect(res.status).toBe(201);
    const stored = await res.json();
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    expect(stored).toMatchObject({ repository: repo, digest, size: body.length });
    // The blob is in the registry, byte for byte.
    const blob = await fetch(`http://${kiln.registry}/v2/${repo}/blobs/${digest}`);
    expect(Buffer.from(await blob.arrayBuffer()).equals(body)).toBe(true);

    const submit = await kiln.api('/api/v1/builds', {
      json: { repository: repo, context: { digest }, platforms: ['linux/amd64', 'linux/arm64'], tags: ['v1'] },
    });
    expect(submit.status).toBe(202);
    const build = await waitForBuild(kiln, (await submit.json()).buildId);
    expect(build.error).toBeUndefined();
    expect(build.status).toBe('succeeded');
    expect(build.context).toEqual({ digest, size: body.length, contextDir: '/', dockerfile: 'Dockerfile' });
    const index = (await fetchManifest(kiln.registry, repo, 'v1'))!;
    expect(index.digest).toBe(build.manifestDigest);
    for (const entry of platformEntries(index.json)) {
      const { rootfs } = await unpackImage(kiln.registry, repo, entry.digest);
      expect(await readFile(path.join(rootfs, 'copied'), 'utf8')).toBe('hello from a local dir\n');
    }
  });

  it('refuses a context over KILN_MAX_CONTEXT_BYTES with 413, declared or streamed', async () => {
    const big = randomBytes(LIMIT + 1024);
    const declared = await upload(big, 'application/x-tar');
    expect(declared.status).toBe(413);
    expect((await declared.json()).error).toMatchObject({ code: 'payload_too_large', details: { maxContextBytes: LIMIT } });
    // Without a Content-Length the limit holds as the bytes pass.
    const stream = new ReadableStream({
      start(ctrl) {
        for (let i = 0; i < big.length; i += 16 * 1024) ctrl.enqueue(big.subarray(i, i + 16 * 1024));
        ctrl.close();
      },
    });
    const streamed = await fetch(`${kiln.url}/api/v1/contexts?repository=${repo}`, {
      method: 'POST',
      body: stream,
      duplex: 'half',
      headers: { authorization: `Bearer ${kiln.token}`, 'content-type': 'application/x-tar' },
    } as RequestInit);
    expect(streamed.status).toBe(413);
    const digest = `sha256:${createHash('sha256').update(big).digest('hex')}`;
    expect((await fetch(`http://${kiln.registry}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
  });

  it('refuses a context dir or Dockerfile that leaves the upload: 400 for "..", a failed build for a symlink', async () => {
    const body = await makeTar({ 'sub/x': 'x' }, { Dockerfile: '../../../../../../etc/passwd' });
    const { digest } = await (await upload(body)).json();
    const dotdot = await kiln.api('/api/v1/builds', {
      json: { repository: repo, context: { digest, contextDir: '../etc' }, platforms: ['linux/amd64'], tags: ['x'] },
    });
    expect(dotdot.status).toBe(400);
    const submit = await kiln.api('/api/v1/builds', {
      json: { repository: repo, context: { digest }, platforms: ['linux/amd64'], tags: ['escape'] },
    });
    const build = await waitForBuild(kiln, (await submit.json()).buildId);
    expect(build.status).toBe('failed');
    expect(build.error.code).toBe('invalid_source');
    expect(build.error.message).toMatch(/linkpath escapes/);
  });

  it('answers 404 for a digest never uploaded to that repository, and the sweep removes expired contexts', async () => {
    const body = await makeTar({ Dockerfile: `FROM ${kiln.registry}/base/busybox\n` });
    const { digest } = await (await upload(body)).json();
    const elsewhere = await kiln.api('/api/v1/builds', {
      json: { repository: 'ctx/other', context: { digest }, platforms: ['linux/amd64'], tags: ['x'] },
    });
    expect(elsewhere.status).toBe(404);

    const registry = new RegistryClient(kiln.registry);
    const removed = await sweepBuildContexts({ db: kiln.db.db, registry }, 0, new Date(Date.now() + 1000));
    expect(removed).toBeGreaterThanOrEqual(1);
    expect((await fetch(`http://${kiln.registry}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status).toBe(404);
    const gone = await kiln.api('/api/v1/builds', {
      json: { repository: repo, context: { digest }, platforms: ['linux/amd64'], tags: ['x'] },
    });
    expect(gone.status).toBe(404);
    expect((await gone.json()).error.message).toMatch(/expired/);
  });
});
