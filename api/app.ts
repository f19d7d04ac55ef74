import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { OpenAPIHono } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { requestId } from 'hono/request-id';
import { routePath } from 'hono/route';
import { adminOrNamespaceTokenAuthenticator, bearerAuth } from './auth';
import type { AppDeps, AppEnv } from './types';
import { findTokenNamespace } from '../db/queries/tokens';
import { ApiError, type ErrorCode } from './errors';
import { HttpMetrics } from '../observability/metrics';
import { rootLogger, type Logger } from '../observability/log';
import { CONTEXTS_PATH } from './routes/contexts';
import { apiRoutes } from './api-routes';
import { documentedRoutes, documentRules, findDocumentedRoute, methodNotAllowed, withNoNulStrings, type DocumentedRoute } from './openapi';
import { registryEventRoutes } from './routes/registry-events';
import { registryTokenRoutes } from './routes/registry-token';
import { webhookRoutes } from './routes/webhooks';
import { systemRoutes } from './routes/system';
import { validationHook } from './util';
import { consoleRoutes } from '../console/app';

export type { AppConfig, AppDeps } from './types';

export const API_PREFIX = '/api/v1';

const SWAGGER_UI_DIR = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const DOCS_ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
};
export const OPENAPI_PATH = `${API_PREFIX}/openapi.json`;

const HTTP_STATUS_CODES: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  503: 'service_unavailable',
};

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof HTTPException) {
    // Hono's JSON validator reports unparsable bodies this way.
    if (err.status === 400 && /malformed json/i.test(err.message)) {
      return new ApiError('invalid_json', 'The request body is not valid JSON');
    }
    const code = HTTP_STATUS_CODES[err.status];
    if (code) return new ApiError(code, err.message || code.replace(/_/g, ' '));
  }
  return new ApiError('internal', 'Internal server error');
}

export { apiRoutes, type KilnApi } from './api-routes';

export function createApp(deps: AppDeps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  const metrics = new HttpMetrics(deps.db);
  const logger = (deps.logger ?? rootLogger()).child({ component: 'api' });
  const authenticate =
    deps.authenticate ?? adminOrNamespaceTokenAuthenticator(deps.config.apiToken, (token) => findTokenNamespace(deps.db, token));
  const auth = bearerAuth(authenticate);

  app.onError((err, c) => {
    const apiError = toApiError(err);
    if (apiError.code === 'internal') requestLogger(c).error({ err }, `${c.req.method} ${c.req.path} failed`);
    return c.json(apiError.toBody(c.get('requestId')), apiError.status, apiError.headers);
  });
  const docConfig = {
    openapi: '3.1.0',
    info: {
      title: 'Kiln API',
      version: '1.0.0',
      description: 'Self-hosted container image builds: repositories, build rules and durable multi-arch builds.',
    },
    servers: [{ url: deps.config.publicUrl.replace(/\/+$/, '') }],
    security: [{ bearerAuth: [] }],
  };
  // Built once, on first use, when every route is registered.
  let doc: ReturnType<typeof app.getOpenAPI31Document> | undefined;
  const document = () => (doc ??= withNoNulStrings(app.getOpenAPI31Document(docConfig)));
  let routes: DocumentedRoute[] | undefined;
  const routeTable = () => (routes ??= documentedRoutes(document()));

  app.notFound((c) => {
    const route = findDocumentedRoute(routeTable(), c.req.path);
    const err = route ? methodNotAllowed(route, c.req.method) : new ApiError('not_found', `No route for ${c.req.method} ${c.req.path}`);
    return c.json(err.toBody(c.get('requestId')), err.status, err.headers);
  });

  // X-Request-Id: the caller's (word characters, `-` and `=`, up to 255) or a new UUID; echoed in
  // the response, named in every log line of the request and in every error body.
  app.use('*', requestId());
  app.use('*', async (c, next) => {
    c.set('log', logger.child({ requestId: c.get('requestId') }));
    await next();
  });
  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const route = metricRoute(c);
    metrics.observe(c.req.method, route, c.res.status, seconds);
    requestLogger(c).debug({ method: c.req.method, route, status: c.res.status, ms: Math.round(seconds * 1000) }, 'request');
  });
  // A build context is a stream of up to KILN_MAX_CONTEXT_BYTES: its route enforces that limit as
  // the bytes pass; the body limit and the JSON sniffing below would buffer it whole.
  const streamed = (c: Context) => c.req.path === `${API_PREFIX}${CONTEXTS_PATH}`;
  const tooLarge = () =>
    new ApiError('payload_too_large', `The request body exceeds ${deps.config.maxBodyBytes} bytes`, { maxBodyBytes: deps.config.maxBodyBytes });
  const bodyLimited = bodyLimit({
    maxSize: deps.config.maxBodyBytes,
    onError: () => {
      throw tooLarge();
    },
  });
  app.use('*', (c, next) => {
    if (streamed(c) || c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    // A declared length is checked here, from the header alone: hono's bodyLimit asks for the
    // request's body stream first, which makes the Node adapter build a web stream and a full
    // Request for every request and loses its direct read of the body.
    const length = c.req.header('content-length');
    if (length !== undefined && !c.req.header('transfer-encoding')) {
      if (Number(length) > deps.config.maxBodyBytes) throw tooLarge();
      return next();
    }
    return bodyLimited(c, next);
  });
  app.use(`${API_PREFIX}/*`, (c, next) => (c.req.path === OPENAPI_PATH ? next() : auth(c, next)));
  app.use(`${API_PREFIX}/*`, (c, next) => (streamed(c) ? next() : jsonWithoutContentType(c, next)));
  const checkedByDocument = documentRules(routeTable);
  app.use(`${API_PREFIX}/*`, (c, next) => (streamed(c) ? next() : checkedByDocument(c, next)));

  app.route('/', systemRoutes(deps, metrics));
  app.route(API_PREFIX, apiRoutes(deps));
  app.route('/registry', registryTokenRoutes(deps, authenticate));
  app.route('/webhooks', registryEventRoutes(deps)); // before /webhooks/:provider, which would claim it
  app.route('/webhooks', webhookRoutes(deps));
  // The web console: pages that call the routes above in process, as any client would.
  app.route('/', consoleRoutes({ secretKey: deps.config.secretKey, registry: deps.config.registry, request: (input, init) => app.request(input, init) }));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'The API token (KILN_API_TOKEN)',
  });
  app.get(OPENAPI_PATH, (c) => c.json(document()));
  // Swagger UI's assets come from the swagger-ui-dist package, not a CDN: Kiln runs offline too.
  app.get('/docs', swaggerUI({ url: OPENAPI_PATH, title: 'Kiln API', baseUrl: '/docs/assets' }));
  app.get('/docs/assets/swagger-ui-dist/:file', async (c) => {
    const file = c.req.param('file');
    const type = DOCS_ASSETS[file];
    if (!type) throw new ApiError('not_found', `No docs asset ${file}`);
    const body = await readFile(path.join(SWAGGER_UI_DIR, file));
    return c.body(body, 200, { 'content-type': type, 'cache-control': 'public, max-age=86400' });
  });

  return app;
}

/**
 * The API speaks only JSON, but `curl -d '{...}'` labels its body as a form. A form-typed (or
 * untyped) body that is a JSON document is read as JSON instead of being refused with 415.
 */
const jsonWithoutContentType: MiddlewareHandler<AppEnv> = async (c, next) => {
  const type = c.req.header('content-type') ?? '';
  if (['POST', 'PUT', 'PATCH'].includes(c.req.method) && (type === '' || type.startsWith('application/x-www-form-urlencoded'))) {
    const body = await c.req.raw.clone().text();
    if (/^\s*[{[]/.test(body)) {
      const headers = new Headers(c.req.raw.headers);
      headers.set('content-type', 'application/json');
      c.req.raw = new Request(c.req.raw.url, { method: c.req.method, headers, body });
    }
  }
  await next();
};

/** The request's logger (with its request id); the app's before the id middleware ran. */
function requestLogger(c: Context): Logger {
  return (c.get('log') as Logger | undefined) ?? rootLogger().child({ component: 'api', requestId: c.get('requestId') });
}

/** The route pattern, never the raw path, so label cardinality stays bounded. */
function metricRoute(c: Context): string {
  const path = routePath(c, -1);
  return !path || path.includes('*') ? 'unmatched' : path;
}
