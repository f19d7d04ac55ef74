import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import {
  decodeBuildCursor,
  finishBuild,
  getBuild,
  insertBuild,
  getBuildStatus,
  listBuilds,
  type BuildWithDetails,
  getQueuePosition,
} from '../../db/queries/builds';
import { isTerminal } from '../../domain/builds';
import { getRepository, getRepositoryByPath } from '../../db/queries/repositories';
import { useBuildContext } from '../../db/queries/contexts';
import { randomUUID } from 'node:crypto';
import { startBuildOrFail } from '../start-build';
import { submissionLimiter } from '../submission-limits';
import { getLogStreamEnd } from '../../db/queries/logs';
import type { AppDeps } from '../types';
import { namespaceScope, requireNamespace, type AppEnv } from '../auth';
import { BuildNotRunningError } from '../build-starter';
import { ApiError, pickErrors } from '../errors';
import {
  BuildAccepted,
  BuildListQuery,
  BuildLogsQuery,
  BuildPage,
  BuildSubmit,
  BuildView,
  CancelAccepted,
  IdParams,
  splitRepositoryPath,
  type BuildSubmitInput,
} from '../schemas';
import { inlineBuilds } from '../inline-builds';
import { canonicalJson, createRouter, errorMessage, isUuid, jsonContent, sha256Hex } from '../util';
import { chunksAfter, CombinedLogRenderer, FollowerLimits, logBody, parseRange, sseText, streamOf } from '../build-logs';
import { buildView } from '../views';


const submit = createRoute({
  method: 'post',
  path: '/',
  tags: ['builds'],
  summary: 'Build an inline Dockerfile',
  description:
    'Creates the namespace and repository on demand when the namespace allows it. With clientToken, a retry of ' +
    'the same request returns the same build; the same token with a different request is a 409.',
  request: { body: { required: true, content: jsonContent(BuildSubmit) } },
  responses: {
    202: { description: 'Accepted; the build runs asynchronously', content: jsonContent(BuildAccepted) },
    ...pickErrors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
  },
});

const list = createRoute({
  method: 'get',
  path: '/',
  tags: ['builds'],
  summary: 'List builds, newest first',
  request: { query: BuildListQuery },
  responses: { 200: { description: 'A page of builds', content: jsonContent(BuildPage) }, ...pickErrors(400, 401, 403) },
});

const get = createRoute({
  method: 'get',
  path: '/{id}',
  tags: ['builds'],
  summary: 'Get a build',
  request: { params: IdParams },
  responses: { 200: { description: 'The build', content: jsonContent(BuildView) }, ...pickErrors(401, 403, 404) },
});

const logs = createRoute({
  method: 'get',
  path: '/{id}/logs',
  tags: ['builds'],
  summary: 'Build log',
  description: [
    'Plain text, streamed (a log of any size costs the server the same memory). Without `platform`: every line',
    'in the order it was written, a platform\'s lines prefixed with "[platform] ". With `platform`: that stream',
    'alone, byte for byte as the build printed it (NUL, invalid UTF-8, `\\r`); resume a download with `offset`',
    'or a `Range: bytes=N-` header (206 with Content-Range; 416 past the end). A build whose log reached',
    'KILN_MAX_LOG_BYTES ends with a `==> log truncated` line; one whose log could not all be stored says',
    '`==> log incomplete` and has `logIncomplete: true` (also the `X-Kiln-Log-Incomplete: true` header).',
    '',
    'With follow=1, Server-Sent Events: `log` events, each holding the lines of one stored chunk (up to 64 KiB;',
    'data lines are log lines; invalid UTF-8 shows as U+FFFD and a carriage return as U+240D there, the text',
    'log has the bytes), id = the chunk\'s sequence number, resumable with Last-Event-ID; then an `end` event',
    'whose data is the final status. Followers wake on Postgres NOTIFY, not by polling. Followers are capped',
    'per build and per token (KILN_MAX_LOG_FOLLOWERS_PER_BUILD / _PER_TOKEN): 429 beyond.',
  ].join(' '),
  request: {
    params: IdParams,
    query: BuildLogsQuery,
    headers: z.object({
      range: z.string().optional().openapi({ description: 'With platform: `bytes=N-`, `bytes=N-M` or `bytes=-N`' }),
      'last-event-id': z.string().optional().openapi({ description: 'With follow=1: resume after this event id' }),
    }),
  },
  responses: {
    200: {
      description: 'The log',
      content: {
        'text/plain': { schema: z.string() },
        // OpenAPI 3.1 reads an event stream's schema as the schema of each event.
        'text/event-stream': {
          schema: z
            .object({
              event: z.enum(['log', 'end']),
              data: z.string().openapi({ description: 'log: one line; end: the final status' }),
              id: z.string().regex(/^[0-9]+$/).optional().openapi({ description: 'log: its sequence number' }),
            })
            .openapi('BuildLogEvent'),
        },
      },
    },
    206: { description: 'The requested byte range of one stream', content: { 'text/plain': { schema: z.string() } } },
    ...pickErrors(400, 401, 403, 404, 416, 422, 429),
  },
});

const cancel = createRoute({
  method: 'post',
  path: '/{id}/cancel',
  tags: ['builds'],
  summary: 'Cancel a build',
  description:
    'Asks the workflow to cancel; every running step is stopped and the build becomes `canceled` within seconds, ' +
    'with no tag pushed. Repeating it is harmless (202 again, also once canceled); a build that ended otherwise is a 409.',
  request: { params: IdParams },
  responses: {
    202: { description: 'Cancellation requested', content: jsonContent(CancelAccepted) },
    ...pickErrors(401, 403, 404, 409, 503),
  },
});

const rebuild = createRoute({
  method: 'post',
  path: '/{id}/rebuild',
  tags: ['builds'],
  summary: 'Run a build again',
  description:
    'A new build with the same source and settings: the same inline Dockerfile or uploaded context (404 once ' +
    'expired), or the same rule and ref (the ref is resolved again, so a branch builds its newest commit).',
  request: { params: IdParams },
  responses: {
    202: { description: 'Accepted', content: jsonContent(BuildAccepted) },
    ...pickErrors(401, 403, 404, 409, 429, 503),
  },
});

/**
 * A comment line now and then keeps proxies from closing a quiet stream; the follower also reads
 * again then, in case a notification was lost while the LISTEN connection reconnected.
 */
const KEEPALIVE_MS = 15_000;

export function buildRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const view = async (b: BuildWithDetails) => buildView(b, config, await getQueuePosition(db, b));
  const followers = new FollowerLimits(config.logFollowers ?? { perBuild: 100, perToken: 100 });

  async function loadBuild(c: Context<AppEnv>, id: string): Promise<BuildWithDetails> {
    const build = isUuid(id) ? await getBuild(db, id) : undefined;
    if (!build) throw new ApiError('not_found', `Build ${id} not found`);
    requireNamespace(c, splitRepositoryPath(build.repository).namespace);
    return build;
  }

  const inline = inlineBuilds(deps);
  const limiter = submissionLimiter(deps);

  function submitBuild(c: Context<AppEnv>, body: BuildSubmitInput) {
    const { namespace, name } = splitRepositoryPath(body.repository);
    return inline.submit(c, {
      namespace,
      name,
      dockerfile: body.dockerfile ?? null,
      context: body.context
        ? { digest: body.context.digest, contextDir: body.context.contextDir, dockerfilePath: body.context.dockerfile }
        : undefined,
      platforms: body.platforms,
      buildArgs: body.buildArgs ?? {},
      labels: body.labels ?? {},
      target: body.target ?? null,
      tags: body.tags,
      noCache: body.noCache,
      accelerated: body.accelerated,
      provenance: body.provenance,
      timeoutMinutes: body.timeoutMinutes,
      clientToken: body.clientToken,
      requestHash: sha256Hex(canonicalJson(body)),
    });
  }

  async function resolveListFilter(c: Context<AppEnv>, q: z.infer<typeof BuildListQuery>): Promise<string | null | undefined> {
    const scope = namespaceScope(c);
    let byId: string | null | undefined;
    let byPath: string | null | undefined;
    if (q.repositoryId) {
      const repo = await getRepository(db, q.repositoryId);
      if (repo) requireNamespace(c, repo.namespace);
      byId = repo ? repo.id : null;
    }
    if (q.repository) {
      const { namespace, name } = splitRepositoryPath(q.repository);
      requireNamespace(c, namespace);
      byPath = (await getRepositoryByPath(db, namespace, name))?.id ?? null;
    }
    // Both given: they must name the same repository, else no build matches.
    if (byId !== undefined && byPath !== undefined) return byId === byPath ? byId : null;
    if (byId !== undefined) return byId;
    if (byPath !== undefined) return byPath;
    if (q.namespace) requireNamespace(c, q.namespace);
    else if (scope) throw new ApiError('forbidden', 'A namespace token must filter by namespace or repository');
    return undefined;
  }

  return createRouter()
    .openapi(submit, async (c) => c.json(await submitBuild(c, c.req.valid('json')), 202))
    .openapi(list, async (c) => {
      const q = c.req.valid('query');
      // The query schema admits only well-formed cursors.
      const cursor = q.cursor ? decodeBuildCursor(q.cursor) : undefined;
      const repositoryId = await resolveListFilter(c, q);
      if (repositoryId === null) return c.json({ items: [], nextCursor: null }, 200);
      const pageOut = await listBuilds(db, { repositoryId, namespace: q.namespace, status: q.status, trigger: q.trigger, cursor, limit: q.limit });
      return c.json({ items: await Promise.all(pageOut.items.map(view)), nextCursor: pageOut.nextCursor }, 200);
    })
    .openapi(get, async (c) => c.json(await view(await loadBuild(c, c.req.valid('param').id)), 200))
    .openapi(logs, async (c) => {
      const build = await loadBuild(c, c.req.valid('param').id);
      const q = c.req.valid('query');
      const stream = q.platform === undefined ? undefined : streamOf(q.platform);
      const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
      if (build.logIncomplete) headers['x-kiln-log-incomplete'] = 'true';
      if (q.follow !== '1' && q.follow !== 'true') {
        const range = c.req.header('range');
        if (stream === undefined) {
          if (q.offset !== undefined) throw new ApiError('unprocessable', 'offset needs platform (one stream is addressable by byte)');
          return new Response(logBody(db, build.id, {}), { status: 200, headers });
        }
        headers['accept-ranges'] = 'bytes';
        if (range) {
          const length = await getLogStreamEnd(db, build.id, stream);
          const r = parseRange(range, length);
          if (r === 'unsatisfiable') {
            throw new ApiError('range_not_satisfiable', `The ${q.platform} log has ${length} bytes`, { length }, {
              'Content-Range': `bytes */${length}`,
            });
          }
          if (r !== 'ignore') {
            // A running build's log grows: its full length is not known yet.
            const total = isTerminal(build.status) ? String(length) : '*';
            headers['content-range'] = `bytes ${r.start}-${r.end - 1}/${total}`;
            headers['content-length'] = String(r.end - r.start);
            return new Response(logBody(db, build.id, { stream, offset: r.start, end: r.end }), { status: 206, headers });
          }
        }
        return new Response(logBody(db, build.id, { stream, offset: q.offset ?? 0 }), { status: 200, headers });
      }

      const resumeFrom = Number.parseInt(c.req.header('last-event-id') ?? '', 10);
      let lastSeq = Number.isSafeInteger(resumeFrom) && resumeFrom > 0 ? resumeFrom : 0;
      const token = sha256Hex(c.req.header('authorization') ?? '');
      const release = followers.acquire(build.id, token);
      let watch;
      try {
        watch = await deps.logSignals.watch(build.id);
      } catch (err) {
        release();
        throw new ApiError('service_unavailable', `Cannot follow logs: ${errorMessage(err)}`);
      }
      const renderer = new CombinedLogRenderer();
      const res = streamSSE(c, async (sse) => {
        // The client leaving shows as the request's signal (a socket closed) or as the stream
        // being canceled (a reader gone): either ends the wait at once, and frees the place.
        const left = new AbortController();
        c.req.raw.signal.addEventListener('abort', () => left.abort(), { once: true });
        sse.onAbort(() => left.abort());
        const signal = left.signal;
        const gone = () => sse.aborted || sse.closed || signal.aborted;
        try {
          while (!gone()) {
            const version = watch.version();
            // Status first: lines are written before a build turns terminal, so after seeing a
            // terminal status the following read drains every line there will ever be.
            const status = await getBuildStatus(db, build.id);
            if (!status) break;
            for await (const chunk of chunksAfter(db, build.id, stream, lastSeq)) {
              if (gone()) return;
              const text = sseText(stream === undefined ? renderer.render(chunk) : chunk.data);
              await sse.writeSSE({ event: 'log', id: String(chunk.seq), data: text });
              lastSeq = chunk.seq;
            }
            if (isTerminal(status)) {
              await sse.writeSSE({ event: 'end', data: status });
              break;
            }
            if (!(await watch.changed(version, KEEPALIVE_MS, signal)) && !gone()) await sse.write(': keepalive\n\n');
          }
        } finally {
          watch.close();
          release();
        }
      });
      // The route also documents text/plain; an SSE response is a plain Response to the type system.
      return res as unknown as ReturnType<typeof c.text<string, 200>>;
    })
    .openapi(rebuild, async (c) => {
      const old = await loadBuild(c, c.req.valid('param').id);
      limiter.take(splitRepositoryPath(old.repository).namespace);
      const id = randomUUID();
      const context = old.contextDigest ? await useBuildContext(db, old.repository, old.contextDigest) : undefined;
      if (old.contextDigest && !context) {
        throw new ApiError('not_found', `The uploaded context ${old.contextDigest} has expired; build the directory again`);
      }
      const { build } = await insertBuild(db, {
        id,
        repositoryId: old.repositoryId,
        ruleId: old.ruleId,
        status: 'queued',
        trigger: old.ruleId ? 'manual' : old.trigger === 'api' ? 'api' : 'manual',
        creationMethod: 'manual build',
        sourceUrl: old.sourceUrl,
        sourceRef: old.sourceRef,
        // A rule build resolves its ref again and renders its tags for the new commit.
        sourceCommit: old.ruleId ? null : old.sourceCommit,
        dockerfile: old.dockerfile,
        contextDigest: old.contextDigest,
        contextSize: old.contextSize,
        contextDir: old.contextDir,
        dockerfilePath: old.dockerfilePath,
        platforms: old.platforms,
        buildArgs: old.buildArgs,
        labels: old.labels,
        target: old.target,
        tags: old.ruleId ? [] : old.tags,
        noCache: old.noCache,
        accelerated: old.accelerated,
        provenance: old.provenance,
        overwriteTags: old.overwriteTags,
        registryAuthsEnc: old.registryAuthsEnc,
        timeoutMinutes: old.timeoutMinutes,
        workflowId: `build-${id}`,
      });
      if (await startBuildOrFail(deps, build, old.repository)) {
        throw new ApiError('service_unavailable', 'The build engine is unavailable; the build was marked failed', { buildId: build.id });
      }
      return c.json({ buildId: build.id, workflowId: build.workflowId }, 202);
    })
    .openapi(cancel, async (c) => {
      const build = await loadBuild(c, c.req.valid('param').id);
      // Cancelling twice is harmless: a retried cancel finds the build already canceled.
      if (build.status === 'canceled') return c.json({ buildId: build.id, status: build.status }, 202);
      if (isTerminal(build.status)) {
        throw new ApiError('conflict', `Build already ended with status ${build.status}`, { status: build.status });
      }
      try {
        await deps.builds.cancel(build.workflowId);
      } catch (err) {
        if (!(err instanceof BuildNotRunningError)) {
          throw new ApiError('service_unavailable', `The build engine could not be reached: ${errorMessage(err)}`);
        }
        // No workflow will ever finish this build, so record the cancellation here.
        await finishBuild(db, build.id, {
          status: 'canceled',
          errorCode: 'canceled',
          errorMessage: 'Canceled before the build engine ran it',
        });
      }
      const status = (await getBuildStatus(db, build.id)) ?? build.status;
      return c.json({ buildId: build.id, status }, 202);
    });
}
