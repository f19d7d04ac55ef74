// /registry/token, the realm of Kiln's registry: happy path, errors, and who gets what.
import { mkdtempSync, readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { mintBuildCredential, REGISTRY_TOKEN_SERVICE, registrySystemPassword } from '../../../domain/registry-access';
import { loadOrCreateRegistryTokenKeys, type RegistryTokenKeys } from '../../../infra/registry-token-keys';
import { createHarness, DB_TIMEOUT, request, SECRET_KEY, type Harness } from './harness';

const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`anyone:${password}`).toString('base64')}` });

describe('GET|POST /registry/token', () => {
  let h: Harness;
  let keys: RegistryTokenKeys;
  let alphaToken: string;

  const ask = (scopes: string[], headers: Record<string, string> = {}, service = REGISTRY_TOKEN_SERVICE) => {
    const q = new URLSearchParams([['service', service], ...scopes.map((s) => ['scope', s] as [string, string])]);
    return request(h.app, `/registry/token?${q}`, { token: null, headers });
  };
  const access = async (res: { body: any }) => {
    const { payload } = await jwtVerify(res.body.token, createPublicKey(readFileSync(keys.certFile, 'utf8')), {
      issuer: 'kiln',
      audience: REGISTRY_TOKEN_SERVICE,
    });
    return payload as { sub: string; access: Array<{ type: string; name: string; actions: string[] }> };
  };

  beforeAll(async () => {
    keys = await loadOrCreateRegistryTokenKeys(mkdtempSync(path.join(tmpdir(), 'kiln-realm-')));
    h = await createHarness({ registryTokenSigner: keys });
    expect((await h.call('/api/v1/namespaces', { json: { name: 'alpha' } })).status).toBe(201);
    alphaToken = (await h.call('/api/v1/namespaces/alpha/tokens', { json: { name: 'ci' } })).body.token;
    expect((await h.call('/api/v1/repositories', { json: { namespace: 'alpha', name: 'shared', visibility: 'public' } })).status).toBe(201);
    expect((await h.call('/api/v1/repositories', { json: { namespace: 'alpha', name: 'private', visibility: 'private' } })).status).toBe(201);
  }, DB_TIMEOUT);
  afterAll(() => h?.close());

  it('signs an ES256 token the certificate verifies, with the libtrust kid and the granted access', async () => {
    const res = await ask(['repository:alpha/private:pull,push'], basic(alphaToken));
    expect(res.status).toBe(200);
    expect(res.body.access_token).toBe(res.body.token);
    expect(res.body.expires_in).toBe(300);
    expect(decodeProtectedHeader(res.body.token)).toMatchObject({ alg: 'ES256', kid: keys.kid });
    const claims = await access(res);
    expect(claims.sub).toBe('namespace:alpha');
    expect(claims.access).toEqual([{ type: 'repository', name: 'alpha/private', actions: ['pull', 'push'] }]);
  });

  it('answers the OAuth2 password grant containerd sends', async () => {
    const body = new URLSearchParams({ grant_type: 'password', service: REGISTRY_TOKEN_SERVICE, scope: 'repository:alpha/private:pull', username: 'x', password: alphaToken });
    const res = await request(h.app, '/registry/token', { token: null, body: body.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(200);
    expect((await access(res)).access[0]!.actions).toEqual(['pull']);
  });

  it('anonymous callers get pulls of public repositories only', async () => {
    const claims = await access(await ask(['repository:alpha/shared:pull,push', 'repository:alpha/private:pull']));
    expect(claims.sub).toBe('');
    expect(claims.access.map((a) => a.actions)).toEqual([['pull'], []]);
  });

  it("Kiln's own login is the admin with subject kiln; a build's credential pushes only its repository", async () => {
    expect((await access(await ask(['repository:alpha/private:delete'], basic(registrySystemPassword(SECRET_KEY))))).sub).toBe('kiln');
    const build = mintBuildCredential(SECRET_KEY, { buildId: 'b1', namespace: 'alpha', repository: 'alpha/private', expiresAt: Math.floor(Date.now() / 1000) + 60 });
    const claims = await access(await ask(['repository:alpha/private:pull,push', 'repository:alpha/shared:push', 'repository:alpha/private/buildcache:push'], basic(build)));
    expect(claims.sub).toBe('build:b1');
    expect(claims.access.map((a) => a.actions)).toEqual([['pull', 'push'], [], ['push']]);
  });

  it('refuses unknown credentials (401), another service or a malformed scope (400)', async () => {
    const bad = await ask(['repository:alpha/private:pull'], basic('not-a-token'));
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toMatch(/^Basic/);
    const expired = mintBuildCredential(SECRET_KEY, { buildId: 'b1', namespace: 'alpha', repository: 'alpha/private', expiresAt: 1 });
    expect((await ask([], basic(expired))).status).toBe(401);
    expect((await ask([], {}, 'other-registry')).status).toBe(400);
    expect((await ask(['repository:alpha/private'])).status).toBe(400);
  });

  it('is 404 where Kiln is not its registry\'s token issuer', async () => {
    const plain = await createHarness();
    try {
      expect((await request(plain.app, `/registry/token?service=${REGISTRY_TOKEN_SERVICE}`, { token: null })).status).toBe(404);
    } finally {
      await plain.close();
    }
  }, DB_TIMEOUT);
});
