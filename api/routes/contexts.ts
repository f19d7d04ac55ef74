// Local build contexts (`kiln build DIR`): a tar stream, gzipped or not, streamed straight into a
// blob of the repository in Kiln's registry (never held whole in memory or on the API's disk), so
// any build worker can fetch it by digest without a shared file system.
import { Readable } from 'node:stream';
import { createRoute, z } from '@hono/zod-openapi';
import { recordBuildContext } from '../../db/queries/contexts';
import { BlobTooLargeError } from '../../activities/registry';
import type { AppDeps } from '../types';
import { requireNamespace } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { ContextUploaded, ContextUploadQuery, splitRepositoryPath } from '../schemas';
import { createRouter, errorMessage, jsonContent } from '../util';

export const CONTEXTS_PATH = '/contexts';
export const CONTEXT_MEDIA_TYPES = ['application/x-tar', 'application/gzip', 'application/octet-stream'];

const upload = createRoute({
  method: 'post',
  path: '/',
  tags: ['builds'],
  summary: 'Upload a local build context',
  description:
    'The body is a tar stream (gzip allowed), at most KILN_MAX_CONTEXT_BYTES (413 beyond). It is stored by digest ' +
    'in the registry repository of `repository` and kept until unused for the retention time. Build it with ' +
    'POST /builds `{repository, context: {digest, contextDir?, dockerfile?}, ...}`.',
  request: {
    query: ContextUploadQuery,
    body: {
      required: true,
      content: Object.fromEntries(CONTEXT_MEDIA_TYPES.map((t) => [t, { schema: z.string().openapi({ format: 'binary' }) }])),
    },
  },
  responses: {
    201: { description: 'Stored', content: jsonContent(ContextUploaded) },
    ...pickErrors(400, 401, 403, 413, 415, 422, 503),
  },
});

export type { ContextConfig } from '../types';

export function contextRoutes(deps: AppDeps) {
  const { db } = deps;
  const maxContextBytes = deps.contexts?.maxContextBytes ?? 0;
  const tooLarge = () =>
    new ApiError('payload_too_large', `The build context exceeds the limit of ${maxContextBytes} bytes (KILN_MAX_CONTEXT_BYTES)`, {
      maxContextBytes,
    });

  return createRouter().openapi(upload, async (c) => {
    if (!deps.contexts) throw new ApiError('service_unavailable', 'This API has no registry for build contexts');
    const { registry, retentionMs } = deps.contexts;
    const { repository } = c.req.valid('query');
    requireNamespace(c, splitRepositoryPath(repository).namespace);
    const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    // curl --data-binary labels its body as a form: accept that too, the bytes decide.
    if (type && !CONTEXT_MEDIA_TYPES.includes(type) && type !== 'application/x-www-form-urlencoded') {
      throw new ApiError('unsupported_media_type', `A build context is a tar stream (${CONTEXT_MEDIA_TYPES.join(', ')}), not ${type}`);
    }
    const declared = Number(c.req.header('content-length') ?? Number.NaN);
    if (declared > maxContextBytes) throw tooLarge();
    const body = c.req.raw.body;
    if (!body) throw new ApiError('bad_request', 'The request has no body; send the context as a tar stream');

    let stored: { digest: string; size: number };
    try {
      stored = await registry.uploadBlob(repository, Readable.fromWeb(body as never), {
        maxBytes: maxContextBytes,
        signal: c.req.raw.signal,
      });
    } catch (err) {
      if (err instanceof BlobTooLargeError) throw tooLarge();
      if (c.req.raw.signal.aborted) throw new ApiError('bad_request', 'The upload was interrupted');
      throw new ApiError('service_unavailable', `The registry could not store the context: ${errorMessage(err)}`);
    }
    if (stored.size === 0) throw new ApiError('unprocessable', 'The build context is empty; send a tar stream');
    const row = await recordBuildContext(db, { repository, ...stored });
    return c.json(
      { repository, digest: row.digest, size: row.size, expiresAt: new Date(row.lastUsedAt.getTime() + retentionMs).toISOString() },
      201,
    );
  });
}
