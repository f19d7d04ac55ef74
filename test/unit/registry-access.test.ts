import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  grantedActions,
  isKilnSubject,
  mintBuildCredential,
  parseScope,
  registrySystemPassword,
  verifyBuildCredential,
  type RegistryPrincipal,
} from '../../domain/registry-access';
import { libtrustKeyId, loadOrCreateRegistryTokenKeys } from '../../infra/registry-token-keys';

const publicRepos = new Set(['alpha/shared', 'base/busybox']);
const isPublic = async (ns: string, name: string) => publicRepos.has(`${ns}/${name}`);
const grant = (who: RegistryPrincipal, scope: string) => grantedActions(who, parseScope(scope)!, isPublic);

const admin: RegistryPrincipal = { kind: 'admin', subject: 'admin' };
const alpha: RegistryPrincipal = { kind: 'namespace', namespace: 'alpha', subject: 'namespace:alpha' };
const beta: RegistryPrincipal = { kind: 'namespace', namespace: 'beta', subject: 'namespace:beta' };
const alphaBuild: RegistryPrincipal = { kind: 'build', buildId: 'b1', namespace: 'alpha', repository: 'alpha/app' };
const anonymous: RegistryPrincipal = { kind: 'anonymous' };

describe('registry rights', () => {
  it.each([
    // who, scope, granted
    [admin, 'repository:alpha/private:pull,push,delete', ['pull', 'push', 'delete']],
    [admin, 'registry:catalog:*', ['*']],
    [alpha, 'repository:alpha/private:pull,push', ['pull', 'push']],
    [alpha, 'repository:alpha/private:delete', []],
    [alpha, 'repository:alpha/private:*', []],
    [alpha, 'registry:catalog:*', []],
    [beta, 'repository:alpha/private:pull,push', []],
    [beta, 'repository:alpha/shared:pull,push', ['pull']],
    [beta, 'repository:alpha/shared/buildcache:pull', []],
    [alphaBuild, 'repository:alpha/app:pull,push', ['pull', 'push']],
    [alphaBuild, 'repository:alpha/app/buildcache:pull,push', ['pull', 'push']],
    [alphaBuild, 'repository:alpha/other:pull,push', ['pull']],
    [alphaBuild, 'repository:beta/app:pull,push', []],
    [alphaBuild, 'repository:base/busybox:pull', ['pull']],
    [anonymous, 'repository:base/busybox:pull,push', ['pull']],
    [anonymous, 'repository:alpha/private:pull', []],
    [anonymous, 'repository:alpha/shared/buildcache:pull', []],
    [alpha, 'repository:alpha/a/b/c:pull', []],
  ] as const)('%o asking %s gets %o', async (who, scope, expected) => {
    expect(await grant(who, scope)).toEqual(expected);
  });

  it('parses scopes and refuses malformed ones', () => {
    expect(parseScope('repository:alpha/app:pull,push')).toEqual({ type: 'repository', name: 'alpha/app', actions: ['pull', 'push'] });
    expect(parseScope('repository(plugin):alpha/app:pull')).toEqual({ type: 'repository', name: 'alpha/app', actions: ['pull'] });
    expect(parseScope('repository:alpha/app')).toBeNull();
    expect(parseScope('nonsense')).toBeNull();
  });

  it("tells Kiln's own subjects from users'", () => {
    expect(isKilnSubject('kiln')).toBe(true);
    expect(isKilnSubject('build:123')).toBe(true);
    expect(isKilnSubject('namespace:alpha')).toBe(false);
    expect(isKilnSubject('admin')).toBe(false);
    expect(isKilnSubject(undefined)).toBe(false);
  });
});

describe('build credentials', () => {
  const key = 'k'.repeat(64);
  const claims = { buildId: 'b1', namespace: 'alpha', repository: 'alpha/app', expiresAt: 2_000_000_000 };

  it('round-trip under the same key, and only that key', () => {
    const c = mintBuildCredential(key, claims);
    expect(verifyBuildCredential(key, c, 1_900_000_000)).toEqual(claims);
    expect(verifyBuildCredential('other'.repeat(13), c, 1_900_000_000)).toBeNull();
  });
  it('expire', () => {
    expect(verifyBuildCredential(key, mintBuildCredential(key, claims), 2_000_000_001)).toBeNull();
  });
  it('cannot be altered to widen their scope', () => {
    const c = mintBuildCredential(key, claims);
    const [prefix, , mac] = [c.slice(0, 5), ...c.slice(5).split('.')];
    const forged = Buffer.from(JSON.stringify(['b1', 'beta', 'beta/app', 2_000_000_000])).toString('base64url');
    expect(verifyBuildCredential(key, `${prefix}${forged}.${mac}`, 1_900_000_000)).toBeNull();
    expect(verifyBuildCredential(key, 'kbc1.garbage', 1_900_000_000)).toBeNull();
    expect(verifyBuildCredential(key, registrySystemPassword(key), 1_900_000_000)).toBeNull();
  });
});

describe('registry token keys', () => {
  it('are generated once, and the kid is the libtrust id of the certificate key', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kiln-keys-'));
    const a = await loadOrCreateRegistryTokenKeys(dir);
    const b = await loadOrCreateRegistryTokenKeys(dir);
    expect(b.kid).toBe(a.kid);
    expect(a.kid).toMatch(/^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
    const spki = createPublicKey(readFileSync(a.certFile, 'utf8')).export({ type: 'spki', format: 'der' });
    expect(libtrustKeyId(spki)).toBe(a.kid);
  });
});

