import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import type { AppEnv, Authenticate, Principal } from './types';
import { ApiError } from './errors';

export type { AppEnv, Authenticate, Principal } from './types';

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Hashing both sides first makes the comparison constant-time regardless of token length. */
export function tokensEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

export function adminTokenAuthenticator(apiToken: string): Authenticate {
  if (!apiToken) throw new Error('apiToken must not be empty');
  return (token) => (tokensEqual(token, apiToken) ? { kind: 'admin' } : null);
}

const challenge = (error?: string) =>
  error ? `Bearer realm="kiln", error="${error}"` : 'Bearer realm="kiln"';

export function bearerAuth(authenticate: Authenticate): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (!header) {
      throw new ApiError('unauthorized', 'Missing bearer token', null, { 'WWW-Authenticate': challenge() });
    }
    const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
    const principal = match?.[1] ? await authenticate(match[1]) : null;
    if (!principal) {
      throw new ApiError('unauthorized', 'Invalid bearer token', null, {
        'WWW-Authenticate': challenge('invalid_token'),
      });
    }
    c.set('principal', principal);
    await next();
  };
}

export function canAccessNamespace(principal: Principal, namespace: string): boolean {
  return principal.kind === 'admin' || principal.namespace === namespace;
}

export function requireNamespace(c: Context<AppEnv>, namespace: string): void {
  if (!canAccessNamespace(c.get('principal'), namespace)) {
    throw new ApiError('forbidden', `This token may not act on namespace "${namespace}"`);
  }
}

export function requireAdmin(c: Context<AppEnv>): void {
  if (c.get('principal').kind !== 'admin') throw new ApiError('forbidden', 'This operation needs the admin token');
}

/** The namespace a list must be narrowed to, or undefined when the caller may see all. */
export function namespaceScope(c: Context<AppEnv>): string | undefined {
  const p = c.get('principal');
  return p.kind === 'namespace' ? p.namespace : undefined;
}

/** The admin token first, then namespace tokens stored (hashed) in the database. */
export function adminOrNamespaceTokenAuthenticator(apiToken: string, findNamespace: (token: string) => Promise<string | undefined>): Authenticate {
  const admin = adminTokenAuthenticator(apiToken);
  return async (token) => {
    const principal = await admin(token);
    if (principal) return principal;
    const namespace = await findNamespace(token);
    return namespace ? { kind: 'namespace', namespace } : null;
  };
}
