// POST /imagebuilds and GET /imagebuilds/{id}: the PAI CreateImageBuild / GetImageBuild shape
// over Kiln's inline builds. A PAI build is an ordinary Kiln build (GET /builds/{id} shows it).
import { createHmac, randomUUID } from 'node:crypto';
import { createRoute } from '@hono/zod-openapi';
import { encryptRegistryAuths, type RegistryAuths } from '../../activities/registry-auth';
import { getBuild, type BuildWithDetails } from '../../db/queries/builds';
import type { BuildStatus } from '../../db/schema';
import type { AppDeps } from '../types';
import { requireNamespace } from '../auth';
import { ApiError, pickErrors } from '../errors';
import {
  isUserPassword,
  paiCreateImageBuild,
  PaiCreateImageBuildQuery,
  PaiImageBuild,
  PaiImageBuildCreated,
  type PAI_STATUSES,
} from '../imagebuild-schemas';
import { inlineBuilds } from '../inline-builds';
import { IdParams, OCI_TAG_RE, REPOSITORY_PATH_RE, RepositoryPath, splitRepositoryPath } from '../schemas';
import { canonicalJson, createRouter, isUuid, jsonContent, sha256Hex } from '../util';
import { temporalWorkflowUrl } from '../views';


const createRouteFor = (registry: string) => createRoute({
  method: 'post',
  path: '/imagebuilds',
  tags: ['imagebuilds (PAI)'],
  summary: 'Build an image (PAI CreateImageBuild)',
  description:
    'Builds `BuildConfig.Dockerfile` for linux/amd64 and pushes it to `Image.Uri` in Kiln\'s registry, creating the ' +
    'repository on demand. `Image.Labels` become image labels; `TargetRegistry.OverwriteImageTag: false` refuses a tag ' +
    'that exists (409); `RegistryAuths` are used to pull private base images and are stored encrypted, never returned or ' +
    'logged. `Resource`, `WorkspaceId`, `RegionId`, `TargetRegistry.Type` and `InstanceId` are accepted and ignored.',
  request: { query: PaiCreateImageBuildQuery, body: { required: true, content: jsonContent(paiCreateImageBuild(registry)) } },
  responses: {
    200: { description: 'Accepted; the build runs asynchronously', content: jsonContent(PaiImageBuildCreated) },
    ...pickErrors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
  },
});

const get = createRoute({
  method: 'get',
  path: '/imagebuilds/{id}',
  tags: ['imagebuilds (PAI)'],
  summary: 'Get an image build (PAI GetImageBuild)',
  request: { params: IdParams },
  responses: { 200: { description: 'The image build', content: jsonContent(PaiImageBuild) }, ...pickErrors(401, 403, 404) },
});

const invalidUri = (message: string) =>
  new ApiError('validation_failed', 'The request is not valid', [{ in: 'json', path: ['Image', 'Uri'], message }]);

/**
 * `[registry/]namespace/repository[:tag]` → its parts. The first component is a registry when it
 * looks like a host (has a `.` or `:`, or is `localhost`), as in Docker's reference grammar.
 */
export function parseImageUri(uri: string, registry: string): { namespace: string; name: string; tag: string } {
  if (uri.includes('@')) throw invalidUri('must name a tag, not a digest');
  const parts = uri.split('/');
  // A Kiln repository is always namespace/name: a third, leading component is a registry.
  if (parts.length === 3) {
    const host = parts.shift()!;
    if (host.toLowerCase() !== registry.toLowerCase()) throw invalidUri(`Kiln pushes to its registry ${registry}, not to ${host}`);
  }
  const last = parts.pop() ?? '';
  const colon = last.indexOf(':');
  const name = colon < 0 ? last : last.slice(0, colon);
  const tag = colon < 0 ? 'latest' : last.slice(colon + 1);
  const path = [...parts, name].join('/');
  if (!REPOSITORY_PATH_RE.test(path)) throw invalidUri('must be [registry/]namespace/repository[:tag], in lowercase');
  // The document's pattern admits longer names than a repository may have: such a one cannot exist.
  if (!RepositoryPath.safeParse(path).success) throw new ApiError('not_found', `Repository ${path} does not exist and cannot be created`);
  if (!OCI_TAG_RE.test(tag)) throw invalidUri(`"${tag}" is not a valid tag`);
  return { ...splitRepositoryPath(path), tag };
}

const PAI_STATUS: Record<BuildStatus, (typeof PAI_STATUSES)[number]> = {
  queued: 'Queuing',
  running: 'Running',
  succeeded: 'Succeeded',
  failed: 'Failed',
  timed_out: 'Failed',
  canceled: 'Stopped',
};

export function imageBuildRoutes(deps: AppDeps) {
  const { db, config } = deps;
  const inline = inlineBuilds(deps);
  const create = createRouteFor(config.registry);

  function view(b: BuildWithDetails) {
    return {
      RequestId: randomUUID(),
      ImageBuildId: b.id,
      ImageBuildJobId: b.workflowId,
      Status: PAI_STATUS[b.status],
      KilnStatus: b.status,
      ReasonCode: b.errorCode,
      ReasonMessage: b.errorMessage,
      Image: { Uri: `${config.registry}/${b.repository}:${b.tags[0] ?? 'latest'}`, Digest: b.manifestDigest },
      GmtCreateTime: b.createdAt.toISOString(),
      GmtStartTime: b.startedAt?.toISOString() ?? null,
      GmtFinishTime: b.finishedAt?.toISOString() ?? null,
      TemporalUiUrl: temporalWorkflowUrl(config, b.workflowId),
    };
  }

  return createRouter()
    .openapi(create, async (c) => {
      const body = c.req.valid('json');
      const queryToken = c.req.valid('query').ClientToken;
      if (queryToken && body.ClientToken && queryToken !== body.ClientToken) {
        throw new ApiError('unprocessable', 'ClientToken differs between the query and the body');
      }
      const clientToken = body.ClientToken ?? queryToken;
      const { namespace, name, tag } = parseImageUri(body.Image.Uri, config.registry);
      const labelKeys = (body.Image.Labels ?? []).map((l) => l.Key);
      const repeated = labelKeys.filter((k, i) => labelKeys.indexOf(k) !== i);
      if (repeated.length) {
        throw new ApiError('unprocessable', 'Image.Labels keys must be unique', [
          { in: 'json', path: ['Image', 'Labels'], message: `repeated: ${[...new Set(repeated)].join(', ')}` },
        ]);
      }
      const notUserPassword = Object.entries(body.RegistryAuths ?? {}).filter(([, { Auth }]) => !isUserPassword(Auth));
      if (notUserPassword.length) {
        throw new ApiError(
          'unprocessable',
          'RegistryAuths entries must be base64 of "user:password"',
          notUserPassword.map(([host]) => ({ in: 'json', path: ['RegistryAuths', host, 'Auth'], message: 'not base64 of "user:password"' })),
        );
      }
      const auths: RegistryAuths | null = body.RegistryAuths
        ? Object.fromEntries(Object.entries(body.RegistryAuths).map(([host, { Auth }]) => [host, { auth: Auth }]))
        : null;
      // The idempotency hash is stored: it covers the credentials only through a keyed hash.
      const requestHash = sha256Hex(
        canonicalJson({
          ...body,
          ClientToken: clientToken,
          RegistryAuths: auths ? createHmac('sha256', config.secretKey).update(canonicalJson(auths)).digest('hex') : undefined,
        }),
      );
      const accepted = await inline.submit(c, {
        namespace,
        name,
        dockerfile: body.BuildConfig.Dockerfile,
        // PAI builds images for x86 machines; multi-arch builds are POST /builds.
        platforms: ['linux/amd64'],
        buildArgs: {},
        labels: Object.fromEntries((body.Image.Labels ?? []).map((l) => [l.Key, l.Value])),
        target: null,
        tags: [tag],
        timeoutMinutes: 60,
        clientToken,
        requestHash,
        newRepository: {
          visibility: body.Accessibility === 'PUBLIC' ? 'public' : body.Accessibility === 'PRIVATE' ? 'private' : undefined,
          description: body.Image.Description,
        },
        refuseExistingTags: body.TargetRegistry?.OverwriteImageTag === false,
        registryAuthsEnc: auths ? encryptRegistryAuths(config.secretKey, auths) : null,
      });
      return c.json({ RequestId: randomUUID(), ImageBuildId: accepted.buildId, ImageBuildJobId: accepted.workflowId }, 200);
    })
    .openapi(get, async (c) => {
      const id = c.req.valid('param').id;
      const build = isUuid(id) ? await getBuild(db, id) : undefined;
      if (!build) throw new ApiError('not_found', `Image build ${id} not found`);
      requireNamespace(c, splitRepositoryPath(build.repository).namespace);
      return c.json(view(build), 200);
    });
}
