import { randomBytes } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { encryptSecret } from '../../db/crypto';
import { countActiveBuilds } from '../../db/queries/builds';
import { ensureNamespace } from '../../db/queries/namespaces';
import {
  deleteRepository,
  getRepository,
  getRepositoryByPath,
  insertRepository,
  listRepositories,
  updateRepository,
  type RepositoryWithNamespace,
} from '../../db/queries/repositories';
import { listImageTags } from '../../db/queries/tags';
import { listRules } from '../../db/queries/rules';
import type { AppDeps } from '../types';
import { namespaceScope, requireNamespace, type AppEnv } from '../auth';
import { ApiError, pickErrors } from '../errors';
import { assertRepositoryQuota } from '../submission-limits';
import {
  IdParams,
  ImageTagPage,
  RepositoryCreate,
  RepositoryCreated,
  RepositoryListQuery,
  RepositoryPage,
  RepositoryUpdate,
  RepositoryView,
  SourceRotate,
} from '../schemas';
import { createRouter, isUniqueViolation, isUuid, jsonContent } from '../util';
import { imageTagView, repositoryView, webhookUrl } from '../views';


const create = createRoute({
  method: 'post',
  path: '/',
  tags: ['repositories'],
  summary: 'Create an image repository (and its namespace when missing)',
  description:
    'Omitted visibility, immutableTags and acceleratedImages take the namespace defaults. With a source and no ' +
    'webhookSecret, a secret is generated and returned once, in this response, with the webhook URL to set.',
  request: { body: { required: true, content: jsonContent(RepositoryCreate) } },
  responses: {
    201: { description: 'Created', content: jsonContent(RepositoryCreated) },
    ...pickErrors(400, 401, 403, 409, 413, 415, 422),
  },
});

const list = createRoute({
  method: 'get',
  path: '/',
  tags: ['repositories'],
  summary: 'List image repositories',
  request: { query: RepositoryListQuery },
  responses: { 200: { description: 'A page of repositories', content: jsonContent(RepositoryPage) }, ...pickErrors(400, 401, 403) },
});

const get = createRoute({
  method: 'get',
  path: '/{id}',
  tags: ['repositories'],
  summary: 'Get an image repository',
  request: { params: IdParams },
  responses: { 200: { description: 'The repository', content: jsonContent(RepositoryView) }, ...pickErrors(401, 403, 404) },
});

const patch = createRoute({
  method: 'patch',
  path: '/{id}',
  tags: ['repositories'],
  summary: 'Change an image repository',
  request: { params: IdParams, body: { required: true, content: jsonContent(RepositoryUpdate) } },
  responses: {
    200: { description: 'The changed repository', content: jsonContent(RepositoryView) },
    ...pickErrors(400, 401, 403, 404, 413, 415),
  },
});

const remove = createRoute({
  method: 'delete',
  path: '/{id}',
  tags: ['repositories'],
  summary: 'Delete an image repository, its builds and tag records',
  description: 'Refused (409) while a build of the repository is queued or running.',
  request: { params: IdParams },
  responses: { 204: { description: 'Deleted' }, ...pickErrors(401, 403, 404, 409, 503) },
});

const tags = createRoute({
  method: 'get',
  path: '/{id}/tags',
  tags: ['repositories'],
  summary: 'Image versions (tags) of a repository with their creation method',
  request: { params: IdParams },
  responses: { 200: { description: 'Tags by name', content: jsonContent(ImageTagPage) }, ...pickErrors(401, 403, 404) },
});

const rotate = createRoute({
  method: 'post',
  path: '/{id}/source/rotate',
  tags: ['repositories'],
  summary: "Replace a repository source's webhook secret or git token",
  description:
    'For a leaked secret or an expiring token. A generated webhook secret is returned once, in this response; set it ' +
    'on the git host. Builds already running keep the token they started with.',
  request: { params: IdParams, body: { required: true, content: jsonContent(SourceRotate) } },
  responses: {
    200: { description: 'The repository, with the generated secret when one was asked for', content: jsonContent(RepositoryCreated) },
    ...pickErrors(400, 401, 403, 404, 409, 413, 415),
  },
});

export async function loadRepository(c: Context<AppEnv>, db: AppDeps['db'], id: string): Promise<RepositoryWithNamespace> {
  const repo = isUuid(id) ? await getRepository(db, id) : undefined;
  if (!repo) throw new ApiError('not_found', `Repository ${id} not found`);
  requireNamespace(c, repo.namespace);
  return repo;
}

export function repositoryRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const view = (r: RepositoryWithNamespace) => repositoryView(r, config.publicUrl);

  return createRouter()
    .openapi(create, async (c) => {
      const body = c.req.valid('json');
      requireNamespace(c, body.namespace);
      const conflict = () => new ApiError('conflict', `Repository "${body.namespace}/${body.name}" already exists`);
      if (await getRepositoryByPath(db, body.namespace, body.name)) throw conflict();

      const source = body.source;
      const generatedSecret =
        source && !source.webhookSecret && webhookUrl(config.publicUrl, source.provider)
          ? randomBytes(32).toString('hex')
          : undefined;
      const webhookSecret = source?.webhookSecret ?? generatedSecret;

      const created = await db.transaction(async (tx) => {
        const ns = await ensureNamespace(tx, body.namespace);
        await assertRepositoryQuota(tx, ns, config.quotaDefaults);
        try {
          const row = await insertRepository(tx, {
            namespaceId: ns.id,
            name: body.name,
            visibility: body.visibility ?? ns.defaultVisibility,
            immutableTags: body.immutableTags ?? ns.defaultImmutableTags,
            acceleratedImages: body.acceleratedImages ?? ns.defaultAcceleratedImages,
            summary: body.summary,
            description: body.description,
            sourceProvider: source?.provider ?? null,
            sourceUrl: source?.url ?? null,
            sourceTokenEnc: source?.token ? encryptSecret(config.secretKey, source.token) : null,
            webhookSecretEnc: webhookSecret ? encryptSecret(config.secretKey, webhookSecret) : null,
            autoBuild: body.buildSettings?.autoBuild,
            noCache: body.buildSettings?.noCache,
          });
          return { ...row, namespace: ns.name, buildPool: ns.buildPool };
        } catch (err) {
          if (isUniqueViolation(err)) throw conflict();
          throw err;
        }
      });

      const out = view(created);
      return c.json(
        { ...out, source: out.source && (generatedSecret ? { ...out.source, webhookSecret: generatedSecret } : out.source) },
        201,
      );
    })
    .openapi(list, async (c) => {
      const q = c.req.valid('query');
      const scope = namespaceScope(c);
      if (scope && q.namespace && q.namespace !== scope) requireNamespace(c, q.namespace);
      const rows = await listRepositories(db, {
        namespace: q.namespace ?? scope,
        after: q.cursor,
        limit: q.limit + 1,
      });
      const items = rows.slice(0, q.limit);
      const last = items[items.length - 1];
      return c.json({ items: items.map(view), nextCursor: rows.length > q.limit && last ? last.id : null }, 200);
    })
    .openapi(get, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      return c.json(view(repo), 200);
    })
    .openapi(patch, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      const { buildSettings, ...fields } = c.req.valid('json');
      const row = await updateRepository(db, repo.id, {
        ...fields,
        autoBuild: buildSettings?.autoBuild,
        noCache: buildSettings?.noCache,
      });
      if (!row) throw new ApiError('not_found', `Repository ${repo.id} not found`);
      return c.json(view({ ...row, namespace: repo.namespace, buildPool: repo.buildPool }), 200);
    })
    .openapi(rotate, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      if (!repo.sourceProvider) throw new ApiError('conflict', `Repository ${repo.namespace}/${repo.name} has no source to rotate credentials of`);
      const body = c.req.valid('json');
      const generated = body.webhookSecret === 'generate' ? randomBytes(32).toString('hex') : undefined;
      const secret = generated ?? body.webhookSecret;
      const row = await updateRepository(db, repo.id, {
        ...(secret !== undefined ? { webhookSecretEnc: encryptSecret(config.secretKey, secret) } : {}),
        ...(body.token !== undefined ? { sourceTokenEnc: body.token === null ? null : encryptSecret(config.secretKey, body.token) } : {}),
      });
      if (!row) throw new ApiError('not_found', `Repository ${repo.id} not found`);
      const out = view({ ...row, namespace: repo.namespace, buildPool: repo.buildPool });
      return c.json({ ...out, source: out.source && (generated ? { ...out.source, webhookSecret: generated } : out.source) }, 200);
    })
    .openapi(remove, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      const active = await countActiveBuilds(db, repo.id);
      if (active > 0) {
        throw new ApiError('conflict', `Repository has ${active} build(s) in progress; cancel them first`, { active });
      }
      // Its rules' Temporal schedules go first: an unreachable engine leaves the repository as it was.
      const scheduled = (await listRules(db, repo.id)).filter((r) => r.schedules.length);
      if (scheduled.length) {
        if (!deps.schedules) throw new ApiError('service_unavailable', 'Schedules are not available here; the repository has scheduled rules');
        try {
          for (const rule of scheduled) await deps.schedules.remove(rule.id, rule.schedules.length);
        } catch {
          throw new ApiError('service_unavailable', 'The schedule engine could not be reached; nothing was deleted');
        }
      }
      if (!(await deleteRepository(db, repo.id))) throw new ApiError('not_found', `Repository ${repo.id} not found`);
      return c.body(null, 204);
    })
    .openapi(tags, async (c) => {
      const repo = await loadRepository(c, db, c.req.valid('param').id);
      const rows = await listImageTags(db, repo.id);
      return c.json({ items: rows.map(imageTagView), nextCursor: null }, 200);
    });
}
