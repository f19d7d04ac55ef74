import { randomBytes } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { getNamespaceByName, insertNamespace, listNamespaces, updateNamespace } from '../../db/queries/namespaces';
import { deleteApiToken, insertApiToken, listApiTokens } from '../../db/queries/tokens';
import type { AppDeps } from '../types';
import { namespaceScope, requireAdmin, requireNamespace } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { NamespaceCreate, NamespaceName, NamespacePage, NamespaceUpdate, NamespaceView } from '../schemas';
import { createRouter, isUniqueViolation, isUuid, jsonContent } from '../util';
import { namespaceView } from '../views';
import type { Namespace } from '../../db/schema';

const create = createRoute({
  method: 'post',
  path: '/namespaces',
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
  path: '/namespaces',
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
  path: '/namespaces/{name}',
  tags: ['namespaces'],
  summary: "Change a namespace's defaults and quotas or bind it to a dedicated build pool (admin only)",
  request: { params: NameParams, body: { required: true, content: jsonContent(NamespaceUpdate) } },
  responses: {
    200: { description: 'Updated', content: jsonContent(NamespaceView) },
    ...pickErrors(400, 401, 403, 404, 413, 415),
  },
});

const TokenParams = z.object({ name: NamespaceName.openapi({ param: { name: 'name', in: 'path' }, example: 'team-a' }) });
const TokenCreate = z.object({ name: z.string().min(1).max(64).openapi({ example: 'ci' }) }).strict().openapi('ApiTokenCreate');
const TokenView = z
  .object({ id: z.string(), name: z.string(), namespace: z.string(), createdAt: z.string() })
  .openapi('ApiToken');
const TokenCreated = TokenView.extend({
  token: z.string().openapi({ description: 'Shown only in this response; only its hash is stored' }),
}).openapi('ApiTokenCreated');

const createToken = createRoute({
  method: 'post',
  path: '/namespaces/{name}/tokens',
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
  path: '/namespaces/{name}/tokens',
  tags: ['namespaces'],
  summary: "List a namespace's API tokens (never the tokens themselves)",
  request: { params: TokenParams },
  responses: {
    200: { description: 'Tokens', content: jsonContent(z.object({ items: z.array(TokenView), nextCursor: z.null() })) },
    ...pickErrors(400, 401, 403, 404),
  },
});

const revokeToken = createRoute({
  method: 'delete',
  path: '/namespaces/{name}/tokens/{id}',
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
      const token = `kiln_${randomBytes(24).toString('base64url')}`;
      const row = await insertApiToken(db, { namespaceId: ns.id, name: c.req.valid('json').name, token });
      return c.json({ id: row.id, name: row.name, namespace: ns.name, createdAt: row.createdAt.toISOString(), token }, 201);
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
        { items: rows.map((r) => ({ id: r.id, name: r.name, namespace: ns.name, createdAt: r.createdAt.toISOString() })), nextCursor: null },
        200,
      );
    });
}
