// Issue #8 point 2 on the real stack: the registry Kiln starts enforces access with Kiln as its
// token issuer (Distribution `auth: token`). skopeo (Debian), a standard client, logs in with Kiln
// tokens; builds get credentials of their own; another namespace's private image is out of reach
// for FROM, COPY --from and by digest; notifications tell a user push by the token's subject.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { registryNotificationToken } from '../../api/routes/registry-events';
import { REGISTRY_TOKEN_ISSUER, REGISTRY_TOKEN_SERVICE } from '../../domain/registry-access';
import { run } from '../../infra/process-run';
import { loadOrCreateRegistryTokenKeys } from '../../infra/registry-token-keys';
import { startRegistry } from '../../infra/registry-server';
import type { ProcessHandle } from '../../infra/supervisor';
import { startTestKiln, waitForBuild, type TestKiln } from '../support/kiln';
import { freePort } from '../support/oci';
import { waitFor } from '../support/processes';

const skopeo = (args: string[]) => run('skopeo', args, { timeoutMs: 120_000 });

describe('registry access: Kiln as the token issuer of its registry', () => {
  let kiln: TestKiln;
  let registry: string;
  let registryHandle: ProcessHandle;
  let dir: string;
  const tokens: Record<string, string> = {};

  async function namespaceWithToken(name: string): Promise<string> {
    expect((await kiln.api('/api/v1/namespaces', { json: { name } })).status).toBe(201);
    const res = await kiln.api(`/api/v1/namespaces/${name}/tokens`, { json: { name: 'ci' } });
    expect(res.status).toBe(201);
    return ((await res.json()) as { token: string }).token;
  }

  async function build(token: string, repository: string, dockerfile: string, tags = ['v1']): Promise<any> {
    const res = await fetch(`${kiln.url}/api/v1/builds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ repository, dockerfile, platforms: ['linux/amd64'], tags }),
    });
    expect(res.status, await res.clone().text()).toBe(202);
    return waitForBuild(kiln, ((await res.json()) as { buildId: string }).buildId);
  }

  const inspect = (ref: string, creds?: string) =>
    skopeo(['inspect', '--raw', '--tls-verify=false', ...(creds ? ['--creds', creds] : ['--no-creds']), `docker://${registry}/${ref}`]);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-registry-auth-'));
    const keys = await loadOrCreateRegistryTokenKeys(path.join(dir, 'secrets'));
    const port = await freePort();
    registry = `127.0.0.1:${port}`;
    kiln = await startTestKiln({ registry, registryTokenSigner: keys });
    ({ handle: registryHandle } = await startRegistry({
      dataDir: dir,
      port,
      tokenAuth: { realm: `${kiln.url}/registry/token`, service: REGISTRY_TOKEN_SERVICE, issuer: REGISTRY_TOKEN_ISSUER, rootCertBundle: keys.certFile },
      notifications: { url: `${kiln.url}/webhooks/registry`, token: registryNotificationToken(kiln.secretKey) },
      log: () => {},
    }));
    // Kiln's public base image, copied in with the admin token.
    expect((await kiln.api('/api/v1/namespaces', { json: { name: 'base' } })).status).toBe(201);
    expect((await kiln.api('/api/v1/repositories', { json: { namespace: 'base', name: 'busybox', visibility: 'public' } })).status).toBe(201);
    const copy = await skopeo([
      'copy', '--all', '--src-tls-verify=false', '--dest-tls-verify=false', '--dest-creds', `admin:${kiln.token}`,
      `docker://${inject('stack').registry}/base/busybox:latest`, `docker://${registry}/base/busybox:latest`,
    ]);
    expect(copy.code, copy.stderr).toBe(0);
    tokens.alpha = await namespaceWithToken('alpha');
    tokens.beta = await namespaceWithToken('beta');
    expect((await kiln.api('/api/v1/repositories', { json: { namespace: 'alpha', name: 'private', visibility: 'private' } })).status).toBe(201);
    expect((await kiln.api('/api/v1/repositories', { json: { namespace: 'alpha', name: 'shared', visibility: 'public' } })).status).toBe(201);
  });
  afterAll(async () => {
    await kiln?.close();
    await registryHandle?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let privateDigest: string;

  it('a namespace builds into its own private repository with its build credential', async () => {
    const b = await build(tokens.alpha!, 'alpha/private', `FROM ${registry}/base/busybox\nRUN echo alpha-secret > /secret.txt`);
    expect(b.status, JSON.stringify(b.error)).toBe('succeeded');
    privateDigest = b.manifestDigest;
    const pub = await build(tokens.alpha!, 'alpha/shared', `FROM ${registry}/base/busybox\nRUN echo shared > /shared.txt`);
    expect(pub.status, JSON.stringify(pub.error)).toBe('succeeded');
  });

  it('a local context goes through the token-auth registry: uploaded with Kiln\'s login, built by the worker, as private as its repository', async () => {
    const ctxDir = path.join(dir, 'local-context');
    await mkdir(ctxDir);
    await writeFile(path.join(ctxDir, 'Dockerfile'), `FROM ${registry}/base/busybox\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n`);
    await writeFile(path.join(ctxDir, 'hello.txt'), 'from a local dir\n');
    const chunks: Buffer[] = [];
    for await (const c of tar.c({ cwd: ctxDir, portable: true }, ['Dockerfile', 'hello.txt'])) chunks.push(Buffer.from(c as Buffer));
    const body = Buffer.concat(chunks);
    const upload = (token: string) =>
      fetch(`${kiln.url}/api/v1/contexts?repository=alpha/private`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-tar' },
        body,
      });
    expect((await upload(tokens.beta!)).status, 'another namespace may not upload into alpha').toBe(403);
    const up = await upload(tokens.alpha!);
    expect(up.status, await up.clone().text()).toBe(201);
    const { digest } = (await up.json()) as { digest: string };
    // The blob sits in alpha/private: anonymous and beta cannot read it, alpha can.
    const blob = async (token?: string) => {
      const scope = `repository:alpha/private:pull`;
      const t = await fetch(`${kiln.url}/registry/token?service=${REGISTRY_TOKEN_SERVICE}&scope=${encodeURIComponent(scope)}`, {
        headers: token ? { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } : {},
      });
      const jwt = ((await t.json()) as { token: string }).token;
      const res = await fetch(`http://${registry}/v2/alpha/private/blobs/${digest}`, { headers: { authorization: `Bearer ${jwt}` } });
      await res.arrayBuffer();
      return res.status;
    };
    expect(await blob()).toBe(401);
    expect(await blob(tokens.beta!)).toBe(401);
    expect(await blob(tokens.alpha!)).toBe(200);

    const res = await fetch(`${kiln.url}/api/v1/builds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.alpha}`, 'content-type': 'application/json' },
      body: JSON.stringify({ repository: 'alpha/private', context: { digest }, platforms: ['linux/amd64'], tags: ['from-dir'] }),
    });
    expect(res.status, await res.clone().text()).toBe(202);
    const b = await waitForBuild(kiln, ((await res.json()) as { buildId: string }).buildId);
    expect(b.status, JSON.stringify(b.error)).toBe('succeeded');
    expect(b.context.digest).toBe(digest);
    const log = await (await kiln.api(`/api/v1/builds/${b.id}/logs`)).text();
    expect(log).toContain('from a local dir');
  });

  it('skopeo: the owner pulls its private image, another namespace and anonymous are refused', async () => {
    const own = await inspect('alpha/private:v1', `any:${tokens.alpha}`);
    expect(own.code, own.stderr).toBe(0);
    expect(JSON.parse(own.stdout).mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const other = await inspect('alpha/private:v1', `any:${tokens.beta}`);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/unauthorized|denied|authentication required/i);
    const anonymous = await inspect('alpha/private:v1');
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/unauthorized|denied|authentication required/i);
    const wrong = await inspect('alpha/private:v1', 'any:not-a-kiln-token');
    expect(wrong.code).not.toBe(0);
  });

  it('skopeo login (the docker login flow: the realm without a scope) takes a Kiln token, refuses anything else', async () => {
    const authfile = path.join(dir, 'auth.json');
    const login = (password: string) =>
      run('skopeo', ['login', '--tls-verify=false', '--authfile', authfile, '--username', 'anyone', '--password-stdin', registry], { timeoutMs: 60_000, input: `${password}\n` });
    const ok = await login(tokens.alpha!);
    expect(ok.code, ok.stderr).toBe(0);
    // The stored login then works for the namespace's own private image.
    const pulled = await skopeo(['inspect', '--raw', '--tls-verify=false', '--authfile', authfile, `docker://${registry}/alpha/private:v1`]);
    expect(pulled.code, pulled.stderr).toBe(0);
    const bad = await login('not-a-kiln-token');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unauthorized|invalid|401/i);
  });

  it('skopeo: public repositories (and Kiln\'s base image) are readable anonymously and by any namespace', async () => {
    for (const ref of ['alpha/shared:v1', 'base/busybox:latest']) {
      const anon = await inspect(ref);
      expect(anon.code, `${ref}: ${anon.stderr}`).toBe(0);
    }
    expect((await inspect('alpha/shared:v1', `any:${tokens.beta}`)).code).toBe(0);
    // The build cache of a public repository is not public: it holds every intermediate layer.
    expect((await inspect('alpha/shared/buildcache:linux-amd64')).code).not.toBe(0);
  });

  it('another namespace cannot push into, delete from, or list the registry', async () => {
    const push = await skopeo([
      'copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--src-creds', `any:${tokens.beta}`, '--dest-creds', `any:${tokens.beta}`,
      `docker://${registry}/alpha/shared:v1`, `docker://${registry}/alpha/shared:overwritten`,
    ]);
    expect(push.code).not.toBe(0);
    const del = await skopeo(['delete', '--tls-verify=false', '--creds', `any:${tokens.alpha}`, `docker://${registry}/alpha/private:v1`]);
    expect(del.code, 'a namespace token may not delete').not.toBe(0);
    // The catalog is the admin's: ask the realm directly, as a client would.
    const realm = async (token: string | null, scope: string) => {
      const res = await fetch(`${kiln.url}/registry/token?service=${REGISTRY_TOKEN_SERVICE}&scope=${encodeURIComponent(scope)}`, {
        headers: token ? { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } : {},
      });
      expect(res.status).toBe(200);
      const { token: jwt } = (await res.json()) as { token: string };
      return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).access[0].actions as string[];
    };
    expect(await realm(tokens.alpha!, 'registry:catalog:*')).toEqual([]);
    expect(await realm(kiln.token, 'registry:catalog:*')).toEqual(['*']);
    const catalog = async (actions: string[]) => {
      const t = await fetch(`${kiln.url}/registry/token?service=${REGISTRY_TOKEN_SERVICE}&scope=registry:catalog:*`, {
        headers: { authorization: `Basic ${Buffer.from(`x:${actions.length ? kiln.token : tokens.alpha}`).toString('base64')}` },
      });
      return fetch(`http://${registry}/v2/_catalog`, { headers: { authorization: `Bearer ${((await t.json()) as { token: string }).token}` } });
    };
    expect((await catalog([])).status).toBe(401);
    const adminCatalog = await catalog(['*']);
    expect(adminCatalog.status).toBe(200);
    expect(((await adminCatalog.json()) as { repositories: string[] }).repositories).toContain('alpha/private');
    // Unknown credentials are refused outright.
    const bad = await fetch(`${kiln.url}/registry/token?service=${REGISTRY_TOKEN_SERVICE}`, {
      headers: { authorization: `Basic ${Buffer.from('x:nope').toString('base64')}` },
    });
    expect(bad.status).toBe(401);
  });

  it.each([
    ['FROM', (reg: string) => `FROM ${reg}/alpha/private:v1\nRUN cat /secret.txt`],
    ['COPY --from', (reg: string) => `FROM ${reg}/base/busybox\nCOPY --from=${reg}/alpha/private:v1 /secret.txt /stolen.txt`],
    ['FROM by digest', (_reg: string) => ''],
  ])('%s another namespace\'s private image fails fast as a user fault naming the image', async (kind, dockerfile) => {
    const ref = kind === 'FROM by digest' ? `${registry}/alpha/private@${privateDigest}` : `${registry}/alpha/private:v1`;
    const text = kind === 'FROM by digest' ? `FROM ${ref}\nRUN cat /secret.txt` : dockerfile(registry);
    const started = Date.now();
    const b = await build(tokens.beta!, 'beta/thief', text);
    expect(b.status).toBe('failed');
    expect(b.error.code, b.error.message).toBe('image_access_denied');
    expect(b.error.message).toContain(`${registry}/alpha/private`);
    expect(b.error.message).toMatch(/access .*denied/i);
    const log = await (await kiln.api(`/api/v1/builds/${b.id}/logs`)).text();
    expect(log).not.toContain('alpha-secret');
    expect(log).not.toMatch(/transient failure, will retry/);
    expect(Date.now() - started).toBeLessThan(60_000); // not retried for minutes
  });

  it('a namespace pulls public images of another namespace in its builds', async () => {
    const b = await build(tokens.beta!, 'beta/consumer', `FROM ${registry}/alpha/shared:v1\nRUN cat /shared.txt`);
    expect(b.status, JSON.stringify(b.error)).toBe('succeeded');
  });

  it('a push with a namespace token is a user push even with Kiln\'s User-Agent; Kiln\'s own pushes are not', async () => {
    // Re-tag alpha/shared:v1 by hand with alpha's token, sending Kiln's own User-Agent: a header
    // anyone can send decides nothing, the registry reports the token's subject.
    const t = await fetch(`${kiln.url}/registry/token?service=${REGISTRY_TOKEN_SERVICE}&scope=repository:alpha/shared:pull,push`, {
      headers: { authorization: `Basic ${Buffer.from(`x:${tokens.alpha}`).toString('base64')}` },
    });
    const auth = { authorization: `Bearer ${((await t.json()) as { token: string }).token}`, 'user-agent': 'kiln/0.1.0' };
    const accept = 'application/vnd.oci.image.index.v1+json';
    const got = await fetch(`http://${registry}/v2/alpha/shared/manifests/v1`, { headers: { ...auth, accept } });
    expect(got.status).toBe(200);
    const put = await fetch(`http://${registry}/v2/alpha/shared/manifests/by-hand`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': accept },
      body: new Uint8Array(await got.arrayBuffer()),
    });
    expect(put.status).toBe(201);
    const repo = (await (await kiln.api('/api/v1/repositories?namespace=alpha')).json()).items.find((r: any) => r.name === 'shared');
    const tags = await waitFor('the user push recorded', async () => {
      const items = (await (await kiln.api(`/api/v1/repositories/${repo.id}/tags`)).json()).items as any[];
      return items.some((t) => t.tag === 'by-hand') ? items : null;
    });
    expect(tags.find((t: any) => t.tag === 'by-hand').creationMethod).toBe('user push');
    expect(tags.find((t: any) => t.tag === 'v1').creationMethod).toBe('manual build');
  });
});
