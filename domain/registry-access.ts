/**
 * Who may do what in the registry Kiln starts (SPEC §2 "Isolation"). Distribution asks Kiln's token
 * realm for a token per scope (`repository:ns/name:pull,push`); these pure rules decide which of the
 * requested actions each kind of caller gets, and the credentials Kiln itself hands out.
 *
 *   caller                  its own namespace            other namespaces      delete, catalog
 *   admin token, Kiln       everything                   everything            yes
 *   namespace token         pull, push                   pull public           no
 *   a build's credential    pull; push its repository    pull public           no
 *                           and its build cache only
 *   anonymous               pull public                  pull public           no
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** `sub` of the tokens Kiln's own registry client gets: its pushes are never a "user push". */
export const REGISTRY_SYSTEM_SUBJECT = 'kiln';
/** User name in the Basic credentials Kiln's services and builds present (any name is accepted). */
export const REGISTRY_SYSTEM_USER = 'kiln';
export const REGISTRY_BUILD_USER = 'kiln-build';
/** Prefix of a build credential's subject, `build:<buildId>`. */
export const BUILD_SUBJECT_PREFIX = 'build:';
export const REGISTRY_TOKEN_SERVICE = 'kiln-registry';
export const REGISTRY_TOKEN_ISSUER = 'kiln';
/** Registry bearer tokens live this long; clients fetch a new one when it ends. */
export const REGISTRY_TOKEN_TTL_SECONDS = 300;
/** Repository path suffix of a repository's registry build cache (activities/build.ts). */
export const BUILD_CACHE_SUFFIX = '/buildcache';

export type RegistryPrincipal =
  | { kind: 'admin'; subject: string }
  | { kind: 'namespace'; namespace: string; subject: string }
  | { kind: 'build'; buildId: string; namespace: string; repository: string }
  | { kind: 'anonymous' };

export function registrySubject(p: RegistryPrincipal): string {
  switch (p.kind) {
    case 'admin':
    case 'namespace':
      return p.subject;
    case 'build':
      return `${BUILD_SUBJECT_PREFIX}${p.buildId}`;
    case 'anonymous':
      return '';
  }
}

/** True for a push made by Kiln itself or one of its builds (decided by the token's subject). */
export function isKilnSubject(subject: string | undefined): boolean {
  return !!subject && (subject === REGISTRY_SYSTEM_SUBJECT || subject.startsWith(BUILD_SUBJECT_PREFIX));
}

export interface ScopeRequest {
  type: string;
  name: string;
  actions: string[];
}

/** `repository:ns/name:pull,push` (the name itself may hold no colon) → its parts; null if malformed. */
export function parseScope(scope: string): ScopeRequest | null {
  const m = /^([a-z0-9]+(?:\([a-z0-9]+\))?):([^:\s]+):([a-z*,]+)$/i.exec(scope.trim());
  if (!m) return null;
  const actions = [...new Set(m[3]!.split(',').filter(Boolean))];
  return { type: m[1]!.replace(/\(.*\)$/, ''), name: m[2]!, actions };
}

/** `ns/name` → its namespace and name; `ns/name/buildcache` → the same plus `cache: true`. */
export function splitRepositoryPath(path: string): { namespace: string; name: string; cache: boolean } | null {
  const parts = path.split('/');
  if (parts.length === 2) return { namespace: parts[0]!, name: parts[1]!, cache: false };
  if (parts.length === 3 && `/${parts[2]}` === BUILD_CACHE_SUFFIX) return { namespace: parts[0]!, name: parts[1]!, cache: true };
  return null;
}

/**
 * The actions of `req` that `who` is granted. `isPublic` says whether `ns/name` is a public
 * repository (a build cache never is: it holds every intermediate layer).
 */
export async function grantedActions(
  who: RegistryPrincipal,
  req: ScopeRequest,
  isPublic: (namespace: string, name: string) => Promise<boolean>,
): Promise<string[]> {
  if (who.kind === 'admin') return req.actions;
  if (req.type !== 'repository') return []; // the catalog and other registry-wide scopes: admin only
  const repo = splitRepositoryPath(req.name);
  if (!repo) return [];
  const ownNamespace = (who.kind === 'namespace' || who.kind === 'build') && who.namespace === repo.namespace;
  const granted = new Set<string>();
  for (const action of req.actions) {
    if (action === 'pull') {
      if (ownNamespace || (!repo.cache && (await isPublic(repo.namespace, repo.name)))) granted.add('pull');
    } else if (action === 'push') {
      if (who.kind === 'namespace' && ownNamespace) granted.add('push');
      if (who.kind === 'build' && (req.name === who.repository || req.name === `${who.repository}${BUILD_CACHE_SUFFIX}`)) granted.add('push');
    }
    // `delete` and `*` only for the admin.
  }
  return [...granted];
}

// ---------------------------------------------------------------- credentials Kiln hands out

const hmac = (secretKey: string, label: string, data = '') => createHmac('sha256', secretKey).update(`${label}\n${data}`).digest('base64url');

/** The password Kiln's own services present to its registry's realm. Derived, never stored. */
export function registrySystemPassword(secretKey: string): string {
  return hmac(secretKey, 'kiln/registry-system/v1');
}

export interface BuildCredentialClaims {
  buildId: string;
  namespace: string;
  /** `ns/name`, the one repository (and its build cache) the build may push. */
  repository: string;
  /** Unix seconds. */
  expiresAt: number;
}

const BUILD_CREDENTIAL_PREFIX = 'kbc1.';

/**
 * A build's own short-lived registry password: its claims and an HMAC under KILN_SECRET_KEY, so
 * any API instance can check it without a database row. Made inside the build activity, handed
 * to buildctl in a private DOCKER_CONFIG, never logged or put in a Temporal payload.
 */
export function mintBuildCredential(secretKey: string, claims: BuildCredentialClaims): string {
  const body = Buffer.from(JSON.stringify([claims.buildId, claims.namespace, claims.repository, claims.expiresAt])).toString('base64url');
  return `${BUILD_CREDENTIAL_PREFIX}${body}.${hmac(secretKey, 'kiln/build-credential/v1', body)}`;
}

/** The claims of a valid, unexpired build credential, else null. */
export function verifyBuildCredential(secretKey: string, token: string, nowSeconds = Math.floor(Date.now() / 1000)): BuildCredentialClaims | null {
  if (!token.startsWith(BUILD_CREDENTIAL_PREFIX)) return null;
  const [body, mac] = token.slice(BUILD_CREDENTIAL_PREFIX.length).split('.');
  if (!body || !mac) return null;
  const expected = Buffer.from(hmac(secretKey, 'kiln/build-credential/v1', body));
  const given = Buffer.from(mac);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  try {
    const [buildId, namespace, repository, expiresAt] = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as [string, string, string, number];
    if (typeof expiresAt !== 'number' || expiresAt < nowSeconds) return null;
    return { buildId, namespace, repository, expiresAt };
  } catch {
    return null;
  }
}
