import { createRoute } from '@hono/zod-openapi';
import { insertNamespace, listNamespaces } from '../../db/queries/namespaces';
import type { AppDeps } from '../app';
import { namespaceScope, requireAdmin } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { NamespaceCreate, NamespacePage, NamespaceView } from '../schemas';
import { createRouter, isUniqueViolation } from '../util';
import { namespaceView } from '../views';

const create = createRoute({
  method: 'post',
  path: '/namespaces',
  tags: ['namespaces'],
  summary: 'Create a namespace',
  request: { body: { required: true, content: { 'application/json': { schema: NamespaceCreate } } } },
  responses: {
    201: { description: 'Created', content: { 'application/json': { schema: NamespaceView } } },
    ...pickErrors(400, 401, 403, 409, 413, 415),
  },
});

const list = createRoute({
  method: 'get',
  path: '/namespaces',
  tags: ['namespaces'],
  summary: 'List namespaces',
  responses: {
    200: { description: 'Namespaces by name', content: { 'application/json': { schema: NamespacePage } } },
    ...pickErrors(401),
  },
});

export function namespaceRoutes({ db }: AppDeps) {
  return createRouter()
    .openapi(create, async (c) => {
      requireAdmin(c);
      const body = c.req.valid('json');
      try {
        const row = await insertNamespace(db, body);
        return c.json(namespaceView(row), 201);
      } catch (err) {
        if (isUniqueViolation(err)) throw new ApiError('conflict', `Namespace "${body.name}" already exists`);
        throw err;
      }
    })
    .openapi(list, async (c) => {
      const scope = namespaceScope(c);
      const rows = (await listNamespaces(db)).filter((n) => !scope || n.name === scope);
      return c.json({ items: rows.map(namespaceView), nextCursor: null }, 200);
    });
}
