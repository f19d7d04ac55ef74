import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encryptRegistryAuths, registryAuthEnv, writeDockerConfig } from '../../activities/registry-auth';
import { insertBuild } from '../../db/queries/builds';
import { ensureNamespace } from '../../db/queries/namespaces';
import { ensureRepository } from '../../db/queries/repositories';
import { openDatabase, type DbHandle } from '../../db/client';

const AUTH = Buffer.from('puller:pw').toString('base64');

describe('writeDockerConfig', () => {
  it("writes the build's auths over the worker's own config, private to this user", async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-dc-'));
    const base = path.join(root, 'base.json');
    await writeFile(base, JSON.stringify({ auths: { 'mine.example.com': { auth: 'bWU6eA==' }, 'r.example.com': { auth: 'old' } }, credsStore: 'pass' }));
    const dir = await writeDockerConfig(path.join(root, 'dc'), { 'r.example.com': { auth: AUTH }, '127.0.0.1:5001': { auth: AUTH } }, base);
    const config = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
    expect(config).toEqual({
      auths: { 'mine.example.com': { auth: 'bWU6eA==' }, 'r.example.com': { auth: AUTH }, '127.0.0.1:5001': { auth: AUTH } },
      credsStore: 'pass',
    });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(dir, 'config.json'))).mode & 0o777).toBe(0o600);
  });

  it('works without a worker config', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-dc-'));
    const dir = await writeDockerConfig(path.join(root, 'dc'), { 'r.example.com': { auth: AUTH } }, path.join(root, 'none.json'));
    expect(JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'))).toEqual({ auths: { 'r.example.com': { auth: AUTH } } });
  });
});

describe('registryAuthEnv', () => {
  let handle: DbHandle;
  let repositoryId: string;
  beforeAll(async () => {
    handle = await openDatabase({ dataDir: 'memory://' });
    const ns = await ensureNamespace(handle.db, 'pai');
    repositoryId = (await ensureRepository(handle.db, ns, 'app')).id;
  }, 60_000);
  afterAll(() => handle?.close());

  async function build(registryAuthsEnc: string | null) {
    const id = crypto.randomUUID();
    await insertBuild(handle.db, {
      id, repositoryId, trigger: 'api', creationMethod: 'manual build', dockerfile: 'FROM scratch', platforms: ['linux/amd64'],
      tags: ['v1'], workflowId: `build-${id}`, registryAuthsEnc,
    });
    return id;
  }

  it('gives buildctl a DOCKER_CONFIG with the decrypted credentials', async () => {
    const id = await build(encryptRegistryAuths('key-1', { '127.0.0.1:5001': { auth: AUTH } }));
    const workDir = await mkdtemp(path.join(tmpdir(), 'kiln-work-'));
    const env = await registryAuthEnv({ db: handle.db, secretKey: 'key-1', buildId: id, workDir });
    expect(env!.DOCKER_CONFIG).toBe(path.join(workDir, 'docker-config'));
    expect(JSON.parse(await readFile(path.join(env!.DOCKER_CONFIG!, 'config.json'), 'utf8')).auths['127.0.0.1:5001']).toEqual({ auth: AUTH });
    expect(env!.PATH).toBe(process.env.PATH);
  });

  it('nothing for a build without credentials; a clear non-retryable failure when they cannot be read', async () => {
    const workDir = await mkdtemp(path.join(tmpdir(), 'kiln-work-'));
    expect(await registryAuthEnv({ db: handle.db, secretKey: 'key-1', buildId: await build(null), workDir })).toBeUndefined();
    const id = await build(encryptRegistryAuths('key-1', { 'r.example.com': { auth: AUTH } }));
    await expect(registryAuthEnv({ db: handle.db, secretKey: 'another-key', buildId: id, workDir })).rejects.toMatchObject({
      type: 'registry_auth_unavailable',
      nonRetryable: true,
      message: expect.stringMatching(/KILN_SECRET_KEY/),
    });
    await expect(registryAuthEnv({ db: handle.db, secretKey: undefined, buildId: id, workDir })).rejects.toMatchObject({ nonRetryable: true });
  });
});
