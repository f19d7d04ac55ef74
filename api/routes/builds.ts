import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import {
  decodeBuildCursor,
  finishBuild,
  getBuild,
  getBuildLogs,
  getBuildStatus,
  isTerminal,
  listBuilds,
  type BuildWithDetails,
} from '../../db/queries/builds';
import { getRepository, getRepositoryByPath } from '../../db/queries/repositories';
import type { buildLogs } from '../../db/schema';
import type { AppDeps } from '../app';
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
import { buildView } from '../views';


const submit = createRoute({
  method: 'post',
  path: '/builds',
  tags: ['builds'],
  summary: 'Build an inline Dockerfile',
  description:
    'Creates the namespace and repository on demand when the namespace allows it. With clientToken, a retry of ' +
    'the same request returns the same build; the same token with a different request is a 409.',
  request: { body: { required: true, content: jsonContent(BuildSubmit) } },
  responses: {
    202: { description: 'Accepted; the build runs asynchronously', content: jsonContent(BuildAccepted) },
    ...pickErrors(400, 401, 403, 404, 409, 413, 415, 503),
  },
});

const list = createRoute({
  method: 'get',
  path: '/builds',
  tags: ['builds'],
  summary: 'List builds, newest first',
  request: { query: BuildListQuery },
  responses: { 200: { description: 'A page of builds', content: jsonContent(BuildPage) }, ...pickErrors(400, 401, 403) },
});

const get = createRoute({
  method: 'get',
  path: '/builds/{id}',
  tags: ['builds'],
  summary: 'Get a build',
  request: { params: IdParams },
  responses: { 200: { description: 'The build', content: jsonContent(BuildView) }, ...pickErrors(401, 403, 404) },
});

const logs = createRoute({
  method: 'get',
  path: '/builds/{id}/logs',
  tags: ['builds'],
  summary: 'Build log',
  description:
    'Plain text, one line per log line, prefixed with "[platform] " when it belongs to one. With follow=1, ' +
    'Server-Sent Events: `log` events (id = sequence number, resumable with Last-Event-ID) and a final `end` ' +
    'event whose data is the final status.',
  request: { params: IdParams, query: BuildLogsQuery },
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
    ...pickErrors(400, 401, 403, 404),
  },
});

const cancel = createRoute({
  method: 'post',
  path: '/builds/{id}/cancel',
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

const FOLLOW_POLL_MS = 200;
/** A comment line now and then keeps proxies from closing a quiet stream. */
const KEEPALIVE_MS = 15_000;
const LOG_PAGE = 1000;

type LogRow = typeof buildLogs.$inferSelect;
const formatLine = (l: LogRow) => (l.platform ? `[${l.platform}] ${l.line}` : l.line);

export function buildRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const view = (b: BuildWithDetails) => buildView(b, config);

  async function loadBuild(c: Context<AppEnv>, id: string): Promise<BuildWithDetails> {
    const build = isUuid(id) ? await getBuild(db, id) : undefined;
    if (!build) throw new ApiError('not_found', `Build ${id} not found`);
    requireNamespace(c, splitRepositoryPath(build.repository).namespace);
    return build;
  }

  const inline = inlineBuilds(deps);

  function submitBuild(c: Context<AppEnv>, body: BuildSubmitInput) {
    const { namespace, name } = splitRepositoryPath(body.repository);
    return inline.submit(c, {
      namespace,
      name,
      dockerfile: body.dockerfile,
      platforms: body.platforms,
      buildArgs: body.buildArgs ?? {},
      labels: body.labels ?? {},
      target: body.target ?? null,
      tags: body.tags,
      noCache: body.noCache,
      accelerated: body.accelerated,
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
    if (scope) throw new ApiError('forbidden', 'A namespace token must filter by repository');
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
      const pageOut = await listBuilds(db, { repositoryId, status: q.status, cursor, limit: q.limit });
      return c.json({ items: pageOut.items.map(view), nextCursor: pageOut.nextCursor }, 200);
    })
    .openapi(get, async (c) => c.json(view(await loadBuild(c, c.req.valid('param').id)), 200))
    .openapi(logs, async (c) => {
      const build = await loadBuild(c, c.req.valid('param').id);
      const follow = c.req.valid('query').follow;
      if (follow !== '1' && follow !== 'true') {
        const lines: string[] = [];
        for (let after = 0; ; ) {
          const rows = await getBuildLogs(db, build.id, { afterSeq: after, limit: 10_000 });
          for (const r of rows) lines.push(formatLine(r));
          if (rows.length < 10_000) break;
          after = rows[rows.length - 1]!.seq;
        }
        return c.text(lines.length ? `${lines.join('\n')}\n` : '', 200);
      }

      const resumeFrom = Number.parseInt(c.req.header('last-event-id') ?? '', 10);
      let lastSeq = Number.isSafeInteger(resumeFrom) && resumeFrom > 0 ? resumeFrom : 0;
      const signal = c.req.raw.signal;
      const res = streamSSE(c, async (stream) => {
        const gone = () => stream.aborted || stream.closed || signal.aborted;
        let lastWrite = Date.now();
        while (!gone()) {
          // Status first: lines are written before a build turns terminal, so after seeing a terminal
          // status the following read drains every line there will ever be.
          const status = await getBuildStatus(db, build.id);
          if (!status) break;
          let rows: LogRow[];
          do {
            rows = await getBuildLogs(db, build.id, { afterSeq: lastSeq, limit: LOG_PAGE });
            for (const r of rows) {
              await stream.writeSSE({ event: 'log', id: String(r.seq), data: formatLine(r) });
              lastSeq = r.seq;
              lastWrite = Date.now();
            }
          } while (rows.length === LOG_PAGE && !gone());
          if (isTerminal(status)) {
            await stream.writeSSE({ event: 'end', data: status });
            break;
          }
          if (Date.now() - lastWrite >= KEEPALIVE_MS) {
            await stream.write(': keepalive\n\n');
            lastWrite = Date.now();
          }
          await stream.sleep(FOLLOW_POLL_MS);
        }
      });
      // The route also documents text/plain; an SSE response is a plain Response to the type system.
      return res as unknown as ReturnType<typeof c.text<string, 200>>;
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
