import { randomBytes } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { getNamespaceByName, insertNamespace, listNamespaces, updateNamespace } from '../../db/queries/namespaces';
import { deleteApiToken, insertApiToken, listApiTokens } from '../../db/queries/tokens';
import type { AppDeps } from '../types';
import { namespaceScope, requireAdmin, requireNamespace } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { NamespaceCreate, NamespaceName, NamespacePage, NamespaceUpdate, NamespaceView, TokenCreate, TokenCreated, TokenView } from '../schemas';
import { createRouter, isUniqueViolation, isUuid, jsonContent } from '../util';
import { namespaceView } from '../views';
import type { Namespace } from '../../db/schema';

const create = createRoute({
  method: 'post',
  path: '/',
  tags: ['namespaces'],
  summary: 'Create a namespace (admin only)',
  request: { body: { required: true, content: jsonContent(NamespaceCreate) } },
  responses: {
    201: { description: 'Created', content: jsonContent(NamespaceView) },
    ...pickErrors(400, 401, 403, 409, 413, 415),
  },
});

const list = createRoute({
  method: 'get',
  path: '/',
  tags: ['namespaces'],
  summary: 'List namespaces',
  responses: {
    200: { description: 'Namespaces by name', content: jsonContent(NamespacePage) },
    ...pickErrors(401),
  },
});

const NameParams = z.object({ name: NamespaceName.openapi({ param: { name: 'name', in: 'path' }, example: 'team-a' }) });

const update = createRoute({
  method: 'patch',
  path: '/{name}',
  tags: ['namespaces'],
  summary: "Change a namespace's defaults and quotas or bind it to a dedicated build pool (admin only)",
  request: { params: NameParams, body: { required: true, content: jsonContent(NamespaceUpdate) } },
  responses: {
    200: { description: 'Updated', content: jsonContent(NamespaceView) },
    ...pickErrors(400, 401, 403, 404, 413, 415),
  },
});

const TokenParams = z.object({ name: NamespaceName.openapi({ param: { name: 'name', in: 'path' }, example: 'team-a' }) });
const createToken = createRoute({
  method: 'post',
  path: '/{name}/tokens',
  tags: ['namespaces'],
  summary: 'Create an API token limited to one namespace (admin only)',
  request: { params: TokenParams, body: { required: true, content: jsonContent(TokenCreate) } },
  responses: {
    201: { description: 'Created', content: jsonContent(TokenCreated) },
    ...pickErrors(400, 401, 403, 404),
  },
});

const listTokens = createRoute({
  method: 'get',
  path: '/{name}/tokens',
  tags: ['namespaces'],
  summary: "List a namespace's API tokens (never the tokens themselves), with expiry and last use",
  request: { params: TokenParams },
  responses: {
    200: { description: 'Tokens', content: jsonContent(z.object({ items: z.array(TokenView), nextCursor: z.null() })) },
    ...pickErrors(400, 401, 403, 404),
  },
});

const revokeToken = createRoute({
  method: 'delete',
  path: '/{name}/tokens/{id}',
  tags: ['namespaces'],
  summary: 'Revoke a namespace API token (admin only)',
  request: { params: TokenParams.extend({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid' }) }) },
  responses: { 204: { description: 'Revoked' }, ...pickErrors(400, 401, 403, 404) },
});

export function namespaceRoutes({ db, config, builds }: AppDeps) {
  const view = (n: Namespace) => namespaceView(n, config.quotaDefaults);
  async function loadNamespace(name: string) {
    const ns = await getNamespaceByName(db, name);
    if (!ns) throw new ApiError('not_found', `Namespace "${name}" not found`);
    return ns;
  }

  return createRouter()
    .openapi(create, async (c) => {
      requireAdmin(c);
      const body = c.req.valid('json');
      try {
        const row = await insertNamespace(db, body);
        return c.json(view(row), 201);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ApiError('conflict', `Namespace "${body.name}" already exists`);
        throw err;
      }
    })
    .openapi(list, async (c) => {
      const scope = namespaceScope(c);
      const rows = (await listNamespaces(db)).filter((n) => !scope || n.name === scope);
      return c.json({ items: rows.map(view), nextCursor: null }, 200);
    })
    .openapi(update, async (c) => {
      requireAdmin(c);
      const ns = await loadNamespace(c.req.valid('param').name);
      const body = c.req.valid('json');
      const row = await updateNamespace(db, ns.id, body);
      const limit = view(row).maxConcurrentBuilds;
      // Builds waiting for a slot see a changed limit at once (a raised one starts them now).
      if (body.maxConcurrentBuilds !== undefined && builds.setNamespaceLimit) {
        await builds.setNamespaceLimit(row.name, limit).catch((err: unknown) => {
          c.get('log').warn({ err }, 'the build scheduler did not get the new limit; the next build of the namespace brings it');
        });
      }
      return c.json(view(row), 200);
    })
    .openapi(createToken, async (c) => {
      requireAdmin(c);
      const ns = await loadNamespace(c.req.valid('param').name);
      const body = c.req.valid('json');
      const token = `kiln_${randomBytes(24).toString('base64url')}`;
      const expiresAt = body.expiresInDays ? new Date(Date.now() + body.expiresInDays * 86_400_000) : null;
      const row = await insertApiToken(db, { namespaceId: ns.id, name: body.name, token, expiresAt });
      return c.json({ ...tokenView(row, ns.name), token }, 201);
    })
    .openapi(revokeToken, async (c) => {
      requireAdmin(c);
      const { name, id } = c.req.valid('param');
      const ns = await loadNamespace(name);
      if (!isUuid(id) || !(await deleteApiToken(db, ns.id, id))) throw new ApiError('not_found', `Token ${id} not found in "${name}"`);
      return c.body(null, 204);
    })
    .openapi(listTokens, async (c) => {
      const ns = await loadNamespace(c.req.valid('param').name);
      requireNamespace(c, ns.name);
      const rows = await listApiTokens(db, ns.id);
      return c.json(
        { items: rows.map((r) => tokenView(r, ns.name)), nextCursor: null },
        200,
      );
    });
}

type TokenRow = Awaited<ReturnType<typeof listApiTokens>>[number];

function tokenView(row: TokenRow, namespace: string): z.infer<typeof TokenView> {
  return {
    id: row.id,
    name: row.name,
    namespace,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    expired: !!row.expiresAt && row.expiresAt.getTime() <= Date.now(),
  };
}
