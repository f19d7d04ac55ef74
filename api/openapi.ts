// What the served OpenAPI document adds to what the route declarations generate, and what the
// app derives from the document: the rules that hold for every route are stated once here, so the
// document and the checks cannot drift apart.
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from './auth';
import { ApiError } from './errors';

type Json = Record<string, unknown>;
type Document = { paths?: object };

/** Postgres cannot store U+0000 in text; no string of the API may hold it. */
export const NO_NUL_PATTERN = '^[^\\u0000]*$';
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/**
 * Every string schema that has no pattern, enum or format of its own gets NO_NUL_PATTERN, and so
 * does every map's key schema. Walks iteratively (documents are small, but never recurse on input).
 */
export function withNoNulStrings<T extends object>(doc: T): T {
  const stack: unknown[] = [doc];
  while (stack.length) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      stack.push(...node);
      continue;
    }
    if (!node || typeof node !== 'object') continue;
    const obj = node as Json;
    const type = obj.type;
    const isString = type === 'string' || (Array.isArray(type) && type.includes('string'));
    if (isString && obj.pattern === undefined && obj.enum === undefined && obj.const === undefined && obj.format === undefined) {
      obj.pattern = NO_NUL_PATTERN;
    }
    // Any object that takes more names than it lists (a map, a passthrough): its names carry no NUL either.
    if (type === 'object' && obj.additionalProperties !== false && !obj.propertyNames) {
      obj.propertyNames = { type: 'string', pattern: NO_NUL_PATTERN };
    }
    for (const [key, value] of Object.entries(obj)) {
      // `properties` maps names to schemas: its keys are names, not schema keywords.
      if (key === 'example' || key === 'examples') continue;
      stack.push(value);
    }
  }
  return doc;
}

export interface DocumentedRoute {
  pattern: RegExp;
  methods: Set<string>;
  /** Upper-case methods whose request body the document marks required. */
  bodyRequired: Set<string>;
}

/** The document's paths as matchers (`/builds/{id}` → `^/builds/[^/]+$`). */
export function documentedRoutes(doc: Document): DocumentedRoute[] {
  return Object.entries((doc.paths ?? {}) as Record<string, Json>).map(([path, item]) => {
    const escaped = path
      .split(/\{[^}]+\}/)
      .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
      .join('[^/]+');
    const methods = new Set<string>();
    const bodyRequired = new Set<string>();
    for (const m of HTTP_METHODS) {
      const op = item[m] as { requestBody?: { required?: boolean } } | undefined;
      if (!op) continue;
      methods.add(m.toUpperCase());
      if (op.requestBody?.required) bodyRequired.add(m.toUpperCase());
    }
    // Hono answers HEAD for every GET.
    if (methods.has('GET')) methods.add('HEAD');
    return { pattern: new RegExp(`^${escaped}$`), methods, bodyRequired };
  });
}

export function findDocumentedRoute(routes: DocumentedRoute[], path: string): DocumentedRoute | undefined {
  return routes.find((r) => r.pattern.test(path));
}

/** The Allow header and 405 for a documented path asked with a method it does not have. */
export function methodNotAllowed(route: DocumentedRoute, method: string): ApiError {
  const allow = [...route.methods].sort().join(', ');
  return new ApiError('method_not_allowed', `${method} is not allowed here; use ${allow}`, { allow: [...route.methods].sort() }, { allow });
}

function hasNul(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (v.includes('\0')) return true;
    } else if (Array.isArray(v)) {
      stack.push(...v);
    } else if (v && typeof v === 'object') {
      for (const [k, inner] of Object.entries(v)) {
        if (k.includes('\0')) return true;
        stack.push(inner);
      }
    }
  }
  return false;
}

const nulError = (where: string) =>
  new ApiError('validation_failed', 'The request is not valid', [{ in: where, path: [], message: 'must not contain NUL (U+0000) characters' }]);

/**
 * Enforces NO_NUL_PATTERN on the path, the query and JSON bodies, and a required body's presence
 * (Hono's JSON validator reads a missing body as `{}`), for the documented routes.
 */
export function documentRules(routes: () => DocumentedRoute[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    let path: string;
    try {
      path = decodeURIComponent(c.req.path);
    } catch {
      throw new ApiError('bad_request', 'The request path is not valid percent-encoding');
    }
    if (path.includes('\0')) throw nulError('param');
    const url = new URL(c.req.url);
    for (const [k, v] of url.searchParams) if (k.includes('\0') || v.includes('\0')) throw nulError('query');
    const route = findDocumentedRoute(routes(), c.req.path);
    if (route && ['POST', 'PUT', 'PATCH'].includes(c.req.method)) {
      const raw = await c.req.raw.clone().text();
      if (raw.trim() === '' && route.bodyRequired.has(c.req.method)) {
        throw new ApiError('validation_failed', 'The request is not valid', [{ in: 'json', path: [], message: 'a JSON body is required' }]);
      }
      // Only a body that spells a NUL (raw or \u0000) needs the walk.
      if (raw.includes('\0') || /\\u0000/i.test(raw)) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw);
        } catch {
          parsed = raw;
        }
        if (hasNul(parsed)) throw nulError('json');
      }
    }
    await next();
  };
}
