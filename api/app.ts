import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { OpenAPIHono } from '@hono/zod-openapi';
import { swaggerUI } from '@hono/swagger-ui';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { routePath } from 'hono/route';
import type { Db } from '../db/client';
import { adminOrNamespaceTokenAuthenticator, bearerAuth, type AppEnv, type Authenticate } from './auth';
import { findTokenNamespace } from '../db/queries/tokens';
import type { BuildStarter } from './build-starter';
import { ApiError, type ErrorCode } from './errors';
import { documentedRoutes, documentRules, findDocumentedRoute, methodNotAllowed, withNoNulStrings, type DocumentedRoute } from './openapi';
import { HttpMetrics } from './metrics';
import { buildRoutes } from './routes/builds';
import { imageBuildRoutes } from './routes/imagebuilds';
import { namespaceRoutes } from './routes/namespaces';
import { registryEventRoutes } from './routes/registry-events';
import { repositoryRoutes } from './routes/repositories';
import { ruleRoutes } from './routes/rules';
import { webhookRoutes } from './routes/webhooks';
import { systemRoutes } from './routes/system';
import { validationHook } from './util';

export interface AppConfig {
  apiToken: string;
  maxBodyBytes: number;
  /** Base URL of the Temporal UI, for links from a build; null hides them. */
  temporalUiUrl: string | null;
  temporalNamespace: string;
  /** host:port the images go to. */
  registry: string;
  /** KILN_SECRET_KEY: encrypts stored git tokens and webhook secrets (db/crypto.ts). */
  secretKey: string;
  /** Externally reachable base URL of this API, for the webhook URLs given to git hosts. */
  publicUrl: string;
}

export interface AppDeps {
  db: Db;
  config: AppConfig;
  builds: BuildStarter;
  /** name → throws when not ready (temporal, buildkit-linux-amd64, registry, ...); a database check is built in. */
  readiness?: Record<string, () => Promise<void>>;
  /** Resolves bearer tokens; defaults to the single admin token `config.apiToken`. */
  authenticate?: Authenticate;
}

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

export function createApp(deps: AppDeps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  const metrics = new HttpMetrics();
  const authenticate =
    deps.authenticate ?? adminOrNamespaceTokenAuthenticator(deps.config.apiToken, (token) => findTokenNamespace(deps.db, token));
  const auth = bearerAuth(authenticate);

  app.onError((err, c) => {
    const apiError = toApiError(err);
    if (apiError.code === 'internal') console.error(`[api] ${c.req.method} ${c.req.path} failed:`, err);
    return c.json(apiError.toBody(), apiError.status, apiError.headers);
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
    return c.json(err.toBody(), err.status, err.headers);
  });

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    metrics.observe(c.req.method, metricRoute(c), c.res.status, (performance.now() - started) / 1000);
  });
  app.use(
    '*',
    bodyLimit({
      maxSize: deps.config.maxBodyBytes,
      onError: () => {
        throw new ApiError('payload_too_large', `The request body exceeds ${deps.config.maxBodyBytes} bytes`, {
          maxBodyBytes: deps.config.maxBodyBytes,
        });
      },
    }),
  );
  app.use(`${API_PREFIX}/*`, (c, next) => (c.req.path === OPENAPI_PATH ? next() : auth(c, next)));
  app.use(`${API_PREFIX}/*`, jsonWithoutContentType);
  app.use(`${API_PREFIX}/*`, documentRules(routeTable));

  app.route('/', systemRoutes(deps, metrics));
  app.route(API_PREFIX, namespaceRoutes(deps));
  app.route(API_PREFIX, repositoryRoutes(deps));
  app.route(API_PREFIX, buildRoutes(deps));
  app.route(API_PREFIX, imageBuildRoutes(deps));
  app.route(API_PREFIX, ruleRoutes(deps));
  app.route('/', registryEventRoutes(deps)); // before /webhooks/:provider, which would claim it
  app.route('/', webhookRoutes(deps));

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

/** The route pattern, never the raw path, so label cardinality stays bounded. */
function metricRoute(c: Context): string {
  const path = routePath(c, -1);
  return !path || path.includes('*') ? 'unmatched' : path;
}
