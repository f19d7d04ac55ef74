// GET /metrics for a process that runs no API (build or control workers on their own host): its
// build metrics live in this process only, so it serves them itself (KILN_METRICS_PORT).
import { Hono } from 'hono';
import { kilnProcessRegistry, metricsAuthorized } from './metrics';

export function metricsOnlyApp(token?: string): Hono {
  const app = new Hono();
  app.get('/metrics', async (c) => {
    if (!metricsAuthorized(c.req.header('authorization'), token)) {
      return c.json({ error: { code: 'unauthorized', message: 'GET /metrics needs the metrics token (KILN_METRICS_TOKEN)', details: null } }, 401, {
        'WWW-Authenticate': 'Bearer realm="kiln-metrics"',
      });
    }
    const registry = kilnProcessRegistry();
    return c.text(await registry.metrics(), 200, { 'Content-Type': registry.contentType });
  });
  return app;
}
