// The typed client of the public API, for the CLI and the console: hono/client over the route
// declarations themselves, so request and response types come from the same zod schemas that
// validate them (no second hand-written client). Import only types from the server side here.
import { hc, type InferResponseType } from 'hono/client';
import type { KilnApi } from './api-routes';

export type KilnClient = ReturnType<typeof hc<KilnApi>>;

/** `baseUrl` is the server root (e.g. http://127.0.0.1:3000); `fetch` lets the console call in-process. */
export function kilnClient(baseUrl: string, token: string, opts: { fetch?: typeof fetch } = {}): KilnClient {
  return hc<KilnApi>(`${baseUrl.replace(/\/+$/, '')}/api/v1`, {
    headers: { authorization: `Bearer ${token}` },
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
}

export type BuildBody = InferResponseType<KilnClient['builds'][':id']['$get'], 200>;
export type BuildListBody = InferResponseType<KilnClient['builds']['$get'], 200>;
export type ErrorBodyOf<T> = T extends { error: infer E } ? E : never;
