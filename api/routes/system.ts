import { createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import type { AppDeps } from '../types';
import { ApiError, pickErrors } from '../errors';
import { metricsAuthorized, type HttpMetrics } from '../../observability/metrics';
import { Health, Readiness } from '../schemas';
import { createRouter, errorMessage } from '../util';

const CHECK_TIMEOUT_MS = 3000;

const healthz = createRoute({
  method: 'get',
  path: '/healthz',
  tags: ['system'],
  summary: 'Liveness: the process answers',
  security: [],
  responses: { 200: { description: 'Alive', content: { 'application/json': { schema: Health } } } },
});

const readyz = createRoute({
  method: 'get',
  path: '/readyz',
  tags: ['system'],
  summary: 'Readiness: Temporal, the database, buildkitd and the registry are reachable',
  security: [],
  responses: {
    200: { description: 'Every check passed', content: { 'application/json': { schema: Readiness } } },
    503: { description: 'At least one check failed', content: { 'application/json': { schema: Readiness } } },
  },
});

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  tags: ['system'],
  summary: 'Prometheus metrics',
  description: 'Open unless KILN_METRICS_TOKEN is set; then `Authorization: Bearer <KILN_METRICS_TOKEN>` is required.',
  security: [],
  responses: {
    200: { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string() } } },
    ...pickErrors(401),
  },
});

async function runCheck(check: () => Promise<void>): Promise<{ ok: boolean; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([check(), timeout]);
    return { ok: true };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  } finally {
    clearTimeout(timer);
  }
}

export function systemRoutes(deps: AppDeps, metrics: HttpMetrics) {
  const checks: Record<string, () => Promise<void>> = {
    database: async () => {
      await deps.db.execute(sql`select 1`);
    },
    ...deps.readiness,
  };

  return createRouter()
    .openapi(healthz, (c) => c.json({ status: 'ok' as const }, 200))
    .openapi(readyz, async (c) => {
      const names = Object.keys(checks);
      const results = await Promise.all(names.map((n) => runCheck(checks[n]!)));
      const body = Object.fromEntries(names.map((n, i) => [n, results[i]!]));
      const ready = results.every((r) => r.ok);
      return ready
        ? c.json({ status: 'ready' as const, checks: body }, 200)
        : c.json({ status: 'not_ready' as const, checks: body }, 503);
    })
    .openapi(metricsRoute, async (c) => {
      if (!metricsAuthorized(c.req.header('authorization'), deps.config.metricsToken)) {
        throw new ApiError('unauthorized', 'GET /metrics needs the metrics token (KILN_METRICS_TOKEN)', null, {
          'WWW-Authenticate': 'Bearer realm="kiln-metrics"',
        });
      }
      return c.text(await metrics.render(), 200, { 'Content-Type': metrics.contentType });
    });
}
