// GET|POST /registry/token: the token realm of the registry Kiln starts (Distribution token auth).
// Any standard client (docker login, skopeo, crane, buildctl) logs in with a Kiln token as the
// password; the answer is a short-lived JWT whose `access` holds what domain/registry-access.ts
// grants that caller for the scopes asked.
import { randomUUID } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { SignJWT } from 'jose';
import {
  grantedActions,
  parseScope,
  REGISTRY_TOKEN_ISSUER,
  REGISTRY_TOKEN_SERVICE,
  REGISTRY_TOKEN_TTL_SECONDS,
  registrySubject,
  registrySystemPassword,
  REGISTRY_SYSTEM_SUBJECT,
  verifyBuildCredential,
  type RegistryPrincipal,
} from '../../domain/registry-access';
import { getRepositoryByPath } from '../../db/queries/repositories';
import { tokensEqual } from '../auth';
import type { AppDeps, Authenticate, RegistryTokenSigner } from '../types';
import { ApiError, pickErrors } from '../errors';
import { createRouter, jsonContent } from '../util';

export type { RegistryTokenSigner } from '../types';

const TokenQuery = z.object({
  service: z.string().max(256).optional().openapi({ description: `Must be "${REGISTRY_TOKEN_SERVICE}" when given` }),
  // One scope arrives as a string, several as an array (the query validator's shape).
  scope: z
    .union([z.string().max(1024), z.array(z.string().max(1024)).max(32)])
    .optional()
    .openapi({ description: 'Repeatable: `repository:<ns>/<name>:pull,push` or `registry:catalog:*`' }),
  account: z.string().max(256).optional(),
});

const TokenForm = z.object({
  grant_type: z.string().max(64).optional(),
  service: z.string().max(256).optional(),
  scope: z.string().max(4096).optional().openapi({ description: 'Space-separated scopes' }),
  username: z.string().max(256).optional(),
  password: z.string().max(4096).optional(),
  client_id: z.string().max(256).optional(),
});

const TokenResponse = z
  .object({
    token: z.string(),
    access_token: z.string(),
    expires_in: z.number().int(),
    issued_at: z.string(),
  })
  .openapi('RegistryToken');

const description =
  'Distribution token auth. Send a Kiln token (admin, namespace, or a build credential) as the Basic password (any user ' +
  'name), or nothing for anonymous access. Rights: admin everything; a namespace token pull and push in its namespace, ' +
  'pull of public repositories; anonymous pull of public repositories; delete and the catalog admin only. Requested ' +
  'actions that are not granted are left out of the token (the registry then refuses the request).';

const getRoute = createRoute({
  method: 'get',
  path: '/token',
  tags: ['registry'],
  summary: 'Registry token realm',
  description,
  // Basic credentials, or none for anonymous pulls of public repositories.
  security: [{ registryBasic: [] }, {}] as Array<Record<string, string[]>>,
  request: { query: TokenQuery },
  responses: {
    200: { description: 'A registry bearer token', content: jsonContent(TokenResponse) },
    ...pickErrors(400, 401, 404),
  },
});

const postRoute = createRoute({
  method: 'post',
  path: '/token',
  tags: ['registry'],
  summary: 'Registry token realm (OAuth2 password grant, as containerd sends it)',
  description,
  security: [{ registryBasic: [] }, {}] as Array<Record<string, string[]>>,
  request: { body: { content: { 'application/x-www-form-urlencoded': { schema: TokenForm } }, required: true } },
  responses: {
    200: { description: 'A registry bearer token', content: jsonContent(TokenResponse) },
    ...pickErrors(400, 401, 404),
  },
});

function basicPassword(header: string | undefined): string | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : decoded.slice(colon + 1);
}

export function registryTokenRoutes(deps: AppDeps, authenticateToken: Authenticate) {
  const { db, config } = deps;
  const signer = deps.registryTokenSigner;
  const systemPassword = registrySystemPassword(config.secretKey);
  const router = createRouter();
  router.openAPIRegistry.registerComponent('securitySchemes', 'registryBasic', {
    type: 'http',
    scheme: 'basic',
    description: 'Any user name; a Kiln token as the password',
  });

  async function principalFor(password: string | null): Promise<RegistryPrincipal> {
    if (password === null) return { kind: 'anonymous' };
    if (tokensEqual(password, systemPassword)) return { kind: 'admin', subject: REGISTRY_SYSTEM_SUBJECT };
    const build = verifyBuildCredential(config.secretKey, password);
    if (build) return { kind: 'build', ...build };
    const p = await authenticateToken(password);
    if (p?.kind === 'admin') return { kind: 'admin', subject: 'admin' };
    if (p?.kind === 'namespace') return { kind: 'namespace', namespace: p.namespace, subject: `namespace:${p.namespace}` };
    throw new ApiError('unauthorized', 'Invalid registry credentials: use a Kiln token as the password', null, {
      'WWW-Authenticate': 'Basic realm="kiln-registry"',
    });
  }

  async function issue(service: string | undefined, scopes: string[], password: string | null) {
    if (!signer) throw new ApiError('not_found', 'This Kiln does not issue registry tokens (its registry is configured from outside)');
    if (service !== undefined && service !== REGISTRY_TOKEN_SERVICE) {
      throw new ApiError('bad_request', `Unknown service "${service}"; this realm serves "${REGISTRY_TOKEN_SERVICE}"`);
    }
    const who = await principalFor(password);
    const visibility = new Map<string, boolean>();
    const isPublic = async (namespace: string, name: string) => {
      const key = `${namespace}/${name}`;
      if (!visibility.has(key)) visibility.set(key, (await getRepositoryByPath(db, namespace, name))?.visibility === 'public');
      return visibility.get(key)!;
    };
    const access: Array<{ type: string; name: string; actions: string[] }> = [];
    for (const raw of scopes) {
      const req = parseScope(raw);
      if (!req) throw new ApiError('bad_request', `Malformed scope "${raw}" (expected type:name:actions)`);
      access.push({ type: req.type, name: req.name, actions: await grantedActions(who, req, isPublic) });
    }
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'ES256', kid: signer.kid, typ: 'JWT' })
      .setIssuer(REGISTRY_TOKEN_ISSUER)
      .setSubject(registrySubject(who))
      .setAudience(REGISTRY_TOKEN_SERVICE)
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + REGISTRY_TOKEN_TTL_SECONDS)
      .setJti(randomUUID())
      .sign(signer.privateKey);
    return { token, access_token: token, expires_in: REGISTRY_TOKEN_TTL_SECONDS, issued_at: new Date(now * 1000).toISOString() };
  }

  router.openapi(getRoute, async (c) => {
    const q = c.req.valid('query');
    const scopes = q.scope === undefined ? [] : Array.isArray(q.scope) ? q.scope : [q.scope];
    return c.json(await issue(q.service, scopes, basicPassword(c.req.header('authorization'))), 200);
  });
  router.openapi(postRoute, async (c) => {
    const f = c.req.valid('form');
    const password = f.password ?? basicPassword(c.req.header('authorization'));
    return c.json(await issue(f.service, (f.scope ?? '').split(' ').filter(Boolean), password), 200);
  });
  return router;
}
