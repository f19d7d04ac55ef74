import { createRoute } from '@hono/zod-openapi';
import { listRepositoryDeliveries } from '../../db/queries/deliveries';
import type { AppDeps } from '../types';
import { pickErrors } from '../errors';
import { DeliveryList, DeliveryListQuery, IdParams } from '../schemas';
import { createRouter, jsonContent } from '../util';
import { loadRepository } from './repositories';

const list = createRoute({
  method: 'get',
  path: '/{id}/deliveries',
  tags: ['repositories'],
  summary: "Webhook deliveries for a repository, newest first, with what each push did (builds started, skips and failures with their reasons)",
  request: { params: IdParams, query: DeliveryListQuery },
  responses: { 200: { description: 'Deliveries', content: jsonContent(DeliveryList) }, ...pickErrors(400, 401, 403, 404) },
});

export function deliveryRoutes({ db }: AppDeps) {
  return createRouter().openapi(list, async (c) => {
    const repo = await loadRepository(c, db, c.req.valid('param').id);
    const rows = await listRepositoryDeliveries(db, repo.id, c.req.valid('query').limit);
    // A delivery may name repositories of other namespaces: show this repository's part only.
    const items = rows.map((d) => {
      const results = d.results.filter((r) => r.repositoryId === repo.id).map(({ repositoryId: _, ...r }) => r);
      return {
        provider: d.provider,
        deliveryId: d.deliveryId,
        workflowId: d.workflowId,
        status: d.status,
        receivedAt: d.receivedAt.toISOString(),
        workflowStartedAt: d.workflowStartedAt?.toISOString() ?? null,
        finishedAt: d.finishedAt?.toISOString() ?? null,
        buildIds: results.filter((r) => r.outcome === 'started' && r.buildId).map((r) => r.buildId!),
        results,
      };
    });
    return c.json({ items }, 200);
  });
}
